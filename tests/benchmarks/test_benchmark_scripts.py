"""The benchmark scripts run end to end on CPU at a tiny size and print their ratios."""

import gzip
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_script(name, *args):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def ratio(output, label):
    return float(re.search(re.escape(label) + r": ([0-9.]+)", output).group(1))


@pytest.mark.slow
def test_throughput_suite_times_the_trainer_step_and_profiles_it(tmp_path):
    # The suite runs throughput.py (three variants of the trainer's step, figures to JSON, a
    # profiler trace), train_loop.py, input_pipeline.py and sweep_speedup.py, as on an
    # accelerator, at a tiny size.
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "throughput_suite.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "MODEL": "wrn10_1",
            "BATCHES": "8",
            "STEPS": "1",
            "ROUNDS": "1",
            "LOOP_STEPS": "6",
            "LOOP_EVERY": "2",
            "SWEEP_STEPS": "20",
        },
    )
    output = result.stdout
    assert result.returncode == 0, output[-3000:] + result.stderr[-3000:]
    assert re.search(r"synthetic: +[0-9.]+ images/s", output), output
    assert re.search(r"synthetic: .* [0-9.]+ TFLOP/s", output), output
    assert ratio(output, "real / synthetic input") > 0
    assert ratio(output, "AutoL2 / fixed-λ step time") > 0
    figures = json.loads((tmp_path / "batch_8.json").read_text())
    assert figures["real_over_synthetic"] == pytest.approx(
        figures["real"]["images_per_sec"] / figures["synthetic"]["images_per_sec"]
    )
    # wrn10_1 on 32×32: 25,003,264 forward FLOPs (2 per multiply-add) in its convolutions and
    # dense layer; the backward pass costs twice that, less the stem's unneeded input gradient.
    assert figures["gflop_per_image"] * 1e9 == pytest.approx(3 * 25_003_264 - 884_736)
    trace = re.search(r"profile of 5 synthetic steps: (\S+)", output).group(1)
    assert trace.startswith(str(tmp_path / "profile"))
    with gzip.open(trace, "rt") as file:
        assert json.load(file)["traceEvents"]
    loop = json.loads((tmp_path / "loop.json").read_text())
    # Lines at steps 2, 4, 6; the first, with compilation, is left out of the median.
    assert len(loop["images_per_sec_by_line"]) == 2
    assert loop["images_per_sec"] == pytest.approx(np.median(loop["images_per_sec_by_line"]))
    assert loop["gflop_per_image"] == pytest.approx(figures["gflop_per_image"])
    assert np.isfinite(loop["final_train_loss"])
    assert re.search(r"training loop: +[0-9.]+ images/s, median of 2 lines", output), output
    assert re.search(r"ratio input/train: [\d,]+x", output), output
    assert ratio(output, "speedup (sequential / vmapped)") > 0
    assert re.search(r"batch order \(16 seeds\): [0-9.]+ µs/step", output), output
    assert re.search(r"evaluation branch: [0-9.]+ µs/step", output), output
    assert (tmp_path / "sweep_profile").is_dir()


def test_input_pipeline_script_prints_rates_and_ratio(tmp_path):
    output = run_script(
        "input_pipeline.py",
        "--model=mlp",
        "--batch=8",
        "--steps=2",
        "--input_steps=2",
        "--warmup=1",
        "--num_train=64",
        f"--data_dir={tmp_path}",
    )
    assert "data: cifar10_random, 64 training images, batch 8" in output
    rates = re.findall(r"([\d,.]+) images/s", output)
    assert len(rates) == 3 and all(float(rate.replace(",", "")) > 0 for rate in rates)
    assert re.search(r"ratio input/train: [\d,]+x", output)


def test_theory_flow_script_times_the_flow():
    output = run_script(
        "theory_l2_flow.py", "--parts=speed", "--num_train=50", "--num_test=20", "--num_times=5"
    )
    assert re.search(r"kernel n=50 m=20: [0-9.]+ s", output), output
    assert re.search(r"l2_flow_mse float64, 5 times: .* predict alone [0-9.]+ s", output), output


def test_transform_overhead_script_prints_ratio():
    output = run_script("transform_overhead.py", "--width=32", "--rounds=2", "--steps=2")
    assert ratio(output, "autol2 / add_decayed_weights step time") > 0


def test_benchmark_scripts_reject_bad_sizes():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "transform_overhead.py"), "--rounds=0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert "--rounds must be ≥ 1, got 0" in result.stderr
