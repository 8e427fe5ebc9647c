"""Tests of `python -m experiments.train` in subprocesses: kills, preemption, bad flags."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from l2reg import training
from l2reg.training import rundir

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS, EVAL_EVERY = 600, 60
COMMAND = [
    sys.executable,
    "-m",
    "experiments.train",
    "--config=experiments/configs/mlp_digits.py",
    f"--config.steps={STEPS}",
    f"--config.eval_every={EVAL_EVERY}",
    f"--config.checkpoint_every={EVAL_EVERY}",
]


def launch(compilation_cache: str, *arguments: str) -> subprocess.Popen:
    # The subprocess inherits the four forced CPU devices of tests/conftest.py through XLA_FLAGS.
    environment = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=compilation_cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return subprocess.Popen(
        [*COMMAND, *arguments],
        cwd=REPOSITORY,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return stderr


def wait_for_lines(workdir, count: int, process: subprocess.Popen) -> None:
    path = workdir / rundir.METRICS_FILE
    while not (path.exists() and len(path.read_text().splitlines()) >= count):
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.02)


def without_timing(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k not in rundir.TIMING_FIELDS} for line in lines]


@pytest.mark.slow
def test_killed_and_preempted_run_finishes_bitwise_equal_to_an_uninterrupted_one(
    tmp_path, compilation_cache
):
    reference_dir, workdir = tmp_path / "reference", tmp_path / "interrupted"
    finish(launch(compilation_cache, f"--workdir={reference_dir}"))
    reference = training.read_metrics(reference_dir)
    assert [line["step"] for line in reference] == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))

    process = launch(compilation_cache, f"--workdir={workdir}")
    wait_for_lines(workdir, 3, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(training.read_metrics(workdir)) < len(reference)  # killed mid-run

    process = launch(compilation_cache, f"--workdir={workdir}")
    wait_for_lines(workdir, 6, process)
    process.send_signal(signal.SIGTERM)
    stderr = finish(process)  # a clean exit, status 0
    saved = re.search(r"preempted \(SIGTERM\): saved the checkpoint of step (\d+)", stderr)
    assert saved, stderr
    stopped = int(saved[1])
    assert str(stopped) in os.listdir(workdir / rundir.CHECKPOINT_DIR)
    # Saved at the step the signal arrived, not at the last scheduled checkpoint; the line of
    # the last report before it is written.
    last_line = training.read_metrics(workdir)[-1]["step"]
    assert last_line <= stopped < min(last_line + EVAL_EVERY, STEPS)

    finish(launch(compilation_cache, f"--workdir={workdir}"))
    resumed = training.read_metrics(workdir)
    assert without_timing(resumed) == without_timing(reference)
    assert resumed[-1]["test_accuracy"] > 0.9


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--config=experiments/configs/no_such_config.py"], "no_such_config.py"),
        (["--config.no_such_field=1"], "no config field 'no_such_field'"),
        (["--config.lr=-0.1"], "config.lr must be finite and > 0, got -0.1"),
        (["--config.lr=nan"], "config.lr must be finite and > 0, got nan"),
        (["--process_id=1"], "--process_id applies to --distributed runs only"),
        (["--workdir=/proc/l2reg/run"], "workdir '/proc/l2reg/run' cannot be created in '/proc'"),
    ],
)
def test_bad_command_line_is_a_one_line_error(tmp_path, compilation_cache, arguments, message):
    workdir = tmp_path / "run"
    process = launch(compilation_cache, f"--workdir={workdir}", *arguments)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert not workdir.exists()


def test_overwrite_flag_replaces_a_run_of_another_config(tmp_path, compilation_cache):
    workdir = tmp_path / "run"
    short = ("--config.steps=60", "--config.eval_every=30", f"--workdir={workdir}")
    finish(launch(compilation_cache, *short))
    first = (workdir / rundir.METRICS_FILE).read_text()

    process = launch(compilation_cache, *short, "--config.lr=0.05")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "different config (lr: 0.01 -> 0.05)" in stderr.strip().splitlines()[-1]
    assert (workdir / rundir.METRICS_FILE).read_text() == first

    finish(launch(compilation_cache, *short, "--config.lr=0.05", "--overwrite"))
    lines = training.read_metrics(workdir)
    assert [line["step"] for line in lines] == [30, 60]
    assert all(line["lr"] == np.float32(0.05) for line in lines)
