"""Tests of the trainer (l2reg.training) as two processes under `jax.distributed`, each with two
CPU devices.

The processes run tests/training/multihost_worker.py, or the launcher `python -m experiments.train
--distributed`, on one shared workdir; their 4-device mesh must give the metrics of one process
on the four forced CPU devices of tests/conftest.py.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from l2reg import training
from l2reg.training import rundir

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multihost_worker.py")
NUM_PROCESSES = 2
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
TIMEOUT_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def worker(config, *flags: str) -> list[str]:
    """The command of multihost_worker.py training `config`."""
    return [sys.executable, WORKER, f"--config={config.to_json_best_effort()}", *flags]


def launcher(*overrides: str) -> list[str]:
    """The command of `python -m experiments.train` on mlp_digits with `--config.` overrides."""
    return [
        sys.executable,
        "-m",
        "experiments.train",
        "--config=experiments/configs/mlp_digits.py",
        *overrides,
        "--distributed",
    ]


class Job:
    """The processes of one run of `command` in `workdir`, their stderr in temporary files.

    Each process runs `command` with `--coordinator_address`, `--num_processes`, `--process_id`
    and `--workdir` added.
    """

    def __init__(self, command: list[str], workdir, compilation_cache: str):
        xla_flags = [
            flag
            for flag in os.environ.get("XLA_FLAGS", "").split()
            if not flag.startswith(DEVICE_COUNT_FLAG)
        ]
        environment = dict(
            os.environ,
            XLA_FLAGS=" ".join([*xla_flags, f"{DEVICE_COUNT_FLAG}=2"]),
            JAX_PLATFORMS="cpu",
            PYTHONPATH=os.pathsep.join(filter(None, [REPOSITORY, os.environ.get("PYTHONPATH")])),
            JAX_COMPILATION_CACHE_DIR=compilation_cache,
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
        coordinator = f"localhost:{free_port()}"
        self.workdir = workdir
        self.logs = [tempfile.TemporaryFile("w+", encoding="utf-8") for _ in range(NUM_PROCESSES)]
        self.processes = [
            subprocess.Popen(
                [
                    *command,
                    f"--coordinator_address={coordinator}",
                    f"--num_processes={NUM_PROCESSES}",
                    f"--process_id={process_id}",
                    f"--workdir={workdir}",
                ],
                cwd=REPOSITORY,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            for process_id, log in enumerate(self.logs)
        ]

    def finish(self) -> list[str]:
        """Waits for every process to exit with status 0 and returns their stderr (kept as
        `texts` whatever the outcome).

        Once one fails (or the time is up), the others are killed: they would wait for it
        forever.
        """
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            codes = [process.poll() for process in self.processes]
            if None not in codes or any(code not in (None, 0) for code in codes):
                break
            time.sleep(0.05)
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        texts = self.texts = []
        for log in self.logs:
            log.seek(0)
            texts.append(log.read())
            log.close()
        assert all(process.returncode == 0 for process in self.processes), "\n".join(
            f"--- process {i}, exit status {process.returncode}:\n{text}"
            for i, (process, text) in enumerate(zip(self.processes, texts, strict=True))
        )
        return texts

    def wait_for_lines(self, count: int) -> None:
        """Waits until the run's metrics file has `count` lines."""
        path = self.workdir / rundir.METRICS_FILE
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while not (path.exists() and len(path.read_text().splitlines()) >= count):
            running = all(process.poll() is None for process in self.processes)
            if not running or time.monotonic() > deadline:
                self.finish()  # reports the processes' stderr if one failed
                raise AssertionError(f"the run ended before {count} lines of {path}")
            time.sleep(0.02)


def run_in_one_process(config, workdir) -> list[dict]:
    training.train_and_evaluate(config, str(workdir))
    return training.read_metrics(workdir)


def without_timing(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k not in rundir.TIMING_FIELDS} for line in lines]


def assert_close(lines: list[dict], expected: list[dict]) -> None:
    """Same steps and fields; values equal up to the float rounding of another reduction order."""
    assert [line["step"] for line in lines] == [line["step"] for line in expected]
    for line, other in zip(without_timing(lines), without_timing(expected), strict=True):
        assert list(line) == list(other)
        for name, value in line.items():
            np.testing.assert_allclose(
                value, other[name], rtol=1e-5, err_msg=f"{name} at step {line['step']}"
            )


def corrupt(directory) -> None:
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "wb") as file:
                file.write(b"\x00garbage")


def test_two_processes_train_as_one_and_resume_past_a_corrupt_checkpoint(
    small_config, tmp_path, compilation_cache
):
    workdir = tmp_path / "run"
    Job(worker(small_config), workdir, compilation_cache).finish()
    first = training.read_metrics(workdir)
    reference = run_in_one_process(small_config, tmp_path / "reference")
    assert_close(first, reference)
    checkpoints = workdir / rundir.CHECKPOINT_DIR
    assert sorted(os.listdir(checkpoints)) == ["20", "40"]
    assert (workdir / rundir.CONFIG_FILE).exists()

    # Every process finds step 40 unreadable; process 0 alone moves it aside, and all resume
    # from step 20. The resumed run's mesh alternates between the processes, so that each holds
    # the rows of devices 0 and 2 (or 1 and 3) of every batch, not a block of rows.
    corrupt(checkpoints / "40")
    logs = Job(worker(small_config, "--alternate_devices"), workdir, compilation_cache).finish()
    assert all("checkpoint of step 40" in log and "corrupt" in log for log in logs)
    assert os.listdir(workdir / (rundir.CHECKPOINT_DIR + ".corrupt")) == ["40"]
    assert sorted(os.listdir(checkpoints)) == ["20", "40"]
    resumed = training.read_metrics(workdir)
    assert resumed[:2] == first[:2]  # kept as written, steps_per_sec included: not rerun
    assert_close(resumed, reference)


def test_preempted_two_process_run_resumes_to_the_one_process_result(
    small_config, tmp_path, compilation_cache
):
    # Through the launcher, as a researcher starts each host's process.
    small_config.steps = 100
    small_config.checkpoint_every = 50
    command = launcher(
        "--config.model_options.widths=(32, 32)",
        f"--config.steps={small_config.steps}",
        f"--config.eval_every={small_config.eval_every}",
        f"--config.checkpoint_every={small_config.checkpoint_every}",
    )
    workdir = tmp_path / "run"
    job = Job(command, workdir, compilation_cache)
    job.wait_for_lines(1)
    # The notice reaches process 1 alone; the processes agree on a step to save at and stop.
    job.processes[1].send_signal(signal.SIGTERM)
    logs = job.finish()
    assert all("preempted (SIGTERM): saved the checkpoint of step" in log for log in logs)
    stopped = max(int(name) for name in os.listdir(workdir / rundir.CHECKPOINT_DIR))
    before = training.read_metrics(workdir)
    last_line = before[-1]["step"]
    assert last_line <= stopped < min(last_line + small_config.eval_every, small_config.steps)

    Job(command, workdir, compilation_cache).finish()
    resumed = training.read_metrics(workdir)
    assert resumed[: len(before)] == before  # kept as written, steps_per_sec included: not rerun
    assert_close(resumed, run_in_one_process(small_config, tmp_path / "reference"))


def test_a_workdir_in_use_is_refused_by_every_process_in_one_line(
    small_config, tmp_path, compilation_cache
):
    # Process 0 alone locks the workdir; refused, it tells process 1, which would otherwise wait
    # for it at the next collective until killed.
    workdir = tmp_path / "run"
    command = launcher("--config.model_options.widths=(32, 32)", "--config.steps=40")
    with rundir.locked(str(workdir)):  # another trainer, in this process
        job = Job(command, workdir, compilation_cache)
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while any(p.poll() is None for p in job.processes) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(AssertionError):  # they fail: `finish` kills none left
            job.finish()
    errors = []
    for process, log in zip(job.processes, job.texts, strict=True):
        assert process.returncode == 1, log
        errors.append(log.strip().splitlines()[-1])
    assert f"workdir {str(workdir)!r} is in use by another trainer (pid {os.getpid()}" in errors[0]
    assert f"process 0 refused workdir {str(workdir)!r}" in errors[1]
    assert not (workdir / rundir.CONFIG_FILE).exists()
