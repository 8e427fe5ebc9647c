"""Checkpoints keep the newest `keep`; a workdir with a run's files but no config is refused."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from l2reg import train
from l2reg.checkpointing import Checkpoints


def test_only_the_newest_keep_checkpoints_stay_and_the_newest_is_restored(tmp_path):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    for step in (10, 20, 30, 40):
        checkpoints.save(step, {"w": jnp.full(3, float(step))})
    checkpoints.wait()
    assert sorted(int(name) for name in os.listdir(tmp_path / "checkpoints")) == [30, 40]
    state, step = checkpoints.restore_latest({"w": jnp.zeros(3)})
    checkpoints.close()
    assert step == 40
    np.testing.assert_array_equal(state["w"], [40.0, 40.0, 40.0])


def test_empty_checkpoint_directory_restores_the_target(tmp_path):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    target = {"w": jnp.ones(2)}
    state, step = checkpoints.restore_latest(target)
    checkpoints.close()
    assert step is None and state is target


def test_run_files_without_a_config_are_refused_and_left_alone(small_config, tmp_path):
    (tmp_path / train.METRICS_FILE).write_text('{"step": 10}\n')
    with pytest.raises(ValueError, match=r"holds \['metrics.jsonl'\] but no config.json") as error:
        train.prepare_workdir(str(tmp_path), small_config, overwrite=False)
    assert "\n" not in str(error.value)
    assert os.listdir(tmp_path) == [train.METRICS_FILE]
    assert (tmp_path / train.METRICS_FILE).read_text() == '{"step": 10}\n'
    train.prepare_workdir(str(tmp_path), small_config, overwrite=True)
    assert os.listdir(tmp_path) == [train.CONFIG_FILE]
