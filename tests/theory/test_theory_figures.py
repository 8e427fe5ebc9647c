"""The theory_figures launcher: flags only, checked before JAX, TensorFlow and neural-tangents
load; one-line errors; --help exits 0; the whole job at a small size."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEAVY = ("jax", "tensorflow", "neural_tangents")
# Runs the launcher and, as it exits, prints which heavy modules had been imported: a
# structural check that flags are validated before the imports, which timing cannot flake.
LAUNCHER = f"""
import runpy, sys
try:
    runpy.run_module("experiments.theory_figures", run_name="__main__")
finally:
    print("heavy modules:", [m for m in {HEAVY!r} if m in sys.modules])
"""


def launch(*flags, timeout=120):
    command = [sys.executable, "-c", LAUNCHER, *flags]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--bogus_flag", "Unknown command line flag 'bogus_flag'"),
        ("--depth=abc", "flag --depth=abc: invalid literal for int() with base 10: 'abc'"),
        ("--depth=1", "depth must be an integer in [2, 1000] (2: one hidden layer), got 1"),
        (
            "--depth=100000",
            "depth must be an integer in [2, 1000] (2: one hidden layer), got 100000",
        ),
        ("--finite_l2=0", "finite_l2 must be finite and > 0, got 0.0"),
        ("--dataset=cifar7", "dataset must be one of digits, mnist1d, got 'cifar7'"),
        (
            "--num_train=1501",
            "num_train must be an integer in [1, 1500] (the train examples of 'digits'), got 1501",
        ),
        (
            "--num_test=298",
            "num_test must be an integer in [1, 297] (the test examples of 'digits'), got 298",
        ),
        (
            "--l2s=1e-3,1e-4,0.001",
            "l2s must be distinct, got 0.001 twice in [0.001, 0.0001, 0.001]",
        ),
        ("--widths=8,x", "widths must be comma-separated integers, got ['8', 'x']"),
        ("--widths=128,100000000", "widths must be small enough for the finite network to fit"),
        ("--num_times=1000000000", "num_times must be small enough for the curves to fit"),
        ("stray", "unexpected arguments: stray (every setting is a --flag)"),
    ],
)
def test_bad_command_lines_are_one_line_errors_before_heavy_imports(tmp_path, flag, message):
    workdir = tmp_path / "figures"
    completed = launch(f"--workdir={workdir}", flag)
    assert completed.returncode != 0
    assert completed.stderr.strip().splitlines() == [
        completed.stderr.strip()  # one line
    ] and completed.stderr.startswith(f"theory_figures: {message}"), completed.stderr
    assert completed.stdout.strip() == "heavy modules: []"
    assert not workdir.exists()


def test_help_exits_0_before_heavy_imports_and_states_what_the_figures_show():
    # -m, as users run it (absl prints the __main__ module's docstring); -X importtime lists
    # every module imported, on stderr.
    command = [sys.executable, "-X", "importtime", "-m", "experiments.theory_figures", "--help"]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert completed.returncode == 0, completed.stderr
    imported = {line.split("|")[-1].strip() for line in completed.stderr.splitlines()}
    assert not {name for name in imported if name.split(".")[0] in HEAVY}
    help_text = " ".join(completed.stdout.split())
    assert "collapse near the accuracy peak and in the decline" in help_text
    assert "not during the rise" in help_text
    assert "full collapse" not in help_text and "collapse onto one" not in help_text


def test_a_workdir_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "figures").write_text("kept")
    completed = launch(f"--workdir={tmp_path}/figures")
    assert completed.returncode != 0
    assert completed.stderr.strip().splitlines()[-1] == (
        f"theory_figures: workdir '{tmp_path}/figures' is a file: it must be a folder, new or "
        "existing"
    )
    assert (tmp_path / "figures").read_text() == "kept"


@pytest.mark.slow
def test_theory_figures_writes_pngs_and_report(tmp_path):
    flags = [
        f"--workdir={tmp_path}", "--num_train=30", "--num_test=40", "--l2s=1e-2,1e-3",
        "--num_times=20", "--widths=8,16", "--finite_num_train=8", "--finite_l2=0.05",
    ]  # fmt: skip
    command = [sys.executable, "-m", "experiments.theory_figures", *flags]
    completed = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    names = {"collapse.png", "network_vs_linear.png", "finite_width.png", "report.md"}
    assert set(os.listdir(tmp_path)) == names  # and no temporary folder left behind
    report = (tmp_path / "report.md").read_text()
    assert "At η = 1, λ ∈ {0.01, 0.001}: step of the accuracy peak ∝ (λη)^" in report
    assert "| 16 |" in report
    assert report in completed.stdout  # what it prints is what it wrote
