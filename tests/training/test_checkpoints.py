"""Checkpoints keep the newest `keep`, move unreadable ones aside and refuse ones of another
state; a workdir with a run's files but no config is refused."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

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
