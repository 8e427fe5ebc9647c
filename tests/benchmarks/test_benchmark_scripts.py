"""The benchmark scripts run end to end on CPU at a tiny size and print their ratios."""

import pathlib
import re
import subprocess
import sys

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
def test_throughput_script_times_three_variants_of_the_trainer_step():
    output = run_script(
        "throughput.py",
        "--model=wrn10_1",
        "--batch=8",
        "--dtype=float32",
        "--steps=1",
        "--rounds=1",
        "--warmup=1",
    )
    assert re.search(r"synthetic: +[0-9.]+ images/s", output), output
    assert re.search(r"[0-9.]+ GFLOP per image", output), output
    assert re.search(r"synthetic: .* [0-9.]+ TFLOP/s", output), output
    assert ratio(output, "real / synthetic input") > 0
    assert ratio(output, "AutoL2 / fixed-λ step time") > 0


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


@pytest.mark.slow
def test_sweep_speedup_script_prints_ratio():
    output = run_script("sweep_speedup.py", "--steps=20", "--setup=digits_ntk_mse")
    assert "16 configurations × 20 steps" in output
    assert ratio(output, "speedup (sequential / vmapped)") > 0


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
