"""Data-parallel training of a classifier with L2 regularization, as configured by a ConfigDict.

Layout as in the flax examples: `train_step` and `eval_step` are pure per-device functions,
`create_trainer` builds their sharded, jitted versions from a config without running anything
(a benchmark can time the trainer's own step), and `train_and_evaluate(config, workdir)` runs
the loop with checkpoints and logs, the only place that does I/O.

Data parallelism uses the pmap programming model implemented with `jax.shard_map` over a 1-D
`data` mesh of all devices (of all hosts once `jax.distributed` is initialized): each device
takes its slice of the global batch, gradients are averaged with `pmean`, and batch-norm
statistics are averaged over the axis through the model's `axis_name`, so the trajectory does
not depend on the number of devices beyond float rounding.

L2 enters only through the `l2reg.add_l2` / `l2reg.autol2` transforms, placed before the
optimizer's preconditioner (coupled: the paper's L2 added to the loss) or after it (decoupled
weight decay, as in AdamW).
"""

import contextlib
import dataclasses
import functools
import inspect
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorboardX
import tqdm
from absl import logging
from flax import struct
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import l2reg
from l2reg import checks, files, models
from l2reg import data as l2reg_data
from l2reg.checkpointing import Checkpoints

AXIS = "data"
OPTIMIZERS = ("sgd", "momentum", "adam")
LR_SCHEDULES = ("constant", "cosine", "step")
L2_MODES = ("none", "fixed", "autol2")
# The settings of `config.autol2`, passed to `l2reg.autol2` as keywords: those its check takes.
AUTOL2_FIELDS = tuple(
    name
    for name, parameter in inspect.signature(l2reg.transforms.validate_autol2).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)
L2_PLACEMENTS = ("coupled", "decoupled")
LOSSES = ("cross_entropy", "mse")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
# Fields of a metrics line that measure the machine rather than the run.
TIMING_FIELDS = ("steps_per_sec",)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# Configuration.


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raises a one-line ValueError naming the first bad value of `config`, before any work (a
    TypeError for a model option of the wrong type)."""

    def require(ok: bool, name: str, allowed: str) -> None:
        # `name` may be dotted ('adam.b1') for a nested field.
        if not ok:
            value = functools.reduce(lambda node, key: node[key], name.split("."), config)
            raise ValueError(f"config.{name}={value!r} is invalid: must be {allowed}")

    def is_number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    require(config.l2_mode in L2_MODES, "l2_mode", f"one of {L2_MODES}")
    require(config.l2_placement in L2_PLACEMENTS, "l2_placement", f"one of {L2_PLACEMENTS}")
    require(config.optimizer in OPTIMIZERS, "optimizer", f"one of {OPTIMIZERS}")
    require(config.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {LR_SCHEDULES}")
    require(config.loss in LOSSES, "loss", f"one of {LOSSES}")
    require(config.dtype in DTYPES, "dtype", f"one of {tuple(DTYPES)}")
    require(is_number(config.l2) and math.isfinite(config.l2) and config.l2 >= 0, "l2", ">= 0")
    require(is_number(config.lr) and math.isfinite(config.lr) and config.lr > 0, "lr", "> 0")
    require(is_number(config.momentum) and 0 <= config.momentum < 1, "momentum", "in [0, 1)")
    require(
        is_number(config.mixup_alpha)
        and math.isfinite(config.mixup_alpha)
        and config.mixup_alpha >= 0,
        "mixup_alpha",
        ">= 0 (0 turns mixup off)",
    )
    for name in ("steps", "batch_size", "eval_batch_size", "eval_every", "checkpoint_every"):
        require(
            checks.is_integer(config[name]) and 0 < config[name] <= checks.INT32_MAX,
            name,
            f"an integer in [1, {checks.INT32_MAX}]",
        )
    require(
        checks.is_integer(config.keep_checkpoints) and config.keep_checkpoints >= 1,
        "keep_checkpoints",
        "an integer >= 1",
    )
    require(
        checks.is_integer(config.seed) and checks.INT32_MIN <= config.seed <= checks.INT32_MAX,
        "seed",
        f"an integer in [{checks.INT32_MIN}, {checks.INT32_MAX}]",
    )
    for name in ("batch_size", "eval_batch_size"):
        require(
            config[name] % num_devices == 0, name, f"divisible by the device count {num_devices}"
        )
    boundaries = tuple(config.lr_step_boundaries)
    require(
        all(0 < b < 1 for b in boundaries) and list(boundaries) == sorted(set(boundaries)),
        "lr_step_boundaries",
        "increasing fractions of the run in (0, 1)",
    )
    if config.lr_schedule == "step":
        # Boundaries that round to one step would merge; one at `steps` would never be reached.
        at = _lr_boundary_steps(config)
        require(
            len(set(at)) == len(at) and all(1 <= step < config.steps for step in at),
            "lr_step_boundaries",
            f"fractions that fall on distinct steps in [1, {config.steps - 1}] of "
            f"config.steps={config.steps} (round(fraction·steps) gives {at})",
        )
    require(
        is_number(config.lr_step_factor)
        and math.isfinite(config.lr_step_factor)
        and config.lr_step_factor > 0,
        "lr_step_factor",
        "finite and > 0",
    )
    if config.optimizer == "adam":
        for name in ("b1", "b2"):
            require(
                is_number(config.adam[name]) and 0 <= config.adam[name] < 1,
                f"adam.{name}",
                "in [0, 1)",
            )
        eps = config.adam.eps
        require(is_number(eps) and math.isfinite(eps) and eps > 0, "adam.eps", "finite and > 0")
    if config.l2_mode == "autol2":
        fields = config.autol2.to_dict()
        unknown = sorted(set(fields) - set(AUTOL2_FIELDS))
        missing = [name for name in AUTOL2_FIELDS if name not in fields]
        if unknown or missing:
            raise ValueError(
                f"config.autol2 must hold exactly {', '.join(AUTOL2_FIELDS)}; "
                f"unknown: {unknown}, missing: {missing}"
            )
        try:
            l2reg.transforms.validate_autol2(config.l2, config.lr, **fields)
        except ValueError as error:  # it names the field: say where it lives in the config
            raise ValueError(f"config.autol2.{error}") from None
    # The model's name and options, before the data set that gives its number of classes is
    # loaded: building the (unbound) module checks them and allocates nothing.
    models.create(
        config.model,
        num_classes=1,
        dtype=DTYPES[config.dtype],
        axis_name=AXIS,
        **_model_options(config),
    )


def _lr_boundary_steps(config: ml_collections.ConfigDict) -> list[int]:
    # The steps at which the 'step' schedule multiplies η: each fraction of `steps`, rounded.
    return [round(fraction * config.steps) for fraction in config.lr_step_boundaries]


def create_lr_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """η as a function of the step: constant, cosine decay to 0 over `steps`, or step decay
    multiplying η by `lr_step_factor` at each fraction `lr_step_boundaries` of the run."""
    if config.lr_schedule == "constant":
        return optax.constant_schedule(config.lr)
    if config.lr_schedule == "cosine":
        return optax.cosine_decay_schedule(config.lr, config.steps)
    boundaries = {step: config.lr_step_factor for step in _lr_boundary_steps(config)}
    return optax.piecewise_constant_schedule(config.lr, boundaries)


def create_optimizer(
    config: ml_collections.ConfigDict, lr_schedule: optax.Schedule
) -> optax.GradientTransformationExtraArgs:
    """The optimizer of `config`: preconditioner, L2 transform and learning rate, chained.

    Coupled placement puts the L2 step before the preconditioner (λθ joins the gradient, as the
    paper's L2 in the loss); decoupled puts it after (weight decay λη per step, as in AdamW).
    AutoL2's cooldown is measured in 1/(λη), with the effective η/(1−μ) when coupled L2 goes
    through momentum μ (decoupled decay is applied once, at η).
    """
    if config.optimizer == "sgd":
        preconditioner = optax.identity()
    elif config.optimizer == "momentum":
        preconditioner = optax.trace(decay=config.momentum)
    else:
        preconditioner = optax.scale_by_adam(
            b1=config.adam.b1, b2=config.adam.b2, eps=config.adam.eps
        )

    if config.l2_mode == "none":
        l2_step = []
    elif config.l2_mode == "fixed":
        l2_step = [l2reg.add_l2(config.l2)]
    else:
        through_momentum = config.optimizer == "momentum" and config.l2_placement == "coupled"
        momentum = config.momentum if through_momentum else 0.0
        effective_lr = lambda step: lr_schedule(step) / (1.0 - momentum)
        l2_step = [l2reg.autol2(config.l2, effective_lr, **config.autol2)]

    if config.l2_placement == "coupled":
        steps = [*l2_step, preconditioner]
    else:
        steps = [preconditioner, *l2_step]
    return optax.chain(*steps, optax.scale_by_learning_rate(lr_schedule))


def _model_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    # Command-line overrides cannot set a config field to None; the string 'none' stands for it.
    return {
        key: None if isinstance(value, str) and value.lower() == "none" else value
        for key, value in config.model_options.to_dict().items()
    }


# ---------------------------------------------------------------------------------------------
# Pure per-device steps.


class TrainMetrics(struct.PyTreeNode):
    """Running sums over the steps since the last report, and the first non-finite step.

    Attributes:
      loss_sum: sum of the per-step mean training losses (without L2), float32 scalar.
      accuracy_sum: sum of the per-step training accuracies (fractions), float32 scalar.
      count: number of steps summed, int32 scalar.
      nonfinite_step: the first step (counted from 1) whose loss was NaN or ±inf, -1 if none.
    """

    loss_sum: jax.Array
    accuracy_sum: jax.Array
    count: jax.Array
    nonfinite_step: jax.Array

    @classmethod
    def zeros(cls) -> "TrainMetrics":
        return cls(jnp.float32(0), jnp.float32(0), jnp.int32(0), jnp.int32(-1))


class TrainState(struct.PyTreeNode):
    """Everything a run needs to continue: the step count, parameters, batch-norm statistics
    (an empty dict without batch norm), optimizer state (λ of AutoL2 included) and the running
    training metrics. Saved whole in every checkpoint."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: optax.OptState
    metrics: TrainMetrics
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformationExtraArgs = struct.field(pytree_node=False)


def classification_loss(logits: jax.Array, labels: jax.Array, loss: str) -> jax.Array:
    """Per-example loss, shape (batch,), of float32 `logits` (batch, classes) against int labels.

    'cross_entropy' is the softmax cross-entropy; 'mse' is ½·Σ_classes (logits − one_hot)².
    """
    if loss == "cross_entropy":
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return 0.5 * jnp.sum(jnp.square(logits - one_hot), axis=-1)


def _variables(params: Any, batch_stats: Any) -> dict[str, Any]:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def train_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    mix: tuple[jax.Array, jax.Array] | None = None,
    *,
    loss: str,
    report_every: int,
) -> TrainState:
    """One optimizer step on this device's slice of the batch; runs inside shard_map over AXIS.

    Args:
      state: the replicated training state.
      images: float inputs, (batch / devices, *input_shape), already preprocessed (and mixed,
        with `mix`).
      labels: int labels, (batch / devices,).
      mix: with mixup, `(partner_labels, weight)` from `l2reg.data.mixup`: the loss and the
        accuracy are then weight · (those of `labels`) + (1 − weight) · (those of the partners).
      loss: 'cross_entropy' or 'mse'.
      report_every: the running training metrics restart at steps that are multiples of it.

    Returns:
      The state after one step, identical on every device.
    """

    def mean_over(per_example: Callable[[jax.Array], jax.Array]) -> jax.Array:
        # per_example(labels) averaged over the batch, mixed with the partners' under mixup.
        if mix is None:
            return per_example(labels).mean()
        partner_labels, weight = mix
        return (
            weight * per_example(labels).mean() + (1 - weight) * per_example(partner_labels).mean()
        )

    def objective(params):
        variables = _variables(params, state.batch_stats)
        if state.batch_stats:
            logits, updates = state.apply_fn(variables, images, train=True, mutable=["batch_stats"])
        else:
            logits, updates = state.apply_fn(variables, images, train=True), {}
        mean_loss = mean_over(lambda target: classification_loss(logits, target, loss))
        return mean_loss, (logits, updates)

    # Gradients of this device's loss alone, then averaged explicitly with pmean (the pmap
    # model). Without the cast, shard_map differentiates the replicated parameters through an
    # implicit broadcast whose transpose sums the per-device gradients.
    local_params = jax.lax.pcast(state.params, AXIS, to="varying")
    (batch_loss, (logits, updates)), grads = jax.value_and_grad(objective, has_aux=True)(
        local_params
    )
    grads = jax.lax.pmean(grads, AXIS)
    batch_loss = jax.lax.pmean(batch_loss, AXIS)
    predictions = jnp.argmax(logits, -1)
    accuracy = jax.lax.pmean(mean_over(lambda target: predictions == target), AXIS)

    updates_tx, opt_state = state.tx.update(
        grads, state.opt_state, state.params, value=batch_loss, accuracy=accuracy
    )
    restart = state.step % report_every == 0
    metrics = state.metrics
    first_nonfinite = (metrics.nonfinite_step < 0) & ~jnp.isfinite(batch_loss)
    metrics = TrainMetrics(
        loss_sum=jnp.where(restart, 0.0, metrics.loss_sum) + batch_loss,
        accuracy_sum=jnp.where(restart, 0.0, metrics.accuracy_sum) + accuracy,
        count=jnp.where(restart, 0, metrics.count) + 1,
        nonfinite_step=jnp.where(first_nonfinite, state.step + 1, metrics.nonfinite_step),
    )
    return state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates_tx),
        batch_stats=updates.get("batch_stats", state.batch_stats),
        opt_state=opt_state,
        metrics=metrics,
    )


def eval_step(
    state: TrainState, images: jax.Array, labels: jax.Array, weights: jax.Array, *, loss: str
) -> jax.Array:
    """Summed loss and number of correct predictions over this device's slice, all devices
    summed; `weights` (0 or 1, per example) mask out the padding of the last batch.

    Returns:
      float32 (2,): [Σ weight·loss, Σ weight·correct].
    """
    logits = state.apply_fn(_variables(state.params, state.batch_stats), images, train=False)
    per_example = classification_loss(logits, labels, loss)
    correct = jnp.argmax(logits, -1) == labels
    sums = jnp.stack([jnp.sum(weights * per_example), jnp.sum(weights * correct)])
    return jax.lax.psum(sums, AXIS)


def train_summary(state: TrainState, lr_schedule: optax.Schedule, l2_mode: str) -> dict:
    """Scalars of the state for a metrics line: training means since the last report, λ in
    force, η of the last step, the parameters' L2 norm and the first non-finite step."""
    return {
        "train_loss": state.metrics.loss_sum / state.metrics.count,
        "train_accuracy": state.metrics.accuracy_sum / state.metrics.count,
        "l2": jnp.float32(0) if l2_mode == "none" else l2reg.current_l2(state.opt_state),
        "lr": lr_schedule(state.step - 1),
        "weight_norm": optax.tree.norm(state.params),
        "nonfinite_step": state.metrics.nonfinite_step,
    }


# ---------------------------------------------------------------------------------------------
# The trainer: sharded, jitted steps built from a config.


@dataclasses.dataclass(frozen=True)
class Trainer:
    """A run's parts, built from a config by `create_trainer`; nothing has run yet.

    `train_step(state, images, labels)` is jitted, donates `state` and includes the data set's
    preprocessing (and on device: augmentation when `config.augment`, mixup when
    `config.mixup_alpha` > 0); `train_batches(step)` gives its global batches from a step on,
    sharded over the mesh. `eval_batch_size` is `config.eval_batch_size` capped, for a test set
    held in memory, at its size rounded up to a multiple of the device count: a larger batch
    would only add padding, and the results do not depend on it.
    """

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    dataset: Any
    model: Any
    lr_schedule: optax.Schedule
    init_state: Callable[[], TrainState]
    train_step: Callable[[TrainState, jax.Array, jax.Array], TrainState]
    summarize: Callable[[TrainState], dict]
    eval_batch_size: int
    _eval_sums: Callable[..., jax.Array]

    def _shard(self, *arrays: np.ndarray) -> list[jax.Array]:
        # Every host holds the whole global batch (given with the global shape, each device
        # takes its own rows, wherever its host's devices sit in the mesh).
        sharding = NamedSharding(self.mesh, P(AXIS))
        return [
            jax.make_array_from_process_local_data(sharding, array, array.shape) for array in arrays
        ]

    def train_batches(self, start_step: int) -> Iterator[list[jax.Array]]:
        """`[images, labels]` of the global training batches from `start_step` on, sharded over
        the mesh; batch `step` is the same whenever the iteration starts."""
        batches = self.dataset.batches(
            "train",
            batch_size=self.config.batch_size,
            seed=self.config.seed,
            start_step=start_step,
            augment=self.config.augment,
        )
        # The batch order is computed with JAX; on the host's CPU, reading it never waits for
        # the accelerator's queue of training steps.
        try:
            host = jax.local_devices(backend="cpu")[0]
        except RuntimeError:  # JAX_PLATFORMS leaves the CPU out: use the default device
            host = None
        while True:
            with jax.default_device(host):
                batch = next(batches)
            yield self._shard(batch.images, batch.labels)

    def _test_batches(self) -> Iterator[Any]:
        batch_size = self.eval_batch_size
        if self.dataset.test is None:  # streamed: one pass, the last batch partial
            yield from self.dataset.batches("test", batch_size=batch_size, seed=self.config.seed)
            return
        test = self.dataset.test
        for start in range(0, len(test), batch_size):
            stop = start + batch_size
            yield l2reg_data.Split(test.images[start:stop], test.labels[start:stop])

    def evaluate(self, state: TrainState) -> dict[str, float]:
        """Mean loss and accuracy on the whole test split."""
        return _test_means(*self.evaluation_sums(state))

    def evaluation_sums(self, state: TrainState) -> tuple[jax.Array, int]:
        """`[summed loss, correct count]` over the test split, a device array dispatched without
        waiting for it, and the number of test examples."""
        batch_size = self.eval_batch_size
        sums, count = jnp.zeros(2, jnp.float32), 0
        for batch in self._test_batches():
            # A short last batch is padded to the compiled size and masked out by zero weights.
            size = len(batch.labels)
            padding = [(0, batch_size - size)]
            images = np.pad(batch.images, padding + [(0, 0)] * (batch.images.ndim - 1))
            weights = (np.arange(batch_size) < size).astype(np.float32)
            sums = sums + self._eval_sums(
                state, *self._shard(images, np.pad(batch.labels, padding), weights)
            )
            count += size
        return sums, count


def _test_means(sums: jax.Array, count: int) -> dict[str, float]:
    loss_sum, correct = np.asarray(sums, np.float64)  # waits for the evaluation
    return {"test_loss": float(loss_sum / count), "test_accuracy": float(correct / count)}


def create_trainer(
    config: ml_collections.ConfigDict,
    *,
    devices: list[jax.Device] | None = None,
    dataset: Any = None,
) -> Trainer:
    """Validates `config` and builds the model, data, optimizer and compiled steps of a run.

    Every bad input raises a one-line ValueError here, before any training or file I/O.

    Args:
      config: a config like those in experiments/configs.
      devices: the devices of the 1-D data mesh; all devices of all hosts by default.
      dataset: an already loaded `l2reg.data.Dataset` to use instead of `config.dataset`.
    """
    devices = jax.devices() if devices is None else list(devices)
    validate_config(config, len(devices))
    if dataset is None:
        dataset = l2reg_data.load(
            config.dataset, data_dir=config.data_dir, **config.data_options.to_dict()
        )
    if config.augment and dataset.augmentation is None and dataset.stream is None:
        raise ValueError(
            f"config.augment=True, but data set {dataset.name!r} has no standard augmentation "
            "to apply: set config.augment=False"
        )
    if dataset.train is not None and config.batch_size > len(dataset.train):
        raise ValueError(
            f"config.batch_size={config.batch_size} exceeds the {len(dataset.train)} training "
            f"examples of {dataset.name!r}"
        )
    model = models.create(
        config.model,
        num_classes=dataset.num_classes,
        dtype=DTYPES[config.dtype],
        axis_name=AXIS,
        **_model_options(config),
    )
    lr_schedule = create_lr_schedule(config)
    tx = create_optimizer(config, lr_schedule)
    eval_batch_size = config.eval_batch_size
    if dataset.test is not None:
        padded_test_size = -(-len(dataset.test) // len(devices)) * len(devices)
        eval_batch_size = min(eval_batch_size, padded_test_size)
    mesh = jax.sharding.Mesh(np.array(devices), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    replicated = NamedSharding(mesh, P())
    root_key = jax.random.key(config.seed)
    init_key, augment_key = jax.random.split(root_key)
    mixup_key = jax.random.fold_in(root_key, 1)  # its own stream; leaves the other two as they are

    @functools.partial(jax.jit, out_shardings=replicated)
    def init_state() -> TrainState:
        # lazy_init traces the forward pass for shapes only; it gives the same variables as
        # init while compiling much less (only the initializers).
        example = jax.ShapeDtypeStruct((1, *dataset.input_shape), jnp.float32)
        variables = model.lazy_init(init_key, example, train=False)
        params = variables["params"]
        return TrainState(
            step=jnp.int32(0),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
            metrics=TrainMetrics.zeros(),
            apply_fn=model.apply,
            tx=tx,
        )

    mixing = config.mixup_alpha > 0
    per_device_train = jax.shard_map(
        functools.partial(train_step, loss=config.loss, report_every=config.eval_every),
        mesh=mesh,
        in_specs=(P(), P(AXIS), P(AXIS), *([(P(AXIS), P())] if mixing else [])),
        out_specs=P(),
    )

    @functools.partial(jax.jit, donate_argnums=0)
    def sharded_train_step(state: TrainState, images: jax.Array, labels: jax.Array):
        # Augmenting and mixing the global batch (not per device) keeps the random crops, flips
        # and mixup pairs the same whatever the device count.
        key = jax.random.fold_in(augment_key, state.step) if config.augment else None
        images = dataset.preprocess(images, key=key)
        if not mixing:
            return per_device_train(state, images, labels)
        step_key = jax.random.fold_in(mixup_key, state.step)
        images, partner_labels, weight = l2reg_data.mixup(
            step_key, images, labels, config.mixup_alpha
        )
        return per_device_train(state, images, labels, (partner_labels, weight))

    per_device_eval = jax.shard_map(
        functools.partial(eval_step, loss=config.loss),
        mesh=mesh,
        in_specs=(P(), P(AXIS), P(AXIS), P(AXIS)),
        out_specs=P(),
    )

    @jax.jit
    def eval_sums(state, images, labels, weights):
        return per_device_eval(state, dataset.preprocess(images), labels, weights)

    return Trainer(
        config=config,
        mesh=mesh,
        dataset=dataset,
        model=model,
        lr_schedule=lr_schedule,
        init_state=init_state,
        train_step=sharded_train_step,
        summarize=jax.jit(
            functools.partial(train_summary, lr_schedule=lr_schedule, l2_mode=config.l2_mode)
        ),
        eval_batch_size=eval_batch_size,
        _eval_sums=eval_sums,
    )


# ---------------------------------------------------------------------------------------------
# I/O at the edges: the work directory, metrics, signals, the loop.


def _config_json(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            difference
            for key in sorted(set(old) | set(new))
            for difference in _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def check_workdir(workdir: str, config: ml_collections.ConfigDict, *, overwrite: bool) -> list[str]:
    """Checks, changing nothing, that `workdir` is a writable folder (or can be made one) that
    is empty or holds a run of the same config (any run, with `overwrite`).

    Returns:
      The names of the run files (config, metrics, checkpoints, events) in `workdir`.

    Raises:
      ValueError: `workdir` is not a writable folder, or holds a run with a different config
        (or an unrecorded or unreadable one) and `overwrite` is False.
    """
    files.check_folder(workdir)
    ours = [CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR, CHECKPOINT_DIR + ".corrupt", TENSORBOARD_DIR]
    present = [name for name in ours if os.path.exists(os.path.join(workdir, name))]
    if present and not overwrite:
        config_path = os.path.join(workdir, CONFIG_FILE)
        if not os.path.exists(config_path):
            raise ValueError(
                f"workdir {workdir!r} holds {present} but no {CONFIG_FILE}: "
                "pass --overwrite to discard them, or choose another workdir"
            )
        with open(config_path, encoding="utf-8") as file:
            try:
                recorded = json.load(file)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{config_path!r} is not valid JSON ({error}): pass --overwrite to discard "
                    "the run, or choose another workdir"
                ) from None
        changes = _differences(recorded, _config_json(config))
        if changes:
            raise ValueError(
                f"workdir {workdir!r} holds a run with a different config "
                f"({'; '.join(changes)}): pass --overwrite to discard it, or choose another workdir"
            )
    return present


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict, *, overwrite: bool) -> None:
    """Checks `workdir` with `check_workdir`, then records `config` in it.

    With `overwrite`, a previous run's files (config, metrics, checkpoints, events) are removed.

    Raises:
      ValueError: as `check_workdir`; nothing is changed then.
    """
    _record_config(workdir, config, check_workdir(workdir, config, overwrite=overwrite), overwrite)


def _record_config(
    workdir: str, config: ml_collections.ConfigDict, present: list[str], overwrite: bool
) -> None:
    # `prepare_workdir` once `check_workdir` has passed and listed the run files `present`.
    if jax.process_index() == 0:
        if overwrite:
            for name in present:
                path = os.path.join(workdir, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        os.makedirs(workdir, exist_ok=True)
        current = json.dumps(_config_json(config), indent=2) + "\n"
        files.write_atomic(os.path.join(workdir, CONFIG_FILE), current)
    if jax.process_count() > 1:  # the other processes use the workdir once it is ready
        multihost_utils.sync_global_devices("l2reg.train.prepare_workdir")


class MetricsLog:
    """`metrics.jsonl` (one JSON object per report) and TensorBoard events in `workdir`.

    Starting at `start_step` (0 included) drops the lines of later steps and hides the events
    of later steps from TensorBoard (a purge marker at step `start_step + 1`): those of a run
    that was killed before its next checkpoint, so that the run reads as one uninterrupted run.
    Each line is written whole with one write, then flushed and fsynced.
    """

    def __init__(self, workdir: str, start_step: int):
        self.path = os.path.join(workdir, METRICS_FILE)
        kept = []
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as file:
                for line in file:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by a crash
                        continue
                    if record["step"] <= start_step:
                        kept.append(line if line.endswith("\n") else line + "\n")
        files.write_atomic(self.path, "".join(kept))
        self._file = open(self.path, "a", encoding="utf-8")
        self._events = tensorboardX.SummaryWriter(
            os.path.join(workdir, TENSORBOARD_DIR), purge_step=start_step + 1
        )

    def write(self, record: dict[str, float]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        for name, value in record.items():
            if name != "step":
                self._events.add_scalar(name, value, record["step"])

    def close(self) -> None:
        self._file.close()
        self._events.close()


def read_metrics(workdir: str) -> list[dict[str, float]]:
    """The lines of `workdir/metrics.jsonl`, one dict per report, in step order."""
    with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as file:
        return [json.loads(line) for line in file]


@contextlib.contextmanager
def _sigterm_requests() -> Iterator[threading.Event]:
    """An event set when SIGTERM arrives (preemption), instead of the default exit.

    Under `jax.distributed` with several processes, JAX's preemption service handles SIGTERM
    and agrees on a step across hosts (`Checkpoints.reached_preemption`); no handler then.
    """
    requested = threading.Event()
    if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
        yield requested  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: requested.set())
    try:
        yield requested
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_finite(summary: dict, last_checkpoint: int | None) -> None:
    step = int(summary["nonfinite_step"])
    if step >= 0:
        kept = "none saved" if last_checkpoint is None else f"step {last_checkpoint}"
        raise NonFiniteLossError(
            f"training loss became NaN or infinite at step {step}; stopped, the last good "
            f"checkpoint ({kept}) is kept"
        )


@dataclasses.dataclass(frozen=True)
class _Report:
    """A metrics line's values at `step`, computed on the device and copying to the host."""

    step: int
    summary: dict[str, jax.Array]
    test_sums: jax.Array
    test_count: int


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    overwrite: bool = False,
    devices: list[jax.Device] | None = None,
    dataset: Any = None,
) -> TrainState:
    """Trains and evaluates as `config` says, resuming from the newest checkpoint in `workdir`.

    Writes `workdir/metrics.jsonl` (a line every `eval_every` steps and at the end, fields
    `step, train_loss, train_accuracy, test_loss, test_accuracy, l2, lr, weight_norm,
    steps_per_sec`; train_* are means over the steps since the previous line, l2 is the λ in
    force after the step, steps_per_sec leaves out evaluation), TensorBoard events and orbax
    checkpoints. A line's evaluation and its copies to the host are queued behind its step; the
    line is written while the next step runs (at once at a checkpoint). On SIGTERM, saves a
    checkpoint and returns; rerunning the same command continues bitwise identically.

    `devices` and `dataset` are those of `create_trainer` (a `dataset` given here is not
    recorded in the workdir: a rerun must pass the same one).

    Raises:
      ValueError: a bad config or workdir (before the data are loaded and anything is written),
        or checkpoints that cannot be resumed from (of another state, or none readable; nothing
        is changed then).
      NonFiniteLossError: the training loss became NaN/inf (names the step).
    """
    devices = jax.devices() if devices is None else list(devices)
    validate_config(config, len(devices))
    present = check_workdir(workdir, config, overwrite=overwrite)  # before the data are loaded
    trainer = create_trainer(config, devices=devices, dataset=dataset)
    _record_config(workdir, config, present, overwrite)  # as prepare_workdir, checked above
    checkpoints = Checkpoints(os.path.join(workdir, CHECKPOINT_DIR), keep=config.keep_checkpoints)
    state, last_checkpoint = checkpoints.restore_latest(trainer.init_state())
    start = int(state.step)
    if last_checkpoint is not None:
        logging.info("resuming from the checkpoint of step %d", start)
    is_chief = jax.process_index() == 0
    log = MetricsLog(workdir, start) if is_chief else None
    # Redrawn often on a terminal, every half minute in a log file.
    bar = tqdm.tqdm(
        total=config.steps,
        initial=start,
        disable=not is_chief,
        unit="step",
        mininterval=0.1 if sys.stderr.isatty() else 30.0,
    )

    def save(step: int, state: TrainState, summary: dict | None = None) -> None:
        # `summary`: the state's, when this step's report has already fetched it.
        nonlocal last_checkpoint
        if summary is None:
            summary = jax.device_get(trainer.summarize(state))
        _check_finite(summary, last_checkpoint)
        checkpoints.save(step, state)
        last_checkpoint = step

    def start_report(step: int, state: TrainState) -> _Report:
        summary = trainer.summarize(state)
        test_sums, test_count = trainer.evaluation_sums(state)
        for value in jax.tree.leaves((summary, test_sums)):
            value.copy_to_host_async()
        return _Report(step, summary, test_sums, test_count)

    def finish_report(report: _Report) -> dict:
        # Waits for the report's values, checks and writes them; returns the host summary.
        nonlocal clock, clock_step
        summary = jax.device_get(report.summary)  # waits for the report's step
        steps_per_sec = (report.step - clock_step) / (time.perf_counter() - clock)
        _check_finite(summary, last_checkpoint)
        test = _test_means(report.test_sums, report.test_count)  # waits for the evaluation
        clock, clock_step = time.perf_counter(), report.step  # the throughput leaves it out
        record = {
            "step": report.step,
            "train_loss": float(summary["train_loss"]),
            "train_accuracy": float(summary["train_accuracy"]),
            **test,
            "l2": float(summary["l2"]),
            "lr": float(summary["lr"]),
            "weight_norm": float(summary["weight_norm"]),
            "steps_per_sec": steps_per_sec,
        }
        if log:
            log.write(record)
        bar.set_postfix(
            loss=f"{record['train_loss']:.4f}",
            acc=f"{record['test_accuracy']:.4f}",
            l2=f"{record['l2']:.3g}",
        )
        return summary

    try:
        with _sigterm_requests() as sigterm:
            clock, clock_step = time.perf_counter(), start
            batches = trainer.train_batches(start)
            # A report's evaluation and copies are queued behind its step, and its line is
            # written once the next step is queued: the device runs that step meanwhile.
            pending: _Report | None = None
            for step in range(start + 1, config.steps + 1):
                state = trainer.train_step(state, *next(batches))
                bar.update()
                if pending is not None:
                    finish_report(pending)
                    pending = None
                if step % config.eval_every == 0 or step == config.steps:
                    pending = start_report(step, state)
                checkpoint = step % config.checkpoint_every == 0 or step == config.steps
                stop = sigterm.is_set() or (
                    jax.process_count() > 1 and checkpoints.reached_preemption(step)
                )
                summary = None
                if pending is not None and (checkpoint or stop):  # these wait for the step
                    summary = finish_report(pending)
                    pending = None
                if checkpoint or stop:
                    save(step, state, summary)
                    clock, clock_step = time.perf_counter(), step
                if stop:
                    logging.warning(
                        "preempted (SIGTERM): saved the checkpoint of step %d and stopped; "
                        "rerun the same command to resume",
                        step,
                    )
                    break
    finally:
        bar.close()
        checkpoints.wait()
        checkpoints.close()
        if log:
            log.close()
    return state
