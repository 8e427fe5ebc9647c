"""Checkpoints keep the newest `keep`, move unreadable ones aside and refuse ones of another
state, report a failed save in one line without orbax's tracebacks; a workdir with a run's files
but no config is refused."""

import asyncio
import errno
import gc
import logging
import os
import sys
import types
import warnings

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
        f"space left on device: '{folder}/checkpoints/20.orbax-checkpoint-tmp"
    ), error
    assert error.endswith(
        "); the newest complete one (step 10) is kept: rerun the same command "
        "to resume from it once the cause is fixed"
    ), error
    assert restored == "10 30.0"
    # Without `_FailedSaveNoise`: five ERROR records from orbax's threads, 340 lines with their
    # tracebacks, and at times tensorstore's "RuntimeError: Event loop is closed" ones.
    assert "Traceback" not in finished.stderr and "ERROR" not in finished.stderr, finished.stderr


def _orbax_record(error: Exception, file: str, message: str, *args) -> logging.LogRecord:
    """An ERROR record of the absl logger, as orbax's code in `file` logs `error` raised."""
    try:
        raise error
    except type(error):
        return logging.getLogger("absl").makeRecord(
            "absl",
            logging.ERROR,
            checkpoints_module._ORBAX_FOLDER + file,
            1,
            message,
            args,
            sys.exc_info(),
        )


def test_an_error_orbax_logs_but_does_not_raise_is_logged_when_the_saves_are_over(tmp_path, caplog):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    # As orbax logs a failure to delete an old checkpoint, which it does not raise.
    record = _orbax_record(
        OSError(errno.EACCES, "Permission denied", "checkpoints/10"),
        "storage_backend.py",
        "Failed to remove checkpoint (%s)",
        "checkpoints/10",
    )
    logging.getLogger("absl").handle(record)
    assert "Failed to remove checkpoint" not in caplog.text  # held while saves may raise it
    checkpoints.wait()
    assert "Failed to remove checkpoint (checkpoints/10)" in caplog.text
    checkpoints.close()


def test_a_failed_write_naming_no_file_is_reported_in_the_folder_of_the_step(tmp_path, monkeypatch):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    checkpoints.save(10, {"w": jnp.full(3, 10.0)})
    checkpoints.wait()
    checkpoints.save(20, {"w": jnp.full(3, 20.0)})

    def full_disk():  # as orbax raises its JSON item's failed write: Python names no file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints._manager, "wait_until_finished", full_disk)
    with pytest.raises(OSError) as error:
        checkpoints.wait()
    monkeypatch.undo()
    checkpoints.close()
    assert str(error.value).startswith(
        f"a checkpoint could not be written in '{tmp_path}/checkpoints' (OSError: [Errno 28] No "
        f"space left on device: '{tmp_path}/checkpoints/20.orbax-checkpoint-tmp'); "
    ), error.value


def test_a_file_error_naming_no_file_is_dropped_once_a_save_failed(tmp_path, caplog):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    # As orbax's JSON writes meet a full disk: Python's error names no file.
    record = _orbax_record(
        OSError(errno.ENOSPC, "No space left on device"),
        "future.py",
        "_SignalingThread.run() raised an exception: %s",
        "[Errno 28] No space left on device",
    )
    logging.getLogger("absl").handle(record)
    checkpoints_module._FAILED_SAVE_NOISE.save_failed(checkpoints.directory)
    checkpoints.close()
    assert "_SignalingThread" not in caplog.text
    logging.getLogger("absl").handle(record)  # and from then on
    assert "_SignalingThread" not in caplog.text


def test_asyncio_logging_a_failed_saves_write_at_exit_is_dropped(tmp_path, caplog):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    checkpoints_module._FAILED_SAVE_NOISE.save_failed(checkpoints.directory)
    checkpoints.close()
    # Raised by tensorstore outside Python (no traceback), logged by asyncio when its future is
    # garbage-collected: after the run's checkpoints are closed, possibly at exit.
    written = ValueError(
        f'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database at local file "{tmp_path}/'
        'checkpoints/20.orbax-checkpoint-tmp/state/ocdbt.process_0/": Failed to write 4674 '
        "bytes to file 9: No space left on device [os_error_code='28']"
    )
    elsewhere = ValueError(f'RESOURCE_EXHAUSTED: Error writing local file "{tmp_path}/other"')
    for error in (written, elsewhere):
        record = logging.getLogger("asyncio").makeRecord(
            "asyncio",
            logging.ERROR,
            asyncio.base_events.__file__,
            1771,
            "Future exception was never retrieved",
            (),
            (ValueError, error, None),
        )
        logging.getLogger("asyncio").handle(record)
    assert "20.orbax-checkpoint-tmp" not in caplog.text
    assert f"{tmp_path}/other" in caplog.text


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


def test_a_tensorstore_error_opening_a_driver_is_described_by_the_code_after_its_spec():
    error = ValueError(
        'RESOURCE_EXHAUSTED: Error opening "zarr" driver: Error writing ".zarray" in OCDBT '
        'database at local file "/c/20.orbax-checkpoint-tmp/state/ocdbt.process_0/": Error '
        'writing local file "/c/20.orbax-checkpoint-tmp/state/ocdbt.process_0/manifest.ocdbt": '
        'Failed writing: "/c/20.orbax-checkpoint-tmp/state/ocdbt.process_0/manifest.ocdbt.__lock'
        '": Failed to write 85 bytes to file 3: No space left on device [tensorstore_spec=\'{\\"'
        'driver\\":\\"zarr\\",\\"path\\":\\"/c/20.orbax-checkpoint-tmp/state/\\"}\'] '
        "[os_error_code='28']"
    )
    assert checkpoints_module._describe(error) == (
        "OSError: [Errno 28] No space left on device: "
        "'/c/20.orbax-checkpoint-tmp/state/ocdbt.process_0/manifest.ocdbt.__lock'"
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
    monkeypatch.setattr(checkpoints_module._FAILED_SAVE_NOISE, "_failed", set())
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    sys.unraisablehook(from_outside_python)
    sys.unraisablehook(other)
    checkpoints.close()
    assert printed == [other]
    sys.unraisablehook(from_outside_python)  # no `Checkpoints` open, no save failed: not theirs
    assert printed == [other, from_outside_python]
    checkpoints_module._FAILED_SAVE_NOISE.save_failed(str(tmp_path / "checkpoints"))
    sys.unraisablehook(from_outside_python)  # a failed save's write, completed at exit
    assert printed == [other, from_outside_python]


def _raised_in_orbax(cause: BaseException, details: str = "") -> BaseException:
    """An Exception raised from `cause` in code whose file is in orbax's folder, as orbax
    re-raises what interrupts its reads."""
    code = "def read(cause, details):\n    raise Exception('Error reading' + details) from cause"
    namespace = {}
    exec(compile(code, checkpoints_module._ORBAX_FOLDER + "serialization.py", "exec"), namespace)
    try:
        namespace["read"](cause, details)
    except Exception as error:
        return error


def test_orbaxs_pending_reads_of_an_unreadable_checkpoint_are_not_printed(
    tmp_path, monkeypatch, damage
):
    weights = np.random.default_rng(0).standard_normal(4096).astype(np.float32)  # not inlined
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    checkpoints.save(10, {"w": jnp.asarray(weights)})
    checkpoints.save(20, {"w": jnp.asarray(weights + 1)})
    checkpoints.wait()
    checkpoints.close()
    printed = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)

    def unraisable(error):  # as orbax's read coroutines, left pending, are garbage-collected
        return types.SimpleNamespace(
            exc_type=type(error),
            exc_value=error,
            exc_traceback=error.__traceback__,
            err_msg=None,
            object="<coroutine object _read_array_index_and_device_put>",
        )

    of_step_20 = unraisable(
        _raised_in_orbax(
            ValueError(
                f'OUT_OF_RANGE: Error reading "w/0" in OCDBT database at local file '
                f'"{tmp_path}/checkpoints/20/state/": Requested byte range [8, 16) is not valid'
            )
        )
    )
    # Orbax's error on closing a read it gave up: raised from GeneratorExit, naming the array's
    # folder in its spec.
    closed = unraisable(
        _raised_in_orbax(GeneratorExit(), f"'path': '{tmp_path}/checkpoints/20/state/'")
    )
    elsewhere = unraisable(_raised_in_orbax(ValueError(f'Error reading "{tmp_path}/other"')))
    damage.truncate(tmp_path / "checkpoints" / "20")
    again = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    for error in (of_step_20, closed, elsewhere):  # before step 20 is found unreadable
        sys.unraisablehook(error)
    assert printed == []  # held while reading
    restored = again.restore_latest({"w": jnp.zeros(4096)})
    assert restored.step == 10
    assert [u.exc_value for u in printed] == [elsewhere.exc_value]
    assert printed[0].err_msg == (
        "Exception ignored in: '<coroutine object _read_array_index_and_device_put>'"
    )
    for error in (of_step_20, closed):  # after the reading: dropped, closed or not
        sys.unraisablehook(error)
    again.close()
    for error in (of_step_20, closed):
        sys.unraisablehook(error)
    assert len(printed) == 1


def test_orbaxs_coroutines_never_awaited_are_not_warned_of_once_a_save_failed(tmp_path):
    from orbax.checkpoint._src import asyncio_utils
    from orbax.checkpoint._src.path import async_path

    async def ours():
        pass

    def never_awaited(saves_failed: bool) -> list[str]:
        """What Python warns of three coroutines never awaited: a nested one of orbax's (its
        runner's shutdown, sent to a loop that has stopped), a module-level one of orbax's and
        one of ours."""
        runner = asyncio_utils.AsyncRunner()
        runner._loop.call_soon_threadsafe(runner._loop.stop)
        runner._thread.join()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if saves_failed:
                checkpoints_module._FAILED_SAVE_NOISE.save_failed(str(tmp_path / "checkpoints"))
            with pytest.raises(RuntimeError, match="Event loop is closed"):
                runner.shutdown(wait=False)
            async_path.exists(tmp_path)
            ours()
            gc.collect()
        return [str(warning.message) for warning in caught]

    ours_warned = f"coroutine '{ours.__qualname__}' was never awaited"
    assert never_awaited(saves_failed=False) == [
        "coroutine 'AsyncRunner.shutdown.<locals>._shutdown_tasks' was never awaited",
        "coroutine 'exists' was never awaited",
        ours_warned,
    ]
    assert never_awaited(saves_failed=True) == [ours_warned]
