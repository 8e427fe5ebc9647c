"""The theory figures script runs end to end at a small size."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_theory_figures_writes_pngs_and_report(tmp_path):
    flags = [
        f"--workdir={tmp_path}", "--num_train=30", "--num_test=40", "--l2s=1e-2,1e-3",
        "--num_times=20", "--widths=8,16", "--finite_num_train=8", "--finite_l2=0.05",
    ]  # fmt: skip
    command = [sys.executable, "-m", "experiments.theory_figures", *flags]
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    names = {"collapse.png", "network_vs_linear.png", "finite_width.png", "report.md"}
    assert names <= set(os.listdir(tmp_path))
    report = (tmp_path / "report.md").read_text()
    assert "accuracy peak ∝ (l2·lr)^" in report and "| 16 |" in report


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--finite_l2=0", "--finite_l2 must be finite and > 0, got 0.0"),
        ("--dataset=cifar7", "--dataset must be one of digits, mnist1d, got 'cifar7'"),
        (
            "--num_train=1501",
            "--num_train must be ≤ 1500, the train examples of 'digits', got 1501",
        ),
        ("--num_test=298", "--num_test must be ≤ 297, the test examples of 'digits', got 298"),
        (
            "--finite_num_train=2000",
            "--finite_num_train must be ≤ 1500, the train examples of 'digits', got 2000",
        ),
        (
            "--l2s=1e-3,1e-4,0.001",
            "--l2s must be distinct, got 0.001 twice in ['1e-3', '1e-4', '0.001']",
        ),
    ],
)
def test_bad_flags_are_one_line_errors_before_any_work(tmp_path, flag, message):
    workdir = tmp_path / "figures"
    command = [sys.executable, "-m", "experiments.theory_figures", f"--workdir={workdir}", flag]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert completed.returncode != 0
    assert completed.stderr.strip().splitlines()[-1] == f"theory_figures: {message}"
    assert not workdir.exists()


def test_a_workdir_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "figures").write_text("kept")
    command = [sys.executable, "-m", "experiments.theory_figures", f"--workdir={tmp_path}/figures"]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert completed.returncode != 0
    assert completed.stderr.strip().splitlines()[-1] == (
        f"theory_figures: --workdir '{tmp_path}/figures' is a file: it must be a folder, new or "
        "existing"
    )
    assert (tmp_path / "figures").read_text() == "kept"
