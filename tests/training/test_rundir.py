"""The run folder: the metrics log set aside and rebuilt, the workdir lock, the recorded config."""

import json
import os
import signal
import subprocess
import sys

import pytest

from l2reg import models, training
from l2reg.training import rundir


def _line(step: int, loss: float) -> str:
    return json.dumps({"step": step, "train_loss": loss})


CHECKPOINTED = [{"step": 10, "train_loss": 0.5}, {"step": 20, "train_loss": 0.25}]


def test_bad_metrics_lines_are_set_aside_with_a_warning_naming_file_and_line(tmp_path, caplog):
    bad = [
        b'{"train_loss": 0.5}\n',  # no step
        b"[10, 0.5]\n",  # a JSON list
        b'{"step": 20, "train_loss": \xff\xfe}\n',  # not UTF-8
        b'{"step": true}\n',  # a step that is not an integer
    ]
    good = [(_line(10, 0.5) + "\n").encode(), (_line(20, 0.25) + "\n").encode()]
    later = (_line(30, 0.125) + "\n").encode()  # after the checkpoint: dropped, not bad
    path = tmp_path / rundir.METRICS_FILE
    path.write_bytes(good[0] + bad[0] + bad[1] + good[1] + bad[2] + later + bad[3])

    log = rundir.MetricsLog(str(tmp_path), 20, CHECKPOINTED)
    log.write({"step": 30, "train_loss": 0.2})
    log.close()

    assert training.read_metrics(tmp_path) == [*CHECKPOINTED, {"step": 30, "train_loss": 0.2}]
    assert (tmp_path / rundir.BAD_METRICS_FILE).read_bytes() == b"".join(bad)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for number, what in ((2, "has no integer step"), (3, "is a JSON list"), (5, "UTF-8")):
        assert any(f"{path} line {number} " in w and what in w for w in warnings), warnings
    assert any(f"{path} line 7 has no integer step (step: True)" in w for w in warnings)


def test_a_line_unlike_the_checkpoints_is_set_aside_and_replaced(tmp_path, caplog):
    path = tmp_path / rundir.METRICS_FILE
    path.write_text(_line(10, 0.5) + "\n" + _line(20, 9.0) + "\n")
    rundir.MetricsLog(str(tmp_path), 20, CHECKPOINTED).close()
    assert training.read_metrics(tmp_path) == CHECKPOINTED
    assert (tmp_path / rundir.BAD_METRICS_FILE).read_text() == _line(20, 9.0) + "\n"
    assert f"{path} line 2 is not the line of step 20 of the checkpoint" in caplog.text


@pytest.mark.parametrize("damage", ["deleted", "cut"])
def test_a_deleted_or_cut_metrics_file_is_rebuilt_from_the_checkpoint(tmp_path, caplog, damage):
    path = tmp_path / rundir.METRICS_FILE
    if damage == "cut":
        path.write_text(_line(10, 0.5) + "\n" + _line(20, 0.25)[:7])
    rundir.MetricsLog(str(tmp_path), 20, CHECKPOINTED).close()
    assert training.read_metrics(tmp_path) == CHECKPOINTED
    lacked = 2 if damage == "deleted" else 1
    assert f"{path} lacked {lacked} of the 2 lines up to step 20" in caplog.text


def test_reading_a_bad_metrics_file_names_the_file_and_line(tmp_path):
    (tmp_path / rundir.METRICS_FILE).write_text(_line(10, 0.5) + "\n[1, 2]\n")
    message = r"metrics.jsonl line 2 is a JSON list, not an object: rerun the training command"
    with pytest.raises(ValueError, match=message) as error:
        training.read_metrics(tmp_path)
    assert "\n" not in str(error.value)


def test_a_locked_workdir_is_refused_naming_the_holder_then_free_again(tmp_path):
    workdir = tmp_path / "run"
    with rundir.locked(str(workdir)):
        holder = (workdir / rundir.LOCK_FILE).read_text()
        assert holder.startswith(f"pid {os.getpid()} on host ")
        message = rf"^workdir '.*run' is in use by another trainer \(pid {os.getpid()} on host "
        with pytest.raises(ValueError, match=message) as error:
            with rundir.locked(str(workdir)):
                pytest.fail("locked twice")
        assert "\n" not in str(error.value) and " since " in str(error.value)
        assert (workdir / rundir.LOCK_FILE).read_text() == holder  # the refusal changed nothing
    assert os.listdir(workdir) == []  # the lock file goes with the lock
    with rundir.locked(str(workdir)):
        pass


def test_the_lock_of_a_killed_trainer_does_not_block(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from l2reg.training import rundir\n"
            "with rundir.locked(sys.argv[1]):\n"
            "    print('locked', flush=True); sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(ValueError, match=f"in use by another trainer \\(pid {holder.pid} "):
        with rundir.locked(str(tmp_path)):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / rundir.LOCK_FILE).exists()  # left behind, but no longer locked
    with rundir.locked(str(tmp_path)):
        assert (tmp_path / rundir.LOCK_FILE).read_text().startswith(f"pid {os.getpid()} ")


def test_a_failed_start_leaves_no_folder_it_made(tmp_path):
    workdir = tmp_path / "new" / "run"
    with pytest.raises(OSError, match="disk full"):
        with rundir.locked(str(workdir)):
            os.makedirs(workdir / rundir.CHECKPOINT_DIR)
            raise OSError(28, "disk full")
    assert os.listdir(tmp_path / "new") == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(OSError, match="disk full"):
        with rundir.locked(str(tmp_path / "kept")):
            raise OSError(28, "disk full")
    assert (tmp_path / "kept").is_dir()  # not made by the failed start: kept


def test_resuming_leaves_the_recorded_config_alone(small_config, tmp_path):
    rundir.prepare_workdir(str(tmp_path), small_config, overwrite=False)
    config_path = tmp_path / rundir.CONFIG_FILE
    (tmp_path / rundir.METRICS_FILE).write_text("")  # a run is there
    before = os.stat(config_path)
    rundir.prepare_workdir(str(tmp_path), small_config, overwrite=False)
    after = os.stat(config_path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_checkpoints_of_another_state_are_refused_without_rewriting_the_config(
    small_config, tmp_path, monkeypatch
):
    training.train_and_evaluate(small_config, str(tmp_path))
    config_path = tmp_path / rundir.CONFIG_FILE
    before = os.stat(config_path)
    create = models.create
    monkeypatch.setattr(models, "create", lambda *a, **k: create(*a, **{**k, "widths": (32, 48)}))
    with pytest.raises(ValueError, match=r"^the checkpoint of step 40 .*Dense_1"):
        training.train_and_evaluate(small_config, str(tmp_path))
    after = os.stat(config_path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not (tmp_path / rundir.LOCK_FILE).exists()
