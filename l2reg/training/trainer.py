"""The compiled data-parallel trainer of a config: mesh, shard_map and jit around `steps`.

Data parallelism uses the pmap programming model implemented with `jax.shard_map` over a 1-D
`data` mesh of all devices (of all hosts once `jax.distributed` is initialized): each device
takes its slice of the global batch, gradients are averaged with `pmean`, and batch-norm
statistics are averaged over the axis through the model's `axis_name`, so the trajectory does
not depend on the number of devices beyond float rounding.
"""

import dataclasses
import functools
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from l2reg import data
from l2reg.training import config as config_lib
from l2reg.training import recipe, steps

AXIS = "data"
# XLA's CPU client launches each device's share of a multi-device program from a thread pool
# and admits at most 32 programs per device ahead of the host. A host that runs further ahead
# (a training loop between reports, the evaluation's two small programs per batch) lets a later
# program take a device's last slot before an earlier one whose all-reduce the other devices
# already wait in: no device moves again, and the collective's timeout aborts the process
# ("only 3 of 4 arrived"). With four forced host devices (the tests'), the trainer's step
# queued 5,000 times on one batch did so in 2 of 2 runs, idle machine or not. So on CPU with
# several devices the host waits for its own work every CPU_PROGRAMS_AHEAD steps or evaluation
# batches; accelerators queue programs on streams in order and never wait.
CPU_PROGRAMS_AHEAD = 8


def programs_ahead(devices: list[jax.Device]) -> int | None:
    """How many steps the host may queue before waiting for them (None: no limit)."""
    return CPU_PROGRAMS_AHEAD if len(devices) > 1 and devices[0].platform == "cpu" else None


class Paced:
    """`function` (a jitted step) that waits for its result every `every` calls (never when
    `every` is None); its other attributes (`lower`, …) are the function's."""

    def __init__(self, function: Callable, every: int | None):
        self._function, self._every, self._calls = function, every, itertools.count(1)

    def __call__(self, *args):
        result = self._function(*args)
        if self._every and next(self._calls) % self._every == 0:
            jax.block_until_ready(result)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._function, name)


@dataclasses.dataclass(frozen=True)
class Trainer:
    """A run's compiled parts, built from a config by `create_trainer`; nothing has run yet.

    `sharded_train_step(state, images, labels)` is jitted, donates `state` and includes
    `steps.prepare_batch` (preprocessing, and on device augmentation and mixup as the config
    says); `train_batches(step)` gives its global batches from a step on, sharded over the
    mesh. `eval_batch_size` is `config.eval_batch_size` capped, for evaluated splits held in
    memory (test, and validation if the data set has one), at the larger one's size rounded up
    to a multiple of the device count: a larger batch would only add padding, and the results
    do not depend on it.
    """

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    dataset: data.Dataset
    model: Any
    init_state: Callable[[], steps.RunState]
    sharded_train_step: Callable[[steps.RunState, jax.Array, jax.Array], steps.RunState]
    summarize: Callable[[steps.RunState], dict]
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

    @property
    def evaluated_splits(self) -> tuple[str, ...]:
        """The splits a report evaluates: 'test', then 'validation' if the data set has one."""
        return ("test", "validation") if self.dataset.validation is not None else ("test",)

    def _eval_batches(self, split: str) -> Iterator[data.Split]:
        batch_size = self.eval_batch_size
        held = getattr(self.dataset, split)
        if held is None:  # streamed: one pass, the last batch partial
            yield from self.dataset.batches(split, batch_size=batch_size, seed=self.config.seed)
            return
        for start in range(0, len(held), batch_size):
            stop = start + batch_size
            yield data.Split(held.images[start:stop], held.labels[start:stop])

    def evaluate(self, state: steps.RunState) -> dict[str, float]:
        """Mean loss and accuracy on the whole test split (`test_loss`, `test_accuracy`), and on
        the validation split if there is one (`validation_loss`, `validation_accuracy`)."""
        return evaluation_means(self.evaluation_sums(state))

    def evaluation_sums(self, state: steps.RunState) -> dict[str, tuple[jax.Array, int]]:
        """For each of `evaluated_splits`: `[summed loss, correct count]` over the split, a
        device array dispatched without waiting for it, and the number of its examples."""
        return {split: self._split_sums(state, split) for split in self.evaluated_splits}

    def _split_sums(self, state: steps.RunState, split: str) -> tuple[jax.Array, int]:
        batch_size = self.eval_batch_size
        sums, count = jnp.zeros(2, jnp.float32), 0
        for batch in self._eval_batches(split):
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


def evaluation_means(sums: dict[str, tuple[jax.Array, int]]) -> dict[str, float]:
    """`{'test_loss', 'test_accuracy'[, 'validation_loss', 'validation_accuracy']}` from
    `Trainer.evaluation_sums`' results (waits for them)."""
    means = {}
    for split, (split_sums, count) in sums.items():
        loss_sum, correct = np.asarray(split_sums, np.float64)
        means.update({f"{split}_loss": loss_sum / count, f"{split}_accuracy": correct / count})
    return {name: float(value) for name, value in means.items()}


# A training step holds the state, its updated copy while the old one is donated, and the
# gradients: about three times the state's bytes, before any activation.
STATE_COPIES = 3


def device_memory(device: jax.Device) -> int:
    """Bytes one device can hold: its allocator's limit on an accelerator, the machine's
    physical memory on a CPU."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(config, model, input_shape: tuple[int, ...], device: jax.Device) -> None:
    """Raises a one-line ValueError when the run's state (parameters, batch statistics and
    optimizer state, from their shapes alone: nothing is allocated) cannot fit on `device`
    `STATE_COPIES` times over."""
    shapes = jax.eval_shape(
        lambda hyper: steps.init_state(config, hyper, model, input_shape),
        recipe.Hyperparameters.of(config),
    )
    state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))
    available = device_memory(device)
    if STATE_COPIES * state_bytes > available:
        raise ValueError(
            f"config.model and config.model_options must describe a model whose training state "
            f"fits in memory: {config.model} with {recipe.model_options(config)} needs at least "
            f"{STATE_COPIES * state_bytes / 2**30:.3g} GiB ({state_bytes / 2**30:.3g} GiB of "
            f"state, {STATE_COPIES}× in a step), {device.platform} has {available / 2**30:.3g} GiB"
        )


def load_dataset(config: ml_collections.ConfigDict) -> data.Dataset:
    """The data set of `config`, checked against the config's batch size and augmentation."""
    dataset = data.load(config.dataset, data_dir=config.data_dir, **config.data_options)
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
    return dataset


def create_trainer(
    config: ml_collections.ConfigDict,
    *,
    devices: list[jax.Device] | None = None,
    dataset: data.Dataset | None = None,
    validated: bool = False,
) -> Trainer:
    """Builds the model, data, optimizer and compiled steps of a run; nothing runs yet.

    Every bad input raises a one-line ValueError here, before any training or file I/O.

    Args:
      config: a config like those in experiments/configs (`l2reg.training.default_config()`).
      devices: the devices of the 1-D data mesh; all devices of all hosts by default.
      dataset: an already loaded `l2reg.data.Dataset` to use instead of `config.dataset`.
      validated: the caller has validated `config` for these devices already.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not validated:
        config_lib.validate(config, len(devices))
    if dataset is None:
        dataset = load_dataset(config)
    model = recipe.create_model(config, dataset.num_classes, axis_name=AXIS)
    check_memory(config, model, dataset.input_shape, devices[0])
    loss_fn = recipe.create_loss(config)
    eval_batch_size = config.eval_batch_size
    if dataset.test is not None:
        largest = max(
            len(split) for split in (dataset.test, dataset.validation) if split is not None
        )
        eval_batch_size = min(eval_batch_size, -(-largest // len(devices)) * len(devices))
    mesh = jax.sharding.Mesh(np.array(devices), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))

    # The run's numbers are an argument, not constants: the step computes with them as the
    # sweep's vmapped step does (XLA would otherwise fold them, e.g. λ/3 into λ·(1/3)).
    @functools.partial(jax.jit, out_shardings=NamedSharding(mesh, P()))
    def init(hyper: recipe.Hyperparameters) -> steps.RunState:
        return steps.init_state(config, hyper, model, dataset.input_shape)

    train = functools.partial(
        steps.train_step, config=config, apply_fn=model.apply, loss_fn=loss_fn, axis_name=AXIS
    )
    mixing = config.mixup_alpha > 0
    per_device_train = jax.shard_map(
        lambda state, images, labels, restart, *mix: train(
            state, images, labels, mix[0] if mix else None, restart
        ),
        mesh=mesh,
        in_specs=(P(), P(AXIS), P(AXIS), P(), *([(P(AXIS), P())] if mixing else [])),
        out_specs=P(),
    )

    @functools.partial(jax.jit, donate_argnums=0)
    def sharded_train_step(state: steps.RunState, images: jax.Array, labels: jax.Array):
        images, labels, mix = steps.prepare_batch(dataset, config, state, images, labels)
        restart = state.step % config.eval_every == 0
        return per_device_train(state, images, labels, restart, *([mix] if mixing else []))

    per_device_eval = jax.shard_map(
        functools.partial(steps.eval_sums, apply_fn=model.apply, loss_fn=loss_fn, axis_name=AXIS),
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
        init_state=lambda: init(recipe.Hyperparameters.of(config)),
        sharded_train_step=Paced(sharded_train_step, programs_ahead(devices)),
        summarize=jax.jit(functools.partial(steps.summary, config=config)),
        eval_batch_size=eval_batch_size,
        _eval_sums=Paced(eval_sums, programs_ahead(devices)),
    )
