"""Fault injection: every fault ends with nothing lost and, where the run cannot go on, one line.

Damaged checkpoints (array data truncated, randomised or with one bit flipped; metadata; the
checksum record), garbage in or loss of metrics.jsonl, kill -9 while checkpoints are written,
two trainers on one workdir, SIGTERM during the start-up, and a full disk (a small tmpfs,
where this process may mount one). After each, the run resumed reads as one uninterrupted run.
"""

import contextlib
import glob
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import mlp_digits
from l2reg import training
from l2reg.training import checkpoints as checkpoints_module
from l2reg.training import rundir
from l2reg.training.checkpoints import Checkpoints

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A run of seconds: MLP 32-32, 40 steps, a line every 10 steps, checkpoints at 20 and 40.
SETTINGS = {"model_options.widths": (32, 32), "steps": 40, "eval_every": 10, "checkpoint_every": 20}


def make_config(**changes):
    config = mlp_digits.get_config()
    for name, value in {**SETTINGS, **changes}.items():
        *parents, field = name.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[field] = value
    return config


def launch(workdir, compilation_cache: str, **changes) -> subprocess.Popen:
    """`python -m experiments.train` with the settings of `make_config(**changes)`."""
    settings = {**SETTINGS, **changes}
    environment = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=compilation_cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "experiments.train",
            "--config=experiments/configs/mlp_digits.py",
            f"--workdir={workdir}",
            *(f"--config.{name}={value}" for name, value in settings.items()),
        ],
        cwd=REPOSITORY,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def without_timing(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k not in rundir.TIMING_FIELDS} for line in lines]


def snapshot(directory) -> dict[str, bytes]:
    return {
        os.path.relpath(path, directory): open(path, "rb").read()
        for path in glob.glob(f"{directory}/**", recursive=True, include_hidden=True)
        if os.path.isfile(path)
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run of `make_config()` (never changed: tests change copies of it)."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    training.train_and_evaluate(make_config(), str(workdir))
    return workdir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def _garble(*patterns):
    def garble(checkpoint) -> None:
        for pattern in patterns:
            (path,) = glob.glob(os.path.join(checkpoint, pattern))
            with open(path, "wb") as file:
                file.write(b"\x00garbage")

    return garble


# The array data's damages are the `damage` fixture's (by name); the metadata's are garbage.
DAMAGES = {
    "data truncated": "truncate",
    "data randomised": "randomise",
    "one bit flipped": "flip_a_bit",
    "metadata": _garble("_CHECKPOINT_METADATA", "*/_METADATA"),
    "checksum record": _garble("record/metadata"),
}


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_previous_used(
    finished_run, run_copy, caplog, damage, kind
):
    how = DAMAGES[kind]
    (getattr(damage, how) if isinstance(how, str) else how)(run_copy / "checkpoints" / "40")
    training.train_and_evaluate(make_config(), str(run_copy))
    assert "checkpoint of step 40" in caplog.text and "is corrupt" in caplog.text
    # That line alone: what orbax logs about the damage (e.g. "Failed to json parse Metadata
    # file", twice, for damaged metadata) is held while reading and dropped.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert os.listdir(run_copy / "checkpoints.corrupt") == ["40"]
    assert sorted(os.listdir(run_copy / "checkpoints")) == ["20", "40"]
    resumed, reference = training.read_metrics(run_copy), training.read_metrics(finished_run)
    assert without_timing(resumed) == without_timing(reference)


def test_a_flipped_bit_that_still_decodes_is_caught_by_the_checksum(tmp_path, caplog, damage):
    # Random float32 values do not compress: zstd stores them raw, and a flipped bit in them
    # decodes to another value without any error from orbax or tensorstore.
    weights = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    lines = [{"step": 10}]
    checkpoints.save(10, {"w": jnp.asarray(weights)}, lines)
    lines.append({"step": 20})  # after the save started: not in the checkpoint of step 10
    checkpoints.save(20, {"w": jnp.asarray(weights + 1)}, lines)
    checkpoints.wait()
    damage.flip_a_bit(tmp_path / "checkpoints" / "20")
    state, step, metrics = checkpoints.restore_latest({"w": jnp.zeros(4096)})
    checkpoints.close()
    assert (step, metrics) == (10, [{"step": 10}])
    np.testing.assert_array_equal(state["w"], weights)
    assert "checkpoint of step 20" in caplog.text and "checksum" in caplog.text


def test_with_every_checkpoints_data_damaged_the_run_is_refused_in_one_line(run_copy, damage):
    for step in ("20", "40"):
        damage.randomise(run_copy / "checkpoints" / step)
    before = snapshot(run_copy)
    with pytest.raises(ValueError, match=r"^no checkpoint in '.*checkpoints' can be read \(") as e:
        training.train_and_evaluate(make_config(), str(run_copy))
    assert "\n" not in str(e.value) and len(str(e.value)) < 1500
    assert "step 40: " in str(e.value) and "step 20: " in str(e.value)
    assert snapshot(run_copy) == before
    # The refused run's checkpoint manager is closed (it was left open, its threads running).
    assert checkpoints_module._FAILED_SAVE_NOISE._open == 0


@pytest.mark.parametrize("fault", ["garbage lines", "deleted", "cut"])
def test_a_damaged_metrics_file_is_rebuilt_from_the_checkpoint(
    finished_run, run_copy, caplog, fault
):
    path = run_copy / rundir.METRICS_FILE
    original = path.read_bytes()
    garbage = b'{"train_loss": 1.0}\n[1, 2]\n\xff\xfe not UTF-8\n'
    if fault == "garbage lines":
        path.write_bytes(garbage + original)
    elif fault == "deleted":
        path.unlink()
    else:
        path.write_bytes(original[: len(original) // 2])
    training.train_and_evaluate(make_config(), str(run_copy))
    assert path.read_bytes() == original
    if fault == "garbage lines":
        assert (run_copy / rundir.BAD_METRICS_FILE).read_bytes() == garbage
        for number in (1, 2, 3):
            assert f"{path} line {number} " in caplog.text
    else:
        assert f"{path} lacked " in caplog.text


@pytest.mark.slow
def test_kill_9_while_checkpoints_are_written_resumes_bitwise(tmp_path, compilation_cache):
    # A checkpoint every step, so that checkpoints are being written most of the time; each
    # trainer is killed as soon as one is seen half-written.
    changes = {"steps": 60, "checkpoint_every": 1}
    reference = tmp_path / "reference"
    training.train_and_evaluate(make_config(**changes), str(reference))
    workdir, checkpoints = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
    killed_mid_write = 0
    for _ in range(4):
        process = launch(workdir, compilation_cache, **changes)
        while process.poll() is None:
            if checkpoints.is_dir() and any(
                ".orbax-checkpoint-tmp" in name for name in os.listdir(checkpoints)
            ):
                process.send_signal(signal.SIGKILL)
                break
        assert process.wait() == -signal.SIGKILL, process.communicate()[1]
        partial = [name for name in os.listdir(checkpoints) if ".orbax-checkpoint-tmp" in name]
        killed_mid_write += bool(partial)  # still there: killed before the write completed
        if killed_mid_write == 2:
            break
    assert killed_mid_write >= 1
    training.train_and_evaluate(make_config(**changes), str(workdir))
    assert without_timing(training.read_metrics(workdir)) == without_timing(
        training.read_metrics(reference)
    )
    assert not any(".orbax-checkpoint-tmp" in name for name in os.listdir(checkpoints))
    assert not (tmp_path / "killed" / "checkpoints.corrupt").exists()


@pytest.mark.slow
def test_of_two_trainers_on_one_workdir_one_refuses_in_one_line(tmp_path, compilation_cache):
    workdir = tmp_path / "run"
    # Long enough that the first is still training when the second has started.
    processes = [launch(workdir, compilation_cache, steps=1_000_000) for _ in range(2)]
    try:
        deadline = time.monotonic() + 240
        while all(process.poll() is None for process in processes):
            assert time.monotonic() < deadline, "neither trainer stopped"
            time.sleep(0.05)
        refused = next(process for process in processes if process.poll() is not None)
        holder = next(process for process in processes if process is not refused)
        _, stderr = refused.communicate()
        assert refused.returncode == 1, stderr
        last = stderr.strip().splitlines()[-1]
        assert last.startswith(
            f"error: workdir '{workdir}' is in use by another trainer (pid {holder.pid} on host "
        ), last
        assert holder.poll() is None  # the first trainer goes on
        holder.send_signal(signal.SIGTERM)  # a checkpoint, and a clean exit
        _, stderr = holder.communicate(timeout=120)
        assert holder.returncode == 0, stderr
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert not (workdir / rundir.LOCK_FILE).exists()


@pytest.mark.slow
def test_sigterm_during_the_start_up_saves_after_one_step_and_exits_cleanly(
    finished_run, tmp_path, compilation_cache
):
    workdir = tmp_path / "run"
    process = launch(workdir, compilation_cache)
    # The lock is taken before the data are loaded (older code: config.json, after loading).
    while not ((workdir / rundir.LOCK_FILE).exists() or (workdir / rundir.CONFIG_FILE).exists()):
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "preempted (SIGTERM): saved the checkpoint of step 1" in stderr
    training.train_and_evaluate(make_config(), str(workdir))
    assert without_timing(training.read_metrics(workdir)) == without_timing(
        training.read_metrics(finished_run)
    )


@contextlib.contextmanager
def _tmpfs(mountpoint, size: str):
    """A tmpfs of `size` at `mountpoint` (skips the test where this process may not mount)."""
    os.makedirs(mountpoint)
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_full_disk_at_the_start_names_the_file_and_leaves_no_folder(tmp_path):
    with _tmpfs(tmp_path / "disk", "4k") as disk:  # room for the lock's record only
        with pytest.raises(OSError, match=r"No space left on device: '.*disk/run/") as error:
            training.train_and_evaluate(make_config(), str(disk / "run"))
        assert "\n" not in str(error.value)
        assert os.listdir(disk) == []


def test_a_full_disk_while_a_checkpoint_is_written_then_resumes_bitwise(finished_run, tmp_path):
    # Room for the config and the first lines, not for the first checkpoint.
    with _tmpfs(tmp_path / "disk", "64k") as disk:
        with pytest.raises(OSError, match=rf"{disk}/run") as error:
            training.train_and_evaluate(make_config(), str(disk / "run"))
        assert "\n" not in str(error.value)
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        training.train_and_evaluate(make_config(), str(disk / "run"))
        assert without_timing(training.read_metrics(disk / "run")) == without_timing(
            training.read_metrics(finished_run)
        )
        assert sorted(os.listdir(disk / "run" / "checkpoints")) == ["20", "40"]


def test_a_checkpoint_failing_in_the_background_stops_the_run_at_the_next_line(tmp_path):
    # Room for the config, the lines and a step's folders, not for its arrays: the save of step
    # 500 fails in orbax's background. The loop checks at every line (each 50 steps), so the run
    # stops there, not at the next checkpoint (step 1000). The events file, which cannot be
    # flushed either, is closed all the same: the disk can be unmounted.
    with _tmpfs(tmp_path / "disk", "64k") as disk:
        config = make_config(steps=1000, checkpoint_every=500, eval_every=50)
        with pytest.raises(
            OSError, match=rf"^a checkpoint could not be written in '{disk}/run"
        ) as error:
            training.train_and_evaluate(config, str(disk / "run"))
        assert "\n" not in str(error.value)
        last = training.read_metrics(disk / "run")[-1]["step"]
    assert 500 <= last < 1000, last


@pytest.mark.parametrize("fault", ["deleted", "emptied", "a killed rebuild"])
def test_tensorboard_events_are_rebuilt_from_the_checkpoint(run_copy, fault, tensorboard_scalars):
    events = run_copy / rundir.TENSORBOARD_DIR
    if fault == "deleted":
        shutil.rmtree(events)
    elif fault == "emptied":
        for path in events.iterdir():
            path.write_bytes(b"")
    else:  # killed between removing the old folder and moving the rebuilt one in
        shutil.rmtree(events)
        (run_copy / (rundir.TENSORBOARD_DIR + ".rebuilding")).mkdir()
    training.train_and_evaluate(make_config(), str(run_copy))  # complete: nothing trained
    lines = training.read_metrics(run_copy)
    for tag in ("train_loss", "test_accuracy", "l2"):
        assert tensorboard_scalars(events, tag) == {
            line["step"]: float(np.float32(line[tag])) for line in lines
        }
    assert not os.path.exists(str(events) + ".rebuilding")
