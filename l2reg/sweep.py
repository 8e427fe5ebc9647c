"""Sweeps: a grid of (λ, η, seed, L2 mode) configurations of one small model, trained at once.

The FixedL2 configurations, and the AutoL2 ones with the same patience and check_every, are
stacked along a leading axis whatever their λ, η, seed, length and learning-rate schedule, and
trained by one jitted program: `jax.vmap` over configurations (each with its
own parameters, batch-norm statistics and optimizer state, AutoL2's included) inside a
`jax.lax.scan` over steps, run in chunks with a progress bar over chunks. Test accuracy is
measured at log-spaced steps shared by all configurations (and at any further steps asked
for, such as the budgets at which runs are compared), so the evaluation is a real branch
(`lax.cond` on an unbatched predicate) taken only at those steps.

Each configuration trains for its own `num_steps` (typically a multiple of 1/(λη)). The
configurations are sorted by length and trained in buckets of equal size, so a short run
shares its bucket with runs of similar length; inside a bucket, a finished configuration
is frozen (its updates masked) until the longest one ends. Equal bucket sizes and a fixed
chunk length let every bucket reuse the same compiled program.

Typical use::

  setup = Setup('digits', loss='mse',
                model_options=(('parameterization', 'ntk'), ('use_bias', False)))
  configs = [Config(l2, lr, seed, int(8 / (l2 * lr))) for l2, lr, seed in grid]
  curves = run(setup, configs)   # one Curves per configuration, in order
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

import l2reg
import l2reg.data
import l2reg.models
import l2reg.transforms
from l2reg import checks

LOSSES = ("cross_entropy", "mse")
# Fractions of a run after which η is multiplied by 0.2 ('step' is the standard WRN schedule).
LR_DROPS = {"constant": (np.inf,) * 3, "step": (0.3, 0.6, 0.9)}
LR_SCHEDULES = tuple(LR_DROPS)


def _check_int(
    name: str,
    value: Any,
    low: int,
    high: int | None = None,
    *,
    none_ok: bool = False,
    where: str = "",
) -> None:
    """`l2reg.checks.integer`, its error ending with `where` (the configuration it belongs to)."""
    try:
        checks.integer(name, value, minimum=low, maximum=high, none_ok=none_ok)
    except ValueError as error:
        raise ValueError(f"{error}{where}.") from None


@dataclasses.dataclass(frozen=True)
class Setup:
    """What is trained: data set, model, loss and batch; shared by every configuration.

    Attributes:
      dataset: a name for `l2reg.data.load`, e.g. 'digits' or 'mnist1d'.
      data_options: keyword options of `l2reg.data.load` as (name, value) pairs, e.g.
        (('test_size', 10000),) for a larger mnist1d test set.
      model: a name for `l2reg.models.create`, e.g. 'mlp'.
      model_options: keyword options of the model as a tuple of (name, value) pairs (a
        tuple so that the setup is hashable), e.g. (('parameterization', 'ntk'),).
      loss: 'cross_entropy', or 'mse': ½·Σ_classes (f − y)² averaged over the batch, with
        zero-mean targets y = onehot − 1/num_classes.
      batch_size: examples per SGD step.
      momentum: SGD momentum μ (0 is plain SGD, as in the paper's grids). The AutoL2
        cooldown clock uses the effective learning rate η/(1−μ).
      label_noise: fraction of training labels replaced, once and for all, by a uniformly
        drawn different class (seeded by LABEL_NOISE_SEED; the test labels stay clean).
    """

    dataset: str
    data_options: tuple[tuple[str, Any], ...] = ()
    model: str = "mlp"
    model_options: tuple[tuple[str, Any], ...] = ()
    loss: str = "cross_entropy"
    batch_size: int = 100
    momentum: float = 0.0
    label_noise: float = 0.0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}; expected one of {LOSSES}.")
        _check_int("batch_size", self.batch_size, 1)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}.")
        if not 0.0 <= self.label_noise < 1.0:
            raise ValueError(f"label_noise must be in [0, 1), got {self.label_noise}.")

    def describe(self) -> str:
        """A one-line label for reports, e.g. 'digits, mlp(parameterization=ntk), mse, …'."""
        data = ", ".join(f"{name}={value}" for name, value in self.data_options)
        options = ", ".join(f"{name}={value}" for name, value in self.model_options)
        return (
            f"{self.dataset}({data}), {self.model}({options}), {self.loss}, "
            f"SGD batch {self.batch_size}, momentum {self.momentum}"
            + (f", {self.label_noise:.0%} label noise" if self.label_noise else "")
        )


@dataclasses.dataclass(frozen=True)
class FixedL2:
    """Constant λ, added to the gradient before the optimizer (`l2reg.add_l2`)."""


@dataclasses.dataclass(frozen=True)
class AutoL2:
    """λ starts at the configuration's `l2` and follows `l2reg.autol2` with these settings.

    Attributes:
      decay_factor, cooldown, patience, check_every, min_l2: as in `l2reg.autol2`.
      learning_rate: η of the cooldown clock (cooldown/(λη) steps); None uses the
        configuration's effective learning rate and its schedule. The authors' released
        setting is `learning_rate=1.0, cooldown=0.2`.
    """

    decay_factor: float = 10.0
    cooldown: float = 0.1
    patience: int = 2
    check_every: int = 10
    min_l2: float = 0.0
    learning_rate: float | None = None


class Config(NamedTuple):
    """One training run of a sweep.

    Attributes:
      l2: λ (for AutoL2, its initial value).
      lr: η, the SGD learning rate (its peak value under a schedule).
      seed: initialization and batch order, an int32 (as `l2reg.train`'s config.seed).
      num_steps: SGD steps to train, in [1, 2**31 − 1].
      l2_mode: FixedL2() or AutoL2(...).
      lr_schedule: 'constant', or 'step': η × 0.2 at 30%, 60% and 90% of `num_steps`.
    """

    l2: float
    lr: float
    seed: int
    num_steps: int
    l2_mode: FixedL2 | AutoL2 = FixedL2()
    lr_schedule: str = "constant"


class Curves(NamedTuple):
    """Per-configuration curves, each of shape (num_evals,), at `steps` (1 … num_steps).

    Attributes:
      steps: SGD steps after which the model was evaluated (int).
      test_accuracy: fraction of the test set classified correctly, 0–1.
      test_loss: mean test loss without the L2 term.
      l2: λ in force at that step.
      weight_norm: ‖θ‖₂ over all trained parameters.
    """

    steps: np.ndarray
    test_accuracy: np.ndarray
    test_loss: np.ndarray
    l2: np.ndarray
    weight_norm: np.ndarray

    def index_at(self, step: float, *, exact: bool = False) -> int:
        """Index into the curves of the last evaluation at or before `step` steps (0 if none).

        With `exact`, the evaluation must have been after exactly `step` steps (for a budget
        T, pass T in `run`'s `eval_at`): otherwise a one-line ValueError names the nearest
        evaluated steps, rather than an earlier evaluation standing in for it.
        """
        index = int(np.searchsorted(self.steps, step, side="right")) - 1
        if exact and (index < 0 or self.steps[index] != step):
            before = self.steps[index] if index >= 0 else None
            after = self.steps[index + 1] if index + 1 < len(self.steps) else None
            raise ValueError(
                f"step {step!r} was not evaluated (the nearest evaluations are at steps "
                f"{before} and {after}); add it to the evaluations (sweep.run's eval_at)."
            )
        return max(index, 0)

    def accuracy_at(self, step: float, *, exact: bool = False) -> float:
        """Test accuracy after `step` steps: the last evaluation at or before it (the first
        evaluation if none), or with `exact` the evaluation at exactly `step` (see `index_at`).
        """
        return float(self.test_accuracy[self.index_at(step, exact=exact)])


def validate(configs: Sequence[Config]) -> None:
    """Raises a one-line ValueError/TypeError for the first invalid configuration.

    The L2 settings are checked by `l2reg.transforms.validate_add_l2`/`validate_autol2`, as
    the transforms would check them if they were not traced.
    """
    if not configs:
        raise ValueError("A sweep needs at least one configuration, got none.")
    for config in configs:
        if not isinstance(config, Config):
            raise TypeError(f"Expected sweep.Config, got {type(config).__name__}: {config!r}.")
        where = f" in {config}"
        if not (config.lr > 0 and math.isfinite(config.lr)):
            raise ValueError(f"lr must be finite and > 0, got {config.lr}{where}.")
        _check_int("seed", config.seed, checks.INT32_MIN, checks.INT32_MAX, where=where)
        _check_int("num_steps", config.num_steps, 1, checks.INT32_MAX, where=where)
        mode = config.l2_mode
        if not isinstance(mode, FixedL2 | AutoL2):
            raise TypeError(f"l2_mode must be FixedL2() or AutoL2(...), got {mode!r}.")
        try:
            if isinstance(mode, FixedL2):
                l2reg.transforms.validate_add_l2(config.l2)
            else:
                l2reg.transforms.validate_autol2(
                    config.l2,
                    # None follows the run's own η, checked above.
                    config.lr if mode.learning_rate is None else mode.learning_rate,
                    decay_factor=mode.decay_factor,
                    cooldown=mode.cooldown,
                    patience=mode.patience,
                    check_every=mode.check_every,
                    min_l2=mode.min_l2,
                )
        except ValueError as error:
            raise ValueError(f"{error}{where}.") from None
        if isinstance(mode, AutoL2) and config.l2 == 0:
            raise ValueError(f"AutoL2 needs an initial l2 > 0, got {config.l2}{where}.")
        if config.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"Unknown lr_schedule {config.lr_schedule!r}; expected one of {LR_SCHEDULES}."
            )


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
    steps = np.concatenate([grid[grid <= num_steps], extra[extra <= num_steps], [num_steps]])
    return np.unique(steps)


def choose_bucket_size(lengths: Sequence[int], step_overhead: float, largest: int = 32) -> int:
    """Bucket size minimizing the estimated cost of a group of runs.

    Runs sorted longest first are cut into equal buckets of `size` (the last one padded);
    a bucket costs its longest run times (size + step_overhead) configuration-steps: wide
    buckets share the per-step overhead, narrow ones waste less on finished runs.

    Args:
      lengths: the runs' num_steps, sorted in decreasing order.
      step_overhead: the cost of one vmapped step beyond its configurations, ≥ 0.
      largest: the widest bucket considered.
    """
    lengths = np.asarray(lengths, dtype=float)

    def cost(size):
        return np.sum(lengths[::size]) * (size + step_overhead)

    return min(range(1, min(len(lengths), largest) + 1), key=cost)


def run(
    setup: Setup,
    configs: Sequence[Config],
    *,
    evals_per_decade: int = 12,
    eval_at: Sequence[int] = (),
    bucket_size: int | None = None,
    step_overhead: float = 2.0,
    chunk_steps: int = 500,
    progress: bool = True,
) -> list[Curves]:
    """Trains every configuration and returns its test curves.

    Args:
      setup: the data, model and loss shared by all configurations.
      configs: the runs; FixedL2 configurations are vmapped together, and so are AutoL2
        configurations with the same patience and check_every.
      evals_per_decade: log-spaced test evaluations per decade of steps.
      eval_at: further steps, each in [1, the longest num_steps], after which every
        configuration that lasts that long is also evaluated (e.g. the budgets T at which
        accuracies are compared, so that none is read from an earlier evaluation).
      bucket_size: configurations trained side by side (vmapped) in one bucket; None
        picks the size of least estimated cost (see `choose_bucket_size`).
      step_overhead: the fixed cost of one vmapped step, in configuration-steps, for the
        automatic bucket size (about 2 measured on CPU for small MLPs; accelerators, where
        wide vmaps are nearly free, warrant far more).
      chunk_steps: steps per compiled `lax.scan` call (one progress-bar tick).
      progress: show a tqdm bar over chunks.

    Returns:
      One `Curves` per configuration, in the order of `configs`.
    """
    if not isinstance(setup, Setup):
        raise TypeError(f"Expected sweep.Setup, got {type(setup).__name__}: {setup!r}.")
    validate(configs)
    _check_int("evals_per_decade", evals_per_decade, 1)
    longest = max(c.num_steps for c in configs)
    eval_at = tuple(eval_at)
    for step in eval_at:
        _check_int("eval_at step", step, 1, longest, where=f" ({longest} is the longest num_steps)")
    _check_int("bucket_size", bucket_size, 1, none_ok=True)
    if not (step_overhead >= 0 and math.isfinite(step_overhead)):
        raise ValueError(f"step_overhead must be finite and ≥ 0, got {step_overhead}.")
    _check_int("chunk_steps", chunk_steps, 1)
    program = _Program.create(setup)
    is_eval = np.zeros(_round_up(longest, chunk_steps) + 1, bool)
    for config in configs:
        is_eval[eval_steps(config.num_steps, evals_per_decade, eval_at)] = True

    groups: dict[FixedL2 | AutoL2, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(_program_kind(config.l2_mode), []).append(index)
    buckets = []
    for kind, indices in groups.items():
        # Longest first, so each bucket holds runs of similar length.
        indices = sorted(indices, key=lambda i: -configs[i].num_steps)
        lengths = [configs[i].num_steps for i in indices]
        size = bucket_size or choose_bucket_size(lengths, step_overhead)
        for start in range(0, len(indices), size):
            members = indices[start : start + size]
            # Pad with copies of the last member to keep one compiled shape per group.
            members = members + [members[-1]] * (size - len(members))
            buckets.append((kind, members))

    total_chunks = sum(
        _round_up(configs[m[0]].num_steps, chunk_steps) // chunk_steps for *_, m in buckets
    )
    results: list[Curves | None] = [None] * len(configs)
    with tqdm.tqdm(total=total_chunks, desc="sweep", unit="chunk", disable=not progress) as bar:
        for kind, members in buckets:
            hyper = _Hyper.stack([configs[i] for i in members])
            state = program.init(kind, hyper)
            metrics = []
            for start in range(0, configs[members[0]].num_steps, chunk_steps):
                # The chunk's own window of the evaluation steps, so that one compiled
                # program serves runs of any length.
                evaluated = jnp.asarray(is_eval[start + 1 : start + chunk_steps + 1])
                state, chunk = program.chunk(
                    kind, chunk_steps, state, hyper, jnp.int32(start), evaluated
                )
                metrics.append(jax.device_get(chunk))
                bar.update(1)
            # Row k of the stacked metrics holds the evaluation after step k + 1.
            stacked = {name: np.concatenate([m[name] for m in metrics]) for name in metrics[0]}
            for column, index in enumerate(members):
                if results[index] is not None:
                    continue  # a padding copy
                mine = eval_steps(configs[index].num_steps, evals_per_decade, eval_at)
                results[index] = Curves(
                    steps=mine,
                    **{name: values[mine - 1, column] for name, values in stacked.items()},
                )
    return results


def _drop_steps(config: Config) -> tuple[int, ...]:
    """The whole steps at which η is multiplied by 0.2, rounded as the trainer's 'step' schedule
    rounds them (a fraction times the run length in float32 can land just past the step)."""
    never = np.iinfo(np.int32).max
    return tuple(
        round(f * config.num_steps) if np.isfinite(f) else never
        for f in LR_DROPS[config.lr_schedule]
    )


class _Hyper(NamedTuple):
    """Per-configuration numbers of a bucket, each of shape (bucket_size,) (traced, so one
    compiled program serves every value; AutoL2 fields are unused by FixedL2 buckets)."""

    l2: jax.Array
    lr: jax.Array
    seed: jax.Array
    num_steps: jax.Array
    lr_drops: jax.Array  # (bucket_size, 3): the steps at which η is multiplied by 0.2
    decay_factor: jax.Array
    cooldown: jax.Array
    min_l2: jax.Array
    clock_lr: jax.Array  # η of the AutoL2 cooldown clock; 0 follows the run's own η

    @classmethod
    def stack(cls, configs: Sequence[Config]) -> _Hyper:
        def column(values, dtype):
            return jnp.asarray(np.asarray(values), dtype)

        autol2 = [c.l2_mode if isinstance(c.l2_mode, AutoL2) else AutoL2() for c in configs]
        return cls(
            l2=column([c.l2 for c in configs], jnp.float32),
            lr=column([c.lr for c in configs], jnp.float32),
            seed=column([c.seed for c in configs], jnp.int32),
            num_steps=column([c.num_steps for c in configs], jnp.int32),
            lr_drops=column([_drop_steps(c) for c in configs], jnp.int32),
            decay_factor=column([m.decay_factor for m in autol2], jnp.float32),
            cooldown=column([m.cooldown for m in autol2], jnp.float32),
            min_l2=column([m.min_l2 for m in autol2], jnp.float32),
            clock_lr=column([m.learning_rate or 0.0 for m in autol2], jnp.float32),
        )


class _State(NamedTuple):
    params: Any
    model_state: Any  # batch statistics, or {} for models without them
    opt_state: Any


LABEL_NOISE_SEED = 0


def noisy_labels(labels: np.ndarray, num_classes: int, fraction: float) -> np.ndarray:
    """int32 labels with round(fraction·N) of them, chosen at random, moved to another class."""
    rng = np.random.default_rng(LABEL_NOISE_SEED)
    labels = np.array(labels, dtype=np.int32)
    flipped = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    shift = rng.integers(1, num_classes, size=len(flipped))
    labels[flipped] = (labels[flipped] + shift) % num_classes
    return labels


def _program_kind(l2_mode: FixedL2 | AutoL2) -> FixedL2 | AutoL2:
    """The part of an L2 mode that shapes the compiled program (the rest is traced)."""
    if isinstance(l2_mode, FixedL2):
        return l2_mode
    return AutoL2(patience=l2_mode.patience, check_every=l2_mode.check_every)


def _round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


@dataclasses.dataclass(frozen=True, eq=False)
class _Program:
    """The jitted pieces of a sweep for one setup: data on device, model, loss."""

    setup: Setup
    model: nn.Module
    train_x: jax.Array
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array
    num_classes: int

    @staticmethod
    @functools.cache
    def create(setup: Setup) -> _Program:
        dataset = l2reg.data.load(setup.dataset, **dict(setup.data_options))
        model = l2reg.models.create(
            setup.model, num_classes=dataset.num_classes, **dict(setup.model_options)
        )
        program = _Program(
            setup=setup,
            model=model,
            train_x=jnp.asarray(dataset.preprocess(dataset.train.images)),
            train_y=jnp.asarray(
                noisy_labels(dataset.train.labels, dataset.num_classes, setup.label_noise)
            ),
            test_x=jnp.asarray(dataset.preprocess(dataset.test.images)),
            test_y=jnp.asarray(dataset.test.labels, jnp.int32),
            num_classes=dataset.num_classes,
        )
        if program.train_x.shape[0] < setup.batch_size:
            raise ValueError(
                f"batch_size {setup.batch_size} exceeds the {program.train_x.shape[0]} "
                f"training examples of {setup.dataset!r}."
            )
        return program

    def optimizer(self, l2_mode: FixedL2 | AutoL2, hyper: _Hyper) -> optax.GradientTransformation:
        """SGD on the coupled L2 loss of one configuration (`hyper` unbatched, may be traced).

        Only the kind of `l2_mode` and its integer settings (patience, check_every) are read
        from it; its numbers come from `hyper`, so that AutoL2 variants share one program.
        """
        schedule = lambda count: hyper.lr * 0.2 ** jnp.sum(count >= hyper.lr_drops)
        if isinstance(l2_mode, FixedL2):
            l2_step = l2reg.add_l2(hyper.l2)
        else:
            effective = lambda count: schedule(count) / (1.0 - self.setup.momentum)
            clock = lambda count: jnp.where(hyper.clock_lr > 0, hyper.clock_lr, effective(count))
            l2_step = l2reg.autol2(
                hyper.l2,
                clock,
                decay_factor=hyper.decay_factor,
                cooldown=hyper.cooldown,
                patience=l2_mode.patience,
                check_every=l2_mode.check_every,
                min_l2=hyper.min_l2,
            )
        return optax.chain(l2_step, optax.sgd(schedule, momentum=self.setup.momentum or None))

    def loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        """Mean loss over the batch, without the L2 term; logits (batch, classes)."""
        if self.setup.loss == "cross_entropy":
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        targets = jax.nn.one_hot(labels, self.num_classes) - 1.0 / self.num_classes
        return 0.5 * jnp.sum((logits - targets) ** 2, axis=-1).mean()

    @functools.partial(jax.jit, static_argnums=(0, 1))
    def init(self, kind: FixedL2 | AutoL2, hyper: _Hyper) -> _State:
        def init_one(hyper):
            variables = self.model.init(
                jax.random.PRNGKey(hyper.seed), self.train_x[:1], train=False
            )
            params = variables["params"]
            model_state = {k: v for k, v in variables.items() if k != "params"}
            return _State(params, model_state, self.optimizer(kind, hyper).init(params))

        return jax.vmap(init_one)(hyper)

    def _train_step(self, kind: FixedL2 | AutoL2, state: _State, hyper: _Hyper, step) -> _State:
        """One SGD step of one configuration (vmapped over configurations by the caller)."""
        indices = l2reg.data.batch_indices(
            hyper.seed, step, self.setup.batch_size, self.train_x.shape[0]
        )
        images, labels = self.train_x[indices], self.train_y[indices]

        def loss_fn(params):
            logits, model_state = self.model.apply(
                {"params": params, **state.model_state},
                images,
                train=True,
                mutable=list(state.model_state),
            )
            accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
            return self.loss(logits, labels), (model_state, accuracy)

        (loss, (model_state, accuracy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        tx = self.optimizer(kind, hyper)
        updates, opt_state = tx.update(
            grads, state.opt_state, state.params, value=loss, accuracy=accuracy
        )
        new = _State(optax.apply_updates(state.params, updates), model_state, opt_state)
        # A finished configuration stays frozen while its bucket's longer runs go on.
        return jax.tree.map(lambda n, o: jnp.where(step < hyper.num_steps, n, o), new, state)

    def _evaluate(self, state: _State) -> dict[str, jax.Array]:
        """Test metrics of one configuration (vmapped by the caller)."""
        logits = self.model.apply(
            {"params": state.params, **state.model_state}, self.test_x, train=False
        )
        return {
            "test_accuracy": jnp.mean(jnp.argmax(logits, -1) == self.test_y),
            "test_loss": self.loss(logits, self.test_y),
            "l2": jnp.asarray(l2reg.current_l2(state.opt_state), jnp.float32),
            "weight_norm": optax.global_norm(state.params),
        }

    @functools.partial(jax.jit, static_argnums=(0, 1, 2))
    def chunk(self, kind: FixedL2 | AutoL2, num_steps: int, state, hyper, start, evaluated):
        """Steps start … start + num_steps − 1 of a bucket; metrics (num_steps, bucket) each.

        `evaluated` (num_steps,) bool: whether to evaluate after each of those steps.
        """
        train = jax.vmap(functools.partial(self._train_step, kind), in_axes=(0, 0, None))
        evaluate = jax.vmap(self._evaluate)
        bucket = hyper.l2.shape[0]
        skipped = {
            name: jnp.full((bucket,), jnp.nan, jnp.float32)
            for name in ("test_accuracy", "test_loss", "l2", "weight_norm")
        }

        def body(state, step_and_flag):
            step, evaluate_after = step_and_flag
            state = train(state, hyper, step)
            # The predicate is shared by all configurations, so this stays a real branch.
            metrics = jax.lax.cond(evaluate_after, evaluate, lambda _: skipped, state)
            return state, metrics

        return jax.lax.scan(body, state, (start + jnp.arange(num_steps), evaluated))
