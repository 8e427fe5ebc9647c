"""Sweeps: many runs of one config, differing in (λ, η, seed, length, L2 mode, …), trained at once.

A sweep is the trainer's step vmapped: each member is the run that the base config with the
member's fields set (`Run.config`) defines, and trains through the same `recipe` and
`steps.train_step` as `train_and_evaluate` would train it (single device, no shard_map), so
its test-accuracy curve is the trainer's.

Members with the same L2 mode, learning-rate schedule and AutoL2 patience/check_every share a
compiled program whatever their numbers (AutoL2's settings and the anytime schedule's c
included): `jax.vmap` over members (each with its own parameters, batch statistics and
optimizer state, AutoL2's λ included) inside a `jax.lax.scan` over steps, run in chunks with a
progress bar over chunks. They are sorted by length and trained in buckets of equal size, so a
short run shares its bucket with runs of similar length; inside a bucket, a finished member is
frozen until the longest one ends. Test accuracy (and validation accuracy, when the data set
has a validation split) is measured at log-spaced steps shared by all members (and at any
further steps asked for, such as the budgets at which runs are compared): a real branch
(`lax.cond` on an unbatched predicate) taken only there.

Typical use::

  config = experiments.configs.mlp_digits_noisy.get_config()
  runs = [Run(l2, lr, seed, steps=int(8 / (l2 * lr))) for l2, lr, seed in grid]
  curves = run(config, runs)   # one `rundir.Curves` per run, in order
"""

import dataclasses
import functools
import json
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from l2reg import checks, data
from l2reg.training import config as config_lib
from l2reg.training import recipe, steps
from l2reg.training.rundir import Curves


class Run(NamedTuple):
    """One member of a sweep: the fields of the base config that it sets.

    Attributes:
      l2: λ (AutoL2's and the anytime schedule's initial λ).
      lr: η (its peak under a schedule).
      seed: the initialization and batch-order seed, an int32.
      steps: SGD steps to train, in [1, 2**31 − 1].
      l2_mode: 'none' | 'fixed' | 'autol2' | 'anytime', or None for the base config's.
      lr_schedule: 'constant' | 'cosine' | 'step', or None for the base config's.
      autol2: (name, value) pairs set in `config.autol2` (e.g. (('min_l2', 1e-4),)).
      anytime_c: the anytime schedule's c (`config.anytime_c`), or None for the base config's.
    """

    l2: float
    lr: float
    seed: int
    steps: int
    l2_mode: str | None = None
    lr_schedule: str | None = None
    autol2: tuple[tuple[str, Any], ...] = ()
    anytime_c: float | None = None

    def config(self, base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """The trainer config of this run: `base` with this run's fields set."""
        config = base.copy_and_resolve_references()
        config.l2, config.lr, config.seed, config.steps = self.l2, self.lr, self.seed, self.steps
        if self.l2_mode is not None:
            config.l2_mode = self.l2_mode
        if self.lr_schedule is not None:
            config.lr_schedule = self.lr_schedule
        for name, value in self.autol2:
            config.autol2[name] = value
        if self.anytime_c is not None:
            config.anytime_c = self.anytime_c
        return config


def eval_steps(num_steps: int, per_decade: int, extra: Sequence[int] = ()) -> np.ndarray:
    """Steps at which a run of `num_steps` steps is evaluated.

    The log-spaced grid round(10^(k/per_decade)) does not depend on the run's length, so
    runs of different lengths share their evaluation steps; the last step is added, and so
    are the `extra` steps (e.g. budgets T at which accuracy is read) up to `num_steps`.

    Returns:
      Sorted distinct int64 steps in [1, num_steps].
    """
    exponents = np.arange(int(per_decade * math.log10(num_steps)) + 1) / per_decade
    grid = np.rint(10.0**exponents).astype(np.int64)
    extra = np.asarray(extra, dtype=np.int64).reshape(-1)
    steps_ = np.concatenate([grid[grid <= num_steps], extra[extra <= num_steps], [num_steps]])
    return np.unique(steps_)


def choose_bucket_size(lengths: Sequence[int], step_overhead: float, largest: int = 32) -> int:
    """Bucket size minimizing the estimated cost of a group of runs.

    Runs sorted longest first are cut into equal buckets of `size` (the last one padded);
    a bucket costs its longest run times (size + step_overhead) member-steps: wide buckets
    share the per-step overhead, narrow ones waste less on finished runs.

    Args:
      lengths: the runs' steps, sorted in decreasing order.
      step_overhead: the cost of one vmapped step beyond its members, ≥ 0.
      largest: the widest bucket considered.
    """
    lengths = np.asarray(lengths, dtype=float)

    def cost(size):
        return np.sum(lengths[::size]) * (size + step_overhead)

    return min(range(1, min(len(lengths), largest) + 1), key=cost)


def validate(config: ml_collections.ConfigDict, runs: Sequence[Run]) -> None:
    """Raises a one-line ValueError for the first run whose config is invalid (naming the run),
    or for a base config that a sweep cannot train (a streamed data set)."""
    if not runs:
        raise ValueError("runs must hold at least one sweep.Run, got none")
    config_lib.validate(config)
    for run_ in runs:
        if not isinstance(run_, Run):
            raise TypeError(f"runs must hold sweep.Run, got {type(run_).__name__}: {run_!r}")
        try:
            config_lib.validate(run_.config(config))
        except (ValueError, TypeError) as error:
            raise type(error)(f"{error} (in {run_})") from None


def run(
    config: ml_collections.ConfigDict,
    runs: Sequence[Run],
    *,
    evals_per_decade: int = 12,
    eval_at: Sequence[int] = (),
    bucket_size: int | None = None,
    step_overhead: float = 2.0,
    chunk_steps: int = 500,
    progress: bool | str = True,
) -> list[Curves]:
    """Trains every run of `config` and returns its curves.

    Args:
      config: the base trainer config; each run sets its own fields (`Run.config`). Its
        evaluation and checkpoint settings are not used: a sweep evaluates at `eval_steps`.
      runs: the members.
      evals_per_decade: log-spaced test evaluations per decade of steps.
      eval_at: further steps, each in [1, the longest run], after which every run that lasts
        that long is also evaluated (e.g. the budgets T at which accuracies are compared).
      bucket_size: members trained side by side (vmapped) in one bucket; None picks the size
        of least estimated cost (see `choose_bucket_size`).
      step_overhead: the fixed cost of one vmapped step, in member-steps, for the automatic
        bucket size (about 2 measured on CPU for small MLPs; accelerators, where wide vmaps
        are nearly free, warrant far more).
      chunk_steps: steps per compiled `lax.scan` call (one progress-bar tick).
      progress: show a tqdm bar over chunks; a string is its label.

    Returns:
      One `Curves` per run, in the order of `runs`; its train_* are means over the steps since
      the previous evaluation.
    """
    validate(config, runs)
    checks.integer("evals_per_decade", evals_per_decade)
    longest = max(r.steps for r in runs)
    eval_at = tuple(eval_at)
    for step in eval_at:
        checks.integer(f"eval_at's step (the longest run has {longest})", step, maximum=longest)
    checks.integer("bucket_size", bucket_size, none_ok=True)
    checks.number(
        "step_overhead", step_overhead, lambda x: math.isfinite(x) and x >= 0, "finite and >= 0"
    )
    checks.integer("chunk_steps", chunk_steps)
    program, arrays = _load(config)
    # is_eval[k]: evaluate after step k; is_eval[0] restarts the training means at step 0.
    is_eval = np.zeros(_round_up(longest, chunk_steps) + 1, bool)
    is_eval[0] = True
    for member in runs:
        is_eval[eval_steps(member.steps, evals_per_decade, eval_at)] = True

    groups: dict[tuple, list[int]] = {}
    for index, member in enumerate(runs):
        groups.setdefault(_group_key(member.config(config)), []).append(index)
    buckets = []
    for indices in groups.values():
        # Longest first, so each bucket holds runs of similar length.
        indices = sorted(indices, key=lambda i: -runs[i].steps)
        lengths = [runs[i].steps for i in indices]
        size = bucket_size or choose_bucket_size(lengths, step_overhead)
        for start in range(0, len(indices), size):
            members = indices[start : start + size]
            # Pad with copies of the last member to keep one compiled shape per group.
            members = members + [members[-1]] * (size - len(members))
            buckets.append(members)

    total_chunks = sum(_round_up(runs[m[0]].steps, chunk_steps) // chunk_steps for m in buckets)
    label = progress if isinstance(progress, str) else "sweep"
    results: list[Curves | None] = [None] * len(runs)
    with tqdm.tqdm(total=total_chunks, desc=label, unit="chunk", disable=not progress) as bar:
        for members in buckets:
            group_config = runs[members[0]].config(config)
            hyper = recipe.Hyperparameters.stack(
                [recipe.Hyperparameters.on_host(runs[i].config(config)) for i in members]
            )
            frozen = _Frozen(group_config)
            state = _init(program, frozen, hyper)
            metrics = []
            for start in range(0, runs[members[0]].steps, chunk_steps):
                # The chunk's own window of the evaluation steps, so that one compiled program
                # serves runs of any length.
                window = jnp.asarray(is_eval[start : start + chunk_steps + 1])
                state, chunk = _chunk(program, frozen, arrays, state, window)
                metrics.append(jax.device_get(chunk))
                bar.update(1)
            # Row k of the stacked metrics holds the evaluation after step k + 1.
            stacked = {name: np.concatenate([m[name] for m in metrics]) for name in metrics[0]}
            for column, index in enumerate(members):
                if results[index] is not None:
                    continue  # a padding copy
                mine = eval_steps(runs[index].steps, evals_per_decade, eval_at)
                results[index] = Curves(
                    steps=mine,
                    **{name: values[mine - 1, column] for name, values in stacked.items()},
                )
    return results


def _group_key(config: ml_collections.ConfigDict) -> tuple:
    """The fields of a member's config that shape the compiled program (the rest is traced)."""
    return (
        config.l2_mode,
        config.lr_schedule,
        config.autol2.patience,
        config.autol2.check_every,
    )


def _round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


_METRICS = Curves._fields[1:]
# The config fields that a `Run` sets: a sweep's members differ only in these.
_RUN_FIELDS = ("l2", "lr", "seed", "steps", "l2_mode", "lr_schedule", "autol2", "anytime_c")


class _Data(NamedTuple):
    """One data draw of a sweep on device, a jit argument, so that draws share compiled steps."""

    train_images: jax.Array  # raw, as the trainer's batches are before `prepare_batch`
    train_labels: jax.Array
    test_images: jax.Array  # preprocessed
    test_labels: jax.Array
    validation_images: jax.Array | None  # preprocessed; None without a validation split
    validation_labels: jax.Array | None
    mean: jax.Array  # the training images' statistics that `preprocess` normalizes with
    std: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class _Program:
    """The static pieces of a sweep's compiled steps: model, loss and batch size.

    `dataset` is the first data draw loaded for it; only what every draw of it shares (input
    shape, classes, augmentation) is read from it, the arrays come in as `_Data`.
    """

    dataset: data.Dataset
    model: Any
    loss_fn: recipe.LossFn
    batch_size: int

    def member_step(self, config, arrays: _Data, state: steps.RunState, restart) -> steps.RunState:
        """One step of one member (vmapped over members by `_chunk`)."""
        indices = data.batch_indices(
            state.hyper.seed, state.step, self.batch_size, arrays.train_images.shape[0]
        )
        images, labels, mix = steps.prepare_batch(
            dataclasses.replace(self.dataset, mean=arrays.mean, std=arrays.std),
            config,
            state,
            arrays.train_images[indices],
            arrays.train_labels[indices],
        )
        new = steps.train_step(
            state,
            images,
            labels,
            mix,
            restart,
            config=config,
            apply_fn=self.model.apply,
            loss_fn=self.loss_fn,
            axis_name=None,
        )
        # A finished member stays frozen while its bucket's longer runs go on.
        running = state.step < state.hyper.steps
        return jax.tree.map(lambda n, o: jnp.where(running, n, o), new, state)

    def evaluate(self, config, arrays: _Data, state: steps.RunState) -> dict[str, jax.Array]:
        """The metrics of one member (vmapped by `_chunk`); the validation ones NaN without a
        validation split."""
        summary = steps.summary(state, config)
        test_loss, test_accuracy = self._means(state, arrays.test_images, arrays.test_labels)
        if arrays.validation_labels is None:
            validation_loss = validation_accuracy = jnp.float32(jnp.nan)
        else:
            validation_loss, validation_accuracy = self._means(
                state, arrays.validation_images, arrays.validation_labels
            )
        return {
            "train_loss": summary["train_loss"],
            "train_accuracy": summary["train_accuracy"],
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "l2": jnp.asarray(summary["l2"], jnp.float32),
            "lr": jnp.asarray(summary["lr"], jnp.float32),
            "weight_norm": summary["weight_norm"],
            "validation_loss": validation_loss,
            "validation_accuracy": validation_accuracy,
        }

    def _means(self, state: steps.RunState, images: jax.Array, labels: jax.Array):
        """Mean loss and accuracy of one member on a whole preprocessed split."""
        count = labels.shape[0]
        loss_sum, correct = steps.eval_sums(
            state,
            images,
            labels,
            jnp.ones(count, jnp.float32),
            apply_fn=self.model.apply,
            loss_fn=self.loss_fn,
            axis_name=None,
        )
        return loss_sum / count, correct / count


# The data options that change a draw's values but not its shapes: draws that differ only in
# these share a `_Program` and so its compiled steps.
_DRAW_FIELDS = ("label_noise", "label_noise_seed", "validation_seed")
# Programs by the JSON of their shared config fields less the draw's, and each draw's arrays by
# the JSON of all its shared fields: a rerun reuses both, another draw the program.
_PROGRAMS: dict[str, _Program] = {}
_DATA: dict[str, _Data] = {}


def _load(config: ml_collections.ConfigDict) -> tuple[_Program, _Data]:
    """The program and the data of a sweep of `config` (members vary only the `Run` fields)."""
    shared = {
        name: value
        for name, value in json.loads(config.to_json_best_effort(sort_keys=True)).items()
        if name not in _RUN_FIELDS
    }
    key = json.dumps(shared, sort_keys=True)
    shared["data_options"] = {
        name: value for name, value in shared["data_options"].items() if name not in _DRAW_FIELDS
    }
    program_key = json.dumps(shared, sort_keys=True)
    if key not in _DATA:
        dataset = data.load(config.dataset, data_dir=config.data_dir, **config.data_options)
        if dataset.train is None:
            raise ValueError(
                f"a sweep needs an in-memory data set, got the streamed {dataset.name!r}"
            )
        if config.batch_size > len(dataset.train):
            raise ValueError(
                f"config.batch_size={config.batch_size} exceeds the {len(dataset.train)} "
                f"training examples of {dataset.name!r}"
            )
        if program_key not in _PROGRAMS:
            _PROGRAMS[program_key] = _Program(
                dataset=dataset,
                model=recipe.create_model(config, dataset.num_classes, axis_name=None),
                loss_fn=recipe.create_loss(config),
                batch_size=config.batch_size,
            )
        _DATA[key] = _device_data(dataset)
    return _PROGRAMS[program_key], _DATA[key]


def _device_data(dataset: data.Dataset) -> _Data:
    validation = dataset.validation
    return _Data(
        train_images=jnp.asarray(dataset.train.images),
        train_labels=jnp.asarray(dataset.train.labels, jnp.int32),
        test_images=jnp.asarray(dataset.preprocess(dataset.test.images)),
        test_labels=jnp.asarray(dataset.test.labels, jnp.int32),
        validation_images=None if validation is None else dataset.preprocess(validation.images),
        validation_labels=None if validation is None else jnp.asarray(validation.labels, jnp.int32),
        mean=jnp.asarray(dataset.mean),
        std=jnp.asarray(dataset.std),
    )


class _Frozen:
    """A config as a static jit argument: hashed and compared by the program-shaping fields."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    def __hash__(self):
        return hash(_group_key(self.config))

    def __eq__(self, other):
        return isinstance(other, _Frozen) and _group_key(self.config) == _group_key(other.config)


def _init(program: _Program, frozen: _Frozen, hyper: recipe.Hyperparameters) -> steps.RunState:
    """The step-0 states of a bucket's members, stacked: each member's initialized alone, so
    that buckets of every size share one compiled init (as long to compile as a chunk's steps),
    and bit for bit as a vmapped init would give them."""
    members = [
        _init_member(program, frozen, jax.tree.map(lambda value, i=i: value[i], hyper))
        for i in range(jax.tree.leaves(hyper)[0].shape[0])
    ]
    return jax.tree.map(lambda *values: jnp.stack(values), *members)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_member(
    program: _Program, frozen: _Frozen, hyper: recipe.Hyperparameters
) -> steps.RunState:
    return steps.init_state(
        frozen.config, hyper, model=program.model, input_shape=program.dataset.input_shape
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _chunk(
    program: _Program, frozen: _Frozen, arrays: _Data, state: steps.RunState, is_eval: jax.Array
):
    """The next len(is_eval) − 1 steps of a bucket; metrics (len(is_eval) − 1, bucket) each.

    `is_eval` (chunk + 1,) bool: entry k says whether to evaluate after the chunk's k-th step
    (its first entry, whether the step before the chunk was evaluated, restarts the training
    means at the chunk's first step).
    """
    train = jax.vmap(
        functools.partial(program.member_step, frozen.config, arrays), in_axes=(0, None)
    )
    evaluate = jax.vmap(functools.partial(program.evaluate, frozen.config, arrays))
    bucket = state.step.shape[0]
    skipped = {name: jnp.full((bucket,), jnp.nan, jnp.float32) for name in _METRICS}

    def body(state, flags):
        restart, evaluate_after = flags
        state = train(state, restart)
        # The predicate is shared by all members, so this stays a real branch.
        metrics = jax.lax.cond(evaluate_after, evaluate, lambda _: skipped, state)
        return state, metrics

    return jax.lax.scan(body, state, (is_eval[:-1], is_eval[1:]))
