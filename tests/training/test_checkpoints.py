"""Checkpoints keep the newest `keep`, move unreadable ones aside and refuse ones of another
state, report a failed save in one line without orbax's tracebacks; a workdir with a run's files
but no config is refused."""

import asyncio
import errno
import logging
import os
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

from l2reg.training import checkpoints as checkpoints_module
from l2reg.training import rundir
from l2reg.training.checkpoints import CheckpointMismatchError, Checkpoints


def _listing(directory) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(root, name), directory)
        for root, folders, files in os.walk(directory)
        for name in folders + files
    )


def _corrupt(directory) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "wb") as file:
                file.write(b"\x00garbage")


def test_only_the_newest_keep_checkpoints_stay_and_the_newest_is_restored(tmp_path):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    for step in (10, 20, 30, 40):
        checkpoints.save(step, {"w": jnp.full(3, float(step))})
    checkpoints.wait()
    assert sorted(int(name) for name in os.listdir(tmp_path / "checkpoints")) == [30, 40]
    state, step, _ = checkpoints.restore_latest({"w": jnp.zeros(3)})
    checkpoints.close()
    assert step == 40
    np.testing.assert_array_equal(state["w"], [40.0, 40.0, 40.0])


def test_empty_checkpoint_directory_restores_the_target(tmp_path):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    target = {"w": jnp.ones(2)}
    state, step, _ = checkpoints.restore_latest(target)
    checkpoints.close()
    assert step is None and state is target


def test_run_files_without_a_config_are_refused_and_left_alone(small_config, tmp_path):
    (tmp_path / rundir.METRICS_FILE).write_text('{"step": 10}\n')
    with pytest.raises(ValueError, match=r"holds \['metrics.jsonl'\] but no config.json") as error:
        rundir.prepare_workdir(str(tmp_path), small_config, overwrite=False)
    assert "\n" not in str(error.value)
    assert os.listdir(tmp_path) == [rundir.METRICS_FILE]
    assert (tmp_path / rundir.METRICS_FILE).read_text() == '{"step": 10}\n'
    rundir.prepare_workdir(str(tmp_path), small_config, overwrite=True)
    assert os.listdir(tmp_path) == [rundir.CONFIG_FILE]


@pytest.mark.parametrize(
    ("target", "difference"),
    [
        ({"w": jnp.zeros(4)}, r"w is float32\[3\] there, float32\[4\] here"),
        ({"w": jnp.zeros(3, jnp.int32)}, r"w is float32\[3\] there, int32\[3\] here"),
        ({"w": jnp.zeros(3), "b": jnp.zeros(2)}, r"b is absent there, float32\[2\] here"),
    ],
)
def test_checkpoint_of_another_state_is_refused_and_nothing_is_moved(tmp_path, target, difference):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    checkpoints.save(10, {"w": jnp.ones(3)})
    checkpoints.save(20, {"w": jnp.ones(3)})
    checkpoints.wait()
    before = _listing(tmp_path)
    message = r"^the checkpoint of step 20 .*" + difference + r".*--overwrite"
    with pytest.raises(CheckpointMismatchError, match=message) as error:
        checkpoints.restore_latest(target)
    checkpoints.close()
    assert "\n" not in str(error.value)
    assert _listing(tmp_path) == before


def test_a_step_moved_aside_twice_keeps_both_copies(tmp_path):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=3)
    target = {"w": jnp.zeros(3)}
    checkpoints.save(10, {"w": jnp.full(3, 10.0)})
    for attempt in (1, 2):
        checkpoints.save(20, {"w": jnp.full(3, 20.0 + attempt)})
        checkpoints.wait()
        _corrupt(tmp_path / "checkpoints" / "20")
        state, step, _ = checkpoints.restore_latest(target)
        assert step == 10
        np.testing.assert_array_equal(state["w"], [10.0, 10.0, 10.0])
    checkpoints.close()
    assert sorted(os.listdir(tmp_path / "checkpoints.corrupt")) == ["20", "20.1"]
    assert os.listdir(tmp_path / "checkpoints") == ["10"]


def test_no_readable_checkpoint_is_refused_and_nothing_is_moved(tmp_path):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    for step in (10, 20):
        checkpoints.save(step, {"w": jnp.ones(3)})
    checkpoints.wait()
    for step in (10, 20):
        _corrupt(tmp_path / "checkpoints" / str(step))
    before = _listing(tmp_path)
    message = r"^no checkpoint in .* can be read \(step 20: .*; step 10: .*--overwrite"
    with pytest.raises(ValueError, match=message) as error:
        checkpoints.restore_latest({"w": jnp.zeros(3)})
    checkpoints.close()
    assert "\n" not in str(error.value)
    assert _listing(tmp_path) == before


def test_an_error_other_than_reading_propagates_and_nothing_is_moved(tmp_path, monkeypatch):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    for step in (10, 20):
        checkpoints.save(step, {"w": jnp.ones(3)})
    checkpoints.wait()
    before = _listing(tmp_path)

    def out_of_memory(*args, **kwargs):
        raise MemoryError("no room for the state")

    monkeypatch.setattr(checkpoints._manager, "restore", out_of_memory)
    with pytest.raises(MemoryError):
        checkpoints.restore_latest({"w": jnp.zeros(3)})
    checkpoints.close()
    assert _listing(tmp_path) == before


def test_a_step_folder_that_cannot_be_made_is_one_line_from_save_itself(
    tmp_path, caplog, capfd, monkeypatch
):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    checkpoints.save(10, {"w": jnp.full(3, 10.0)})
    checkpoints.wait()
    makedirs = os.makedirs

    def full_disk(path, *args, **kwargs):
        if "20.orbax-checkpoint-tmp" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", full_disk)
    message = (
        r"^a checkpoint could not be written in '.*checkpoints' \(OSError: \[Errno 28\] No "
        r"space left on device: '.*20.orbax-checkpoint-tmp'\); the newest complete one \(step "
        r"10\) is kept"
    )
    # Raised by `save`: made in orbax's background, the folder's failure left the threads that
    # were to write into it waiting 300 s, the process alive, then a traceback from each.
    with pytest.raises(OSError, match=message) as error:
        checkpoints.save(20, {"w": jnp.full(3, 20.0)})
    monkeypatch.undo()
    checkpoints.close()
    assert "\n" not in str(error.value)
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert "Traceback" not in capfd.readouterr().err
    again = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    state, step, _ = again.restore_latest({"w": jnp.zeros(3)})
    again.close()
    assert step == 10
    np.testing.assert_array_equal(state["w"], [10.0, 10.0, 10.0])


# Run in a user and mount namespace of its own (no root needed where user namespaces are on):
# on a 64 KiB tmpfs the checkpoint of step 10 fits and that of step 20, 40 arrays of 12 KB,
# does not: its writes meet the full disk in orbax's and tensorstore's threads.
_FULL_TMPFS = r"""
import numpy as np, jax.numpy as jnp, sys
from l2reg.training.checkpoints import Checkpoints
checkpoints = Checkpoints(sys.argv[1] + "/checkpoints", keep=2)
checkpoints.save(10, {"w": jnp.full(3, 10.0)})
checkpoints.wait()
random = np.random.default_rng(0)
try:
    checkpoints.save(20, {f"w{i}": jnp.asarray(random.random(3000, np.float32)) for i in range(40)})
    checkpoints.wait()
except OSError as error:
    print(error)
else:
    print("no error")
checkpoints.close()
state, step, _ = Checkpoints(sys.argv[1] + "/checkpoints", keep=2).restore_latest(
    {"w": jnp.zeros(3)}
)
print(step, float(state["w"].sum()))
"""


@pytest.mark.xfail(
    strict=False,
    reason="racy: orbax, asyncio and tensorstore sometimes log the full disk again from "
    "their threads or at exit (a traceback in about half the runs on the 2-core CPU), "
    "past the filter in checkpoints._FailedSaveNoise",
)
def test_a_full_disk_in_orbaxs_background_is_one_line_and_no_traceback(tmp_path, on_full_tmpfs):
    folder = tmp_path / "disk"
    folder.mkdir()
    finished = on_full_tmpfs(
        folder,
        [sys.executable, "-c", _FULL_TMPFS, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    error, restored = finished.stdout.splitlines()
    assert error.startswith(
        f"a checkpoint could not be written in '{folder}/checkpoints' (OSError: [Errno 28] No "
        f"space left on device: '{folder}/checkpoints/20.orbax-checkpoint-tmp/"
    ), error
    assert error.endswith(
        "); the newest complete one (step 10) is kept: rerun the same command "
        "to resume from it once the cause is fixed"
    ), error
    assert restored == "10 30.0"
    # Without `_FailedSaveNoise`: five ERROR records from orbax's threads, 340 lines with their
    # tracebacks, and at times tensorstore's "RuntimeError: Event loop is closed" ones.
    assert "Traceback" not in finished.stderr and "ERROR" not in finished.stderr, finished.stderr


def test_an_error_orbax_logs_but_does_not_raise_is_logged_when_the_saves_are_over(tmp_path, caplog):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    try:
        raise OSError(errno.EACCES, "Permission denied", "checkpoints/10")
    except OSError:
        # As orbax logs a failure to delete an old checkpoint, which it does not raise.
        record = logging.getLogger("absl").makeRecord(
            "absl",
            logging.ERROR,
            checkpoints_module._ORBAX_FOLDER + "storage_backend.py",
            172,
            "Failed to remove checkpoint (%s)",
            ("checkpoints/10",),
            sys.exc_info(),
        )
    logging.getLogger("absl").handle(record)
    assert "Failed to remove checkpoint" not in caplog.text  # held while saves may raise it
    checkpoints.wait()
    assert "Failed to remove checkpoint (checkpoints/10)" in caplog.text
    checkpoints.close()


def test_a_tensorstore_error_from_the_file_system_is_described_as_its_os_error():
    error = ValueError(
        'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database at local file "/c/20.orbax-'
        'checkpoint-tmp/state/ocdbt.process_0/": Failed writing: "/c/20.orbax-checkpoint-tmp/'
        'state/ocdbt.process_0/d/4d9a": Failed to write 551226 bytes to file 11: No space left '
        "on device [os_error_code='28'] [tensorstore_spec='{}']"
    )
    assert checkpoints_module._describe(error) == (
        "OSError: [Errno 28] No space left on device: "
        "'/c/20.orbax-checkpoint-tmp/state/ocdbt.process_0/d/4d9a'"
    )


def test_tensorstore_finding_orbaxs_event_loop_closed_is_not_printed(tmp_path, monkeypatch):
    # What tensorstore's threads raise, from outside Python, on completing a write of a save
    # that orbax has given up.
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as error:
        closed = error
    from_outside_python = types.SimpleNamespace(
        exc_type=RuntimeError,
        exc_value=closed,
        exc_traceback=closed.__traceback__.tb_next,  # from call_soon_threadsafe down
        err_msg=None,
        object=None,
    )
    other = types.SimpleNamespace(
        exc_type=ValueError, exc_value=ValueError(), exc_traceback=None, err_msg=None, object=None
    )
    printed = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    sys.unraisablehook(from_outside_python)
    sys.unraisablehook(other)
    checkpoints.close()
    assert printed == [other]
    assert sys.unraisablehook == printed.append
