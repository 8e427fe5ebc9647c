"""Tests of the trainer (l2reg.training) in-process, on the four forced CPU devices of
tests/conftest.py."""

import dataclasses
import functools
import json
import os
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from experiments.configs import wrn28_10_cifar10
from l2reg import data, models, training
from l2reg.training import loop, recipe, rundir


def run(config, workdir, **kwargs) -> list[dict]:
    training.train_and_evaluate(config, str(workdir), **kwargs)
    return training.read_metrics(workdir)


def without_timing(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in rundir.TIMING_FIELDS}


def test_metrics_lines_have_the_documented_fields(small_config, tmp_path):
    lines = run(small_config, tmp_path)
    assert [line["step"] for line in lines] == [10, 20, 30, 40]
    assert list(lines[0]) == [
        "step",
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "l2",
        "lr",
        "weight_norm",
        "steps_per_sec",
    ]
    assert all(line["l2"] == np.float32(small_config.l2) for line in lines)
    assert all(line["lr"] == np.float32(small_config.lr) for line in lines)
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["20", "40"]
    assert os.listdir(tmp_path / "tensorboard")


def test_metrics_lines_hold_the_validation_split_when_there_is_one(small_config, tmp_path):
    small_config.data_options.validation_size = 200
    small_config.data_options.validation_seed = 1
    lines = run(small_config, tmp_path / "validated")
    assert list(lines[0]) == [
        "step",
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "validation_loss",
        "validation_accuracy",
        "l2",
        "lr",
        "weight_norm",
        "steps_per_sec",
    ]
    curves = training.read_curves(tmp_path / "validated")
    np.testing.assert_array_equal(
        curves.validation_accuracy, [line["validation_accuracy"] for line in lines]
    )
    assert np.all((curves.validation_accuracy >= 0) & (curves.validation_accuracy <= 1))
    assert np.all(np.isfinite(curves.validation_loss))
    # 200 examples: every accuracy is a multiple of 1/200.
    counts = curves.validation_accuracy * 200
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    small_config.data_options.validation_size = 0
    run(small_config, tmp_path / "plain")
    plain = training.read_curves(tmp_path / "plain")
    assert np.all(np.isnan(plain.validation_accuracy) & np.isnan(plain.validation_loss))
    assert len(plain.validation_loss) == len(plain.steps) == 4


def test_same_config_and_seed_give_bitwise_identical_metrics(small_config, tmp_path):
    first = run(small_config, tmp_path / "first")
    second = run(small_config, tmp_path / "second")
    assert [without_timing(line) for line in first] == [without_timing(line) for line in second]
    small_config.seed = 1
    other_seed = run(small_config, tmp_path / "other_seed")
    assert without_timing(other_seed[-1]) != without_timing(first[-1])


def test_a_report_is_written_while_the_next_step_runs(small_config, tmp_path, monkeypatch):
    # Lines are written once the following step is queued; a checkpoint step (20, 40) waits
    # for its own line. The values are those of a synchronous evaluation of the same state.
    events, evaluated = [], {}
    create_trainer, write = training.create_trainer, rundir.MetricsLog.write

    def recording_trainer(config, **kwargs):
        trainer = create_trainer(config, **kwargs)

        def train_step(state, images, labels):
            state = trainer.sharded_train_step(state, images, labels)
            step = len([event for event in events if event[0] == "step"]) + 1
            events.append(("step", step))
            if step % config.eval_every == 0:
                evaluated[step] = trainer.evaluate(state)
            return state

        return dataclasses.replace(trainer, sharded_train_step=train_step)

    def recording_write(log, record):
        events.append(("line", record["step"]))
        write(log, record)

    monkeypatch.setattr(loop.trainer_lib, "create_trainer", recording_trainer)
    monkeypatch.setattr(rundir.MetricsLog, "write", recording_write)
    lines = run(small_config, tmp_path)
    order = [("step", n) for n in range(1, 41)]
    for line, after in ((10, 11), (20, 20), (30, 31), (40, 40)):
        order.insert(order.index(("step", after)) + 1, ("line", line))
    assert events == order
    for line in lines:
        assert {name: line[name] for name in evaluated[line["step"]]} == evaluated[line["step"]]


def _trajectory(config, num_devices: int) -> tuple[np.ndarray, dict]:
    trainer = training.create_trainer(config, devices=jax.devices()[:num_devices])
    state, batches, losses = trainer.init_state(), trainer.train_batches(0), []
    for _ in range(config.steps):
        state = trainer.sharded_train_step(state, *next(batches))
        losses.append(trainer.summarize(state)["train_loss"])
    return np.asarray(jax.device_get(losses)), trainer.evaluate(state)


@pytest.mark.slow
def test_loss_trajectory_does_not_depend_on_the_device_count(small_config):
    # Batch norm makes the check bite: unsynchronized statistics over 100, 50 or 25 examples
    # per device would give different trajectories.
    small_config.model_options.normalization = "batch"
    small_config.eval_every = 1
    small_config.steps = 15
    losses, test = {}, {}
    for num_devices in (1, 2, 4):
        losses[num_devices], test[num_devices] = _trajectory(small_config, num_devices)
    for num_devices in (2, 4):
        np.testing.assert_allclose(losses[num_devices], losses[1], rtol=1e-5)
        np.testing.assert_allclose(test[num_devices]["test_loss"], test[1]["test_loss"], rtol=1e-5)
    assert losses[1][-1] < losses[1][0]


def test_mixup_loss_is_the_loss_on_mixed_one_hot_targets():
    logits = jax.random.normal(jax.random.key(0), (5, 10))
    labels, partners, weight = jnp.arange(5), jnp.array([4, 0, 1, 2, 3]), 0.3
    targets = weight * jax.nn.one_hot(labels, 10) + (1 - weight) * jax.nn.one_hot(partners, 10)

    def mixed(logits, loss):
        config = training.default_config()
        config.loss = loss
        loss_fn = recipe.create_loss(config)
        return weight * loss_fn(logits, labels) + (1 - weight) * loss_fn(logits, partners)

    np.testing.assert_allclose(
        mixed(logits, "cross_entropy"), optax.softmax_cross_entropy(logits, targets), rtol=1e-6
    )
    # The squared error differs by a constant, so the gradients agree.
    on_targets = jax.grad(lambda f: 0.5 * jnp.sum(jnp.square(f - targets)))(logits)
    np.testing.assert_allclose(
        jax.grad(lambda f: mixed(f, "mse").sum())(logits), on_targets, atol=1e-6
    )


@pytest.mark.slow
def test_mixup_trains_and_its_pairs_do_not_depend_on_the_device_count(small_config):
    small_config.eval_every = 1
    small_config.steps = 15
    plain, _ = _trajectory(small_config, 4)
    small_config.mixup_alpha = 1.0
    losses = {n: _trajectory(small_config, n)[0] for n in (1, 4)}
    np.testing.assert_allclose(losses[4], losses[1], rtol=1e-5)
    assert not np.allclose(losses[1], plain, rtol=1e-3)
    assert np.all(np.isfinite(losses[1])) and losses[1][-1] < losses[1][0]


def _corrupt(directory) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "wb") as file:
                file.write(b"\x00garbage")


def test_corrupt_latest_checkpoint_resumes_from_the_previous(small_config, tmp_path, caplog):
    reference = run(small_config, tmp_path / "reference")
    workdir = tmp_path / "run"
    run(small_config, workdir)
    _corrupt(workdir / "checkpoints" / "40")
    resumed = run(small_config, workdir)
    assert "checkpoint of step 40" in caplog.text and "corrupt" in caplog.text
    assert os.listdir(workdir / "checkpoints.corrupt") == ["40"]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["20", "40"]
    assert [without_timing(line) for line in resumed] == [
        without_timing(line) for line in reference
    ]


def test_checkpoints_of_another_model_are_refused_and_the_run_kept(
    small_config, tmp_path, monkeypatch
):
    run(small_config, tmp_path)
    before = _snapshot(tmp_path)
    # Code that builds another state from the same config: a wider second layer.
    create = models.create
    monkeypatch.setattr(models, "create", lambda *a, **k: create(*a, **{**k, "widths": (32, 48)}))
    with pytest.raises(ValueError, match=r"^the checkpoint of step 40 .*Dense_1") as error:
        training.train_and_evaluate(small_config, str(tmp_path))
    assert "\n" not in str(error.value) and "--overwrite" in str(error.value)
    assert _snapshot(tmp_path) == before  # nothing moved, metrics.jsonl and events as they were


def test_a_run_whose_checkpoints_are_all_unreadable_is_refused_and_kept(small_config, tmp_path):
    run(small_config, tmp_path)
    for step in ("20", "40"):
        _corrupt(tmp_path / "checkpoints" / step)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"^no checkpoint in .* can be read .*--overwrite"):
        training.train_and_evaluate(small_config, str(tmp_path))
    assert _snapshot(tmp_path) == before


def test_rerunning_a_finished_run_changes_nothing(small_config, tmp_path):
    first = run(small_config, tmp_path)
    assert run(small_config, tmp_path) == first


def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    small_config, tmp_path
):
    small_config.lr = 1e4  # diverges within a few steps
    small_config.checkpoint_every = 1
    small_config.eval_every = 20
    with pytest.raises(training.NonFiniteLossError, match=r"at step (\d+)") as error:
        training.train_and_evaluate(small_config, str(tmp_path))
    bad_step = int(re.search(r"at step (\d+)", str(error.value))[1])
    steps = sorted(int(name) for name in os.listdir(tmp_path / "checkpoints"))
    assert steps and steps[-1] == bad_step - 1
    assert f"step {bad_step - 1}" in str(error.value)
    restored = ocp.StandardCheckpointer().restore(
        tmp_path / "checkpoints" / str(steps[-1]) / "state"
    )
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(restored["params"]))
    assert not os.path.exists(tmp_path / "metrics.jsonl") or not training.read_metrics(tmp_path)


def test_resumed_metrics_log_drops_later_and_torn_lines(tmp_path):
    lines = [json.dumps({"step": step, "train_loss": 1.0 / step}) + "\n" for step in (10, 20, 30)]
    (tmp_path / "metrics.jsonl").write_text("".join(lines) + '{"step": 40, "train_lo')
    checkpointed = [{"step": 10, "train_loss": 0.1}, {"step": 20, "train_loss": 0.05}]
    log = rundir.MetricsLog(str(tmp_path), start_step=20, checkpointed=checkpointed)
    log.write({"step": 30, "train_loss": 0.5})
    log.close()
    assert training.read_metrics(tmp_path) == [
        {"step": 10, "train_loss": 0.1},
        {"step": 20, "train_loss": 0.05},
        {"step": 30, "train_loss": 0.5},
    ]


def test_metrics_log_started_again_at_step_0_hides_the_earlier_events(
    tmp_path, tensorboard_scalars
):
    # A run killed before its first checkpoint starts again at step 0 over its own events.
    log = rundir.MetricsLog(str(tmp_path), start_step=0, checkpointed=[])
    for step in (10, 20, 30):
        log.write({"step": step, "train_loss": 1.0})
    log.close()
    next_second = int(time.time()) + 1  # event files are named by the second: a second file
    while time.time() < next_second:
        time.sleep(0.01)
    log = rundir.MetricsLog(str(tmp_path), start_step=0, checkpointed=[])
    log.write({"step": 10, "train_loss": 0.5})
    log.close()
    events = tmp_path / rundir.TENSORBOARD_DIR
    assert len(os.listdir(events)) == 2
    assert tensorboard_scalars(events, "train_loss") == {10: 0.5}
    assert training.read_metrics(tmp_path) == [{"step": 10, "train_loss": 0.5}]


def _snapshot(directory) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(root, name), directory): open(
            os.path.join(root, name), "rb"
        ).read()
        for root, _, files in os.walk(directory)
        for name in files
    }


def test_workdir_with_another_config_is_refused_unless_overwrite(
    small_config, tmp_path, monkeypatch
):
    run(small_config, tmp_path)
    before = _snapshot(tmp_path)
    small_config.lr = 0.02
    with monkeypatch.context() as patch:  # refused before the data are loaded
        patch.setattr(data, "load", lambda *args, **kwargs: pytest.fail("loaded the data"))
        with pytest.raises(ValueError, match=r"different config \(lr: 0.01 -> 0.02\).*--overwrite"):
            training.train_and_evaluate(small_config, str(tmp_path))
    assert _snapshot(tmp_path) == before
    lines = run(small_config, tmp_path, overwrite=True)
    assert [line["step"] for line in lines] == [10, 20, 30, 40]
    assert all(line["lr"] == np.float32(0.02) for line in lines)
    with open(tmp_path / "config.json", encoding="utf-8") as file:
        assert json.load(file)["lr"] == 0.02


def test_unreadable_recorded_config_is_refused_naming_the_file(small_config, tmp_path):
    run(small_config, tmp_path)
    (tmp_path / "config.json").write_text('{"lr": 0.0')
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"config.json' is not valid JSON .*--overwrite") as error:
        training.train_and_evaluate(small_config, str(tmp_path))
    assert "\n" not in str(error.value)
    assert _snapshot(tmp_path) == before
    lines = run(small_config, tmp_path, overwrite=True)
    assert [line["step"] for line in lines] == [10, 20, 30, 40]


def test_workdir_that_is_a_file_is_refused_before_any_work(small_config, tmp_path, monkeypatch):
    (tmp_path / "results").write_text("kept")
    monkeypatch.setattr(data, "load", lambda *args, **kwargs: pytest.fail("loaded the data"))
    with pytest.raises(ValueError, match=r"workdir '.*results' is a file: it must be a folder"):
        training.train_and_evaluate(small_config, str(tmp_path / "results"))
    assert (tmp_path / "results").read_text() == "kept"


def test_workdir_that_cannot_be_written_is_refused_before_any_work(small_config, monkeypatch):
    # Nothing can be created under /proc, not even by root.
    monkeypatch.setattr(data, "load", lambda *args, **kwargs: pytest.fail("loaded the data"))
    with pytest.raises(
        ValueError, match=r"^workdir '/proc/l2reg/run' cannot be created in '/proc'"
    ) as error:
        training.train_and_evaluate(small_config, "/proc/l2reg/run")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model", "transformer", r"^unknown model 'transformer'; known: mlp"),
        ("model_options.widths", (32, 0), r"^widths=\(32, 0\) must be a non-empty sequence"),
    ],
)
def test_bad_model_is_refused_before_the_data_load(
    small_config, tmp_path, monkeypatch, field, value, message
):
    monkeypatch.setattr(data, "load", lambda *args, **kwargs: pytest.fail("loaded the data"))
    parent, _, name = field.rpartition(".")
    (small_config[parent] if parent else small_config)[name] = value
    with pytest.raises(ValueError, match=message) as error:
        training.train_and_evaluate(small_config, str(tmp_path / "run"))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


BAD_INPUTS = [
    ("l2", -1e-4, r"^config.l2 must be finite and >= 0, got -0.0001$"),
    ("lr", 0.0, r"^config.lr must be finite and > 0, got 0.0$"),
    ("lr", float("nan"), r"^config.lr must be finite and > 0, got nan$"),
    ("steps", 0, r"^config.steps must be an integer in \[1, 2147483647\], got 0$"),
    ("eval_every", 3_000_000_000, r"^config.eval_every must be an integer in \[1, 2147483647\]"),
    ("seed", 2**32, r"^config.seed must be an integer in \[-2147483648, 2147483647\], got 4294"),
    ("lr_step_factor", float("inf"), r"^config.lr_step_factor must be finite and > 0, got inf$"),
    ("batch_size", 102, r"^config.batch_size must be divisible by the device count 4, got 102$"),
    ("eval_batch_size", 398, r"^config.eval_batch_size must be divisible by the device count 4"),
    ("l2_mode", "weight_decay", r"^config.l2_mode must be one of \('none', 'fixed', 'autol2', "),
    ("l2_placement", "after", r"^config.l2_placement must be one of .*, got 'after'$"),
    ("optimizer", "rmsprop", r"^config.optimizer must be one of .*, got 'rmsprop'$"),
    ("lr_schedule", "linear", r"^config.lr_schedule must be one of .*, got 'linear'$"),
    ("dtype", "float16", r"^config.dtype must be one of .*, got 'float16'$"),
    ("loss", "hinge", r"^config.loss must be one of .*, got 'hinge'$"),
    ("mse_targets", "zero", r"^config.mse_targets must be one of .*, got 'zero'$"),
    ("mixup_alpha", -1.0, r"^config.mixup_alpha must be finite and >= 0 \(0 turns mixup off\)"),
    ("model", "transformer", r"unknown model 'transformer'"),
    ("dataset", "imagenet21k", r"imagenet21k"),
    ("data_options.test_sizes", 10, r"^config.data_options must hold only .*, got 'test_sizes'$"),
    ("data_options.label_noise", 1.5, r"^label_noise must be in \[0, 1\), got 1.5$"),
    ("data_options.validation_size", -1, r"^validation_size must be an integer ≥ 0, got -1$"),
    (
        "data_options.validation_size",
        1500,
        r"^validation_size=1500 must be an integer in \[1, 1499\]: less than the 1500 training",
    ),
    ("batch_size", 2000, r"config.batch_size=2000 exceeds the 1500 training examples"),
    ("augment", True, r"config.augment=True, but data set 'digits' has no standard augmentation"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_INPUTS)
def test_bad_input_is_a_one_line_error_before_any_work(
    small_config, tmp_path, field, value, message
):
    *parents, name = field.split(".")
    functools.reduce(lambda node, key: node[key], parents, small_config)[name] = value
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=message) as error:
        training.train_and_evaluate(small_config, str(workdir))
    assert "\n" not in str(error.value)
    assert not workdir.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("b1", 1.5, r"^config.adam.b1 must be in \[0, 1\), got 1.5$"),
        ("eps", -1.0, r"^config.adam.eps must be finite and > 0, got -1.0$"),
    ],
)
def test_bad_adam_settings_are_one_line_errors_before_any_work(
    small_config, tmp_path, field, value, message
):
    small_config.optimizer = "adam"
    small_config.adam[field] = value
    with pytest.raises(ValueError, match=message) as error:
        training.train_and_evaluate(small_config, str(tmp_path / "run"))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("decay_factor", 0.5, r"^config.autol2.decay_factor must be finite and > 1, got 0.5"),
        ("patience", 0, r"^config.autol2.patience must be an integer in \[1, 2147483647\], got 0"),
        ("min_l2", 1.0, r"^config.autol2.min_l2 must be ≤ l2_init = 0.01"),
        ("decay", 10.0, r"^config.autol2 must have exactly the fields of .*: unknown config"),
    ],
)
def test_bad_autol2_settings_are_one_line_errors_naming_the_field(
    small_config, tmp_path, field, value, message
):
    small_config.update(l2_mode="autol2", l2=0.01)
    small_config.autol2[field] = value
    with pytest.raises(ValueError, match=message) as error:
        training.train_and_evaluate(small_config, str(tmp_path / "run"))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_unprepared_tfds_data_set_is_a_one_line_error_before_any_work(small_config, tmp_path):
    small_config.dataset = "cifar10"
    small_config.data_dir = str(tmp_path / "no_data_here")
    workdir = tmp_path / "run"
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        training.train_and_evaluate(small_config, str(workdir))
    assert "cifar10" in str(error.value) and "\n" not in str(error.value)
    assert not workdir.exists()


@pytest.mark.parametrize(
    ("optimizer", "l2_mode", "l2_placement"),
    [("sgd", "none", "coupled"), ("adam", "fixed", "decoupled"), ("momentum", "autol2", "coupled")],
)
def test_optimizers_and_l2_modes_train(small_config, tmp_path, optimizer, l2_mode, l2_placement):
    small_config.update(optimizer=optimizer, l2_mode=l2_mode, l2_placement=l2_placement, l2=1e-2)
    small_config.lr_schedule = "cosine"
    # Checks every step and no cooldown: λ decays at the first two steps without a new record.
    small_config.autol2.update(check_every=1, cooldown=0.0)
    lines = run(small_config, tmp_path)
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert lines[-1]["lr"] < lines[0]["lr"]  # cosine decay
    expected_l2 = {"none": 0.0, "fixed": np.float32(1e-2)}
    if l2_mode in expected_l2:
        assert all(line["l2"] == expected_l2[l2_mode] for line in lines)
    else:
        assert lines[-1]["l2"] < np.float32(1e-2)  # AutoL2 decayed λ


@pytest.mark.parametrize(
    ("steps", "boundaries", "at"),
    [
        (3, (0.3, 0.6, 0.9), "[1, 2, 3]"),  # the last would never be reached
        (100, (0.3, 0.304), "[30, 30]"),  # two boundaries on one step
        (100, (0.004, 0.5), "[0, 50]"),  # before the first step
    ],
)
def test_step_schedule_boundaries_off_distinct_steps_are_one_line_errors(
    small_config, tmp_path, steps, boundaries, at
):
    small_config.update(lr_schedule="step", steps=steps, lr_step_boundaries=boundaries)
    message = (
        rf"^config.lr_step_boundaries must fall on distinct steps in \[1, {steps - 1}\] of "
        rf"config.steps={steps}, got {re.escape(repr(boundaries))} .*gives {re.escape(at)}"
    )
    with pytest.raises(ValueError, match=message) as error:
        training.train_and_evaluate(small_config, str(tmp_path / "run"))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_eval_batch_larger_than_the_test_set_is_capped(small_config):
    small_config.eval_batch_size = 40_000
    capped = training.create_trainer(small_config)
    sizes = []

    def recording(state, images, *arrays):
        sizes.append(len(images))
        return capped._eval_sums(state, images, *arrays)

    state = capped.init_state()
    test = dataclasses.replace(capped, _eval_sums=recording).evaluate(state)
    assert sizes == [300]  # 297 test examples, rounded up to a multiple of the 4 devices
    small_config.eval_batch_size = 300
    assert training.create_trainer(small_config).evaluate(state) == test


def test_step_schedule_multiplies_lr_at_the_boundaries(small_config):
    small_config.update(lr_schedule="step", steps=100, lr=1.0)
    training.validate(small_config, 4)
    schedule = recipe.create_lr_schedule(small_config, recipe.Hyperparameters.of(small_config))
    np.testing.assert_allclose(
        [schedule(step) for step in (0, 29, 30, 59, 60, 90, 99)],
        [1.0, 1.0, 0.2, 0.2, 0.04, 0.008, 0.008],
        rtol=1e-6,
    )


def test_streamed_data_set_trains_and_evaluates_like_the_in_memory_one(small_config):
    digits = data.load("digits")
    asked_to_augment = []

    def stream(split, batch_size, seed, start_step, augment):
        asked_to_augment.append(augment)
        if split == "train":
            yield from digits.batches(
                "train", batch_size=batch_size, seed=seed, start_step=start_step
            )
        else:  # one pass, the last batch partial
            for start in range(0, len(digits.test), batch_size):
                stop = start + batch_size
                yield data.Split(digits.test.images[start:stop], digits.test.labels[start:stop])

    streamed = dataclasses.replace(digits, train=None, test=None, stream=stream)
    small_config.eval_batch_size = 128  # 297 test examples: a partial last batch of 41
    results = []
    for dataset in (digits, streamed):
        trainer = training.create_trainer(small_config, dataset=dataset)
        state, batches = trainer.init_state(), trainer.train_batches(0)
        for _ in range(small_config.steps):
            state = trainer.sharded_train_step(state, *next(batches))
        results.append((jax.device_get(trainer.summarize(state)), trainer.evaluate(state)))
    assert results[0] == results[1]
    # The stream decodes its training images with the augmentation the config asks for.
    assert not small_config.augment and asked_to_augment[0] is False
    logits = trainer.model.apply(
        {"params": state.params}, digits.preprocess(digits.test.images), train=False
    )
    accuracy = np.mean(np.argmax(np.asarray(logits), -1) == digits.test.labels)
    np.testing.assert_allclose(results[1][1]["test_accuracy"], accuracy, rtol=1e-12)


def test_evaluation_uses_the_running_batch_norm_statistics(small_config):
    small_config.model_options.normalization = "batch"
    small_config.eval_batch_size = 128  # 297 test examples: a partial last batch of 41
    trainer = training.create_trainer(small_config)
    state, batches = trainer.init_state(), trainer.train_batches(0)
    for _ in range(10):
        state = trainer.sharded_train_step(state, *next(batches))
    assert jax.tree.leaves(state.batch_stats)
    test = trainer.dataset.test
    logits = trainer.model.apply(
        {"params": state.params, "batch_stats": state.batch_stats},
        trainer.dataset.preprocess(test.images),
        train=False,
    )
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, test.labels)
    accuracy = np.mean(np.argmax(np.asarray(logits), -1) == test.labels)
    result = trainer.evaluate(state)
    np.testing.assert_allclose(result["test_loss"], np.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(result["test_accuracy"], accuracy, rtol=1e-12)


def _fake_cifar(num_train: int, num_test: int) -> data.Dataset:
    rng = np.random.default_rng(0)
    splits = [
        data.Split(
            rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.int32),
        )
        for n in (num_train, num_test)
    ]
    mean, std = data.channel_stats(splits[0].images)
    return data.Dataset(
        "fake_cifar10", 10, (32, 32, 3), *splits, mean, std, augmentation=data.Augmentation()
    )


@pytest.mark.slow
def test_wide_resnet_config_runs_a_few_steps_in_bfloat16(tmp_path):
    config = wrn28_10_cifar10.get_config()
    config.update(model="wrn10_1", dtype="bfloat16", batch_size=8, eval_batch_size=8, steps=3)
    config.lr_step_boundaries = (0.5,)  # η steps down once, after step 2
    trainer = training.create_trainer(config, dataset=_fake_cifar(64, 8))
    state, batches = trainer.init_state(), trainer.train_batches(0)
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    initial_stats = jax.device_get(state.batch_stats)
    for _ in range(config.steps):
        state = trainer.sharded_train_step(state, *next(batches))
    summary = jax.device_get(trainer.summarize(state))
    assert np.isfinite(summary["train_loss"]) and summary["nonfinite_step"] == -1
    assert {leaf.dtype for leaf in jax.tree.leaves(state.opt_state)} <= {
        jnp.dtype(jnp.float32),
        jnp.dtype(jnp.int32),
    }
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), initial_stats, state.batch_stats)
    assert all(jax.tree.leaves(moved))
    assert np.isfinite(trainer.evaluate(state)["test_loss"])


@pytest.mark.slow
def test_wide_resnet_step_lowers_to_nhwc_bfloat16_convolutions_on_donated_float32_state():
    config = wrn28_10_cifar10.get_config()
    config.update(model="wrn10_1", dtype="bfloat16", batch_size=8, l2_mode="autol2", l2=0.2)
    trainer = training.create_trainer(config, dataset=_fake_cifar(64, 8))
    state = trainer.init_state()
    text = trainer.sharded_train_step.lower(state, *next(trainer.train_batches(0))).as_text()

    # Every state leaf is an argument the step may overwrite in place, and the parameters and
    # optimizer state stay float32 (the master weights).
    assert text.count("jax.buffer_donor = true") == len(jax.tree.leaves(state))
    float_leaves = jax.tree.leaves((state.params, state.opt_state, state.batch_stats))
    assert {leaf.dtype for leaf in float_leaves if leaf.ndim} == {jnp.dtype(jnp.float32)}
    # The 9 convolutions of wrn10_1 (stem, 3 blocks of 2, 2 projection shortcuts) run forward on
    # NHWC activations and HWIO kernels; backward, 9 kernel gradients and 8 input gradients (none
    # for the stem's input). Every one takes and gives bfloat16.
    convolutions = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    layouts = [re.search(r"dim_numbers = (.*?), window", line).group(1) for line in convolutions]
    assert sorted(layouts) == sorted(
        ["[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]"] * 9
        + ["[f, 0, 1, b]x[i, 0, 1, o]->[0, 1, b, f]"] * 9
        + ["[b, 0, 1, f]x[0, 1, o, i]->[b, 0, 1, f]"] * 8
    )
    for line in convolutions:
        types = re.findall(r"tensor<[^>]*>", line.split(" : ")[-1])
        assert len(types) == 3 and all(t.endswith("xbf16>") for t in types), line
    # Every forward convolution, the strided ones included, pads both sides alike, which cuDNN
    # does itself; a one-sided pad would cost a GPU a separate copy of the input.
    forward = [line for line in convolutions if "x[0, 1, i, o]->" in line]
    pads = [re.search(r"pad = \[\[(\d+), (\d+)\], \[(\d+), (\d+)\]\]", line) for line in forward]
    assert {len(set(pad.groups())) for pad in pads} == {1}, forward
    assert "stride = [2, 2]" in "".join(forward)
    # Nothing in the step calls back to the host.
    assert "custom_call" not in text


def test_a_model_too_large_for_memory_is_refused_before_anything_is_written(small_config, tmp_path):
    # 10⁷ × 10⁷ weights: shapes alone tell, nothing is allocated and no workdir is left.
    small_config.model_options.widths = (10_000_000, 10_000_000)
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^config.model and config.model_options must") as error:
        training.train_and_evaluate(small_config, str(workdir))
    assert "\n" not in str(error.value) and "GiB" in str(error.value)
    assert not workdir.exists()
