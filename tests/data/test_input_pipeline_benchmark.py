"""Smoke test of benchmarks/input_pipeline.py at a tiny size."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_benchmark_prints_rates_and_ratio(tmp_path):
    command = [
        sys.executable,
        os.path.join(ROOT, "benchmarks", "input_pipeline.py"),
        "--model=mlp",
        "--batch=8",
        "--steps=2",
        "--input_steps=2",
        "--warmup=1",
        "--num_train=64",
        f"--data_dir={tmp_path}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "data: cifar10_random, 64 training images, batch 8" in result.stdout
    rates = re.findall(r"([\d,.]+) images/s", result.stdout)
    assert len(rates) == 3 and all(float(rate.replace(",", "")) > 0 for rate in rates)
    assert re.search(r"ratio input/train: [\d,]+x", result.stdout)
