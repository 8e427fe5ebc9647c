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
