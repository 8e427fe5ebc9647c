"""The launchers' terminal: --help exits 0, and a run shows its progress bar and a few lines of
its own, other libraries' INFO logging only with --verbosity."""

import os
import subprocess
import sys

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = [
    "experiments.train",
    "--config=experiments/configs/mlp_digits.py",
    "--config.steps=300",
]


def launch(*arguments: str) -> subprocess.CompletedProcess:
    """`python -m` with `arguments`, run in the repository, stdout and stderr in one."""
    return subprocess.run(
        [sys.executable, "-m", *arguments],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=300,
    )


def terminal_lines(output: bytes) -> list[str]:
    """The lines a terminal keeps: a progress bar's carriage-return updates are one line."""
    return [line for line in output.decode().split("\n") if line.strip()]


@pytest.mark.parametrize(
    "launcher", ["experiments.train", "experiments.reproduce", "experiments.suggest_l2"]
)
def test_help_exits_0_and_describes_the_flags(launcher):
    finished = launch(launcher, "--help")
    assert finished.returncode == 0, finished.stdout.decode()
    assert "--workdir" in finished.stdout.decode()


@pytest.mark.slow
def test_a_training_run_shows_its_bar_and_its_own_lines_only(tmp_path):
    first = launch(*TRAIN, f"--workdir={tmp_path / 'quiet'}")
    assert first.returncode == 0, first.stdout.decode()
    lines = terminal_lines(first.stdout)
    # Without the filter this run printed 65 lines, nearly all orbax's INFO about checkpoints.
    assert len(lines) <= 15, "\n".join(lines)
    assert not any("orbax" in line or "checkpoint_manager" in line for line in lines)
    assert "300/300" in lines[-1]
    again = launch(*TRAIN, f"--workdir={tmp_path / 'quiet'}")
    assert again.returncode == 0
    assert any("already complete (step 300)" in line for line in terminal_lines(again.stdout))
    # --verbosity brings the libraries' INFO back: the filter is what hid it.
    verbose = launch(*TRAIN, f"--workdir={tmp_path / 'verbose'}", "--verbosity=0")
    assert verbose.returncode == 0
    assert len(terminal_lines(verbose.stdout)) > 30


@pytest.mark.parametrize(
    ("launcher", "arguments", "message"),
    [
        ("experiments.train", ["--bogus_flag"], "error: Unknown command line flag 'bogus_flag'"),
        (
            "experiments.train",
            ["--config.lrr=1"],
            """error: no config field 'lrr'; did you mean "lr" instead of "lrr"?""",
        ),
        (
            "experiments.suggest_l2",
            ["--budget_steps=100", "--config.lrr=1"],
            """suggest_l2: no config field 'lrr'; did you mean "lr" instead of "lrr"?""",
        ),
        ("experiments.reproduce", ["--seeds=x"], "reproduce: flag --seeds=x: invalid literal"),
    ],
)
def test_a_bad_flag_is_one_line_before_jax_is_imported(tmp_path, launcher, arguments, message):
    # Structural rather than timed: the config file and the flags are read with ml_collections
    # and absl alone, so the error comes before JAX, TensorFlow or orbax would load.
    finished = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            launcher,
            "--config=experiments/configs/mlp_digits.py",
            f"--workdir={tmp_path / 'run'}",
            *arguments,
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 1
    imported = [line.rsplit("|", 1)[-1].strip() for line in finished.stderr.splitlines()]
    assert not {"jax", "tensorflow", "orbax.checkpoint", "neural_tangents"} & set(imported)
    lines = [line for line in finished.stderr.splitlines() if not line.startswith("import time")]
    assert lines == [message] or (message in lines[-1] and len(lines) == 1), lines
    assert not (tmp_path / "run").exists()
