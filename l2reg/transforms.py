"""L2 regularization as optax gradient transformations: fixed, scheduled and AutoL2.

Both transforms add ``λ · params`` to the updates. Placed before the optimizer
(``optax.chain(autol2(l2_init, lr, momentum=μ), optax.sgd(lr, momentum=μ))``) this is the
gradient of ``(λ/2)·‖θ‖²`` added to the loss: coupled L2, as in the paper. Placed after the
preconditioner and before the learning-rate scaling
(``optax.chain(optax.scale_by_adam(), autol2(...), optax.scale_by_learning_rate(lr))``)
it is decoupled weight decay, as in AdamW.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2reg import checks

__all__ = [
    "AddL2State",
    "AutoL2State",
    "RecordTracker",
    "add_l2",
    "autol2",
    "current_l2",
    "validate_add_l2",
    "validate_autol2",
]

# Relative slack of the cooldown comparison: ties up to float32 rounding are not "more than".
_COOLDOWN_TIE_RTOL = 1e-5

ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]
MaskOrFn = Any | Callable[[optax.Params], Any] | None


class AddL2State(NamedTuple):
    """State of `add_l2`.

    Attributes:
      count: int32 scalar, number of updates applied so far.
      l2: scalar, the λ the next update will add (the schedule at ``count``).
    """

    count: jax.Array
    l2: jax.Array


class RecordTracker(NamedTuple):
    """Records of one measured quantity of `autol2` (the training loss, or the accuracy).

    Attributes:
      total: scalar of the state's float dtype, sum of the finite values passed since the last
        check (in the quantity's units).
      count: int32 scalar, how many finite values were passed since the last check.
      best: scalar of the state's float dtype, the best measurement so far: the lowest loss or
        the highest accuracy (+inf or −inf before the first).
      patience_count: int32 scalar, checks in a row whose measurement was not a record.
    """

    total: jax.Array
    count: jax.Array
    best: jax.Array
    patience_count: jax.Array


class AutoL2State(NamedTuple):
    """State of `autol2`: scalars only, so checkpoints and vmapped batches stay small.

    Attributes:
      count: int32 scalar, number of updates applied so far (the index t of the next one).
      l2: scalar of the state's float dtype (the params' widest, at least float32), the λ in
        force for the next update.
      last_decay: int32 scalar, step n of the last decay (0 before any).
      num_checks: int32 scalar, checks run so far.
      loss: the records of the training loss (``value``).
      accuracy: the records of the training accuracy (unchanged when none is passed).
      num_nonfinite: int32 scalar, non-finite ``value``/``accuracy`` inputs seen (left out
        of every measurement).
    """

    count: jax.Array
    l2: jax.Array
    last_decay: jax.Array
    num_checks: jax.Array
    loss: RecordTracker
    accuracy: RecordTracker
    num_nonfinite: jax.Array


def _is_real_dtype(dtype) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating))


def _check(name: str, value: Any, predicate: Callable[[np.ndarray], bool], allowed: str) -> None:
    """Raises a one-line ValueError unless ``value`` is a real scalar for which ``predicate`` holds.

    A traced value (the transform built inside ``jit``/``vmap``, e.g. by
    `optax.inject_hyperparams`) is known only by its shape and dtype, so only those are checked.
    """
    if isinstance(value, jax.core.Tracer):
        if value.ndim != 0 or not _is_real_dtype(value.dtype):
            shown = checks.describe_array(value)
            raise ValueError(f"{name} must be {allowed}, got a traced {shown}")
        return
    number = np.asarray(value)
    real_scalar = number.ndim == 0 and _is_real_dtype(number.dtype)
    if not (real_scalar and predicate(number.astype(np.float64))):
        shown = repr(value) if number.ndim == 0 else checks.describe_array(number)
        raise ValueError(f"{name} must be {allowed}, got {shown}")


def _check_count(name: str, value: Any) -> None:
    """Raises a one-line ValueError unless ``value`` is an integer ≥ 1 that fits int32.

    A traced value is checked only for being a real scalar, as in `_check`; a concrete 0-d
    integer array (as `optax.inject_hyperparams` passes) counts as an integer.
    """
    allowed = f"an integer in [1, {checks.INT32_MAX}]"
    _check(name, value, lambda x: True, allowed)
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, np.ndarray | jax.Array) and jnp.issubdtype(value.dtype, jnp.integer):
        value = value.item()
    checks.integer(name, value, maximum=checks.INT32_MAX)


def _finite_at_least_zero(x: np.ndarray) -> bool:
    return bool(np.isfinite(x) and x >= 0)


def validate_add_l2(l2: ScalarOrSchedule) -> None:
    """Raises the one-line ValueError that `add_l2` raises for a bad ``l2``.

    A schedule is checked through its value at step 0. A traced ``l2`` (or value at step 0)
    is checked only for being a real scalar; its value is the caller's to check.
    """
    if callable(l2):
        _check("l2 at step 0", l2(0), _finite_at_least_zero, "a finite scalar ≥ 0")
    else:
        _check("l2", l2, _finite_at_least_zero, "a finite scalar ≥ 0 (or a schedule)")


def validate_autol2(
    l2_init: float | jax.Array,
    learning_rate: ScalarOrSchedule,
    *,
    decay_factor: float,
    cooldown: float,
    patience: int,
    check_every: int,
    min_l2: float,
    momentum: float = 0.0,
) -> None:
    """Raises the one-line ValueError that `autol2` raises for its first bad argument.

    Concrete values are checked against the ranges documented in `autol2`; traced ones only
    for being real scalars. A caller that traces them (as `l2reg.training.sweep` does, so that one
    compiled program serves many values) calls this on the concrete values first.
    """
    _check("l2_init", l2_init, _finite_at_least_zero, "a finite scalar ≥ 0")
    # η = 0 stops the cooldown clock: a warmup starts there, and `optax.inject_hyperparams`
    # passes a schedule's value at each step as a constant.
    if callable(learning_rate):
        _check("learning_rate at step 0", learning_rate(0), _finite_at_least_zero, "finite and ≥ 0")
    else:
        _check(
            "learning_rate",
            learning_rate,
            _finite_at_least_zero,
            "a finite scalar ≥ 0 (or a schedule)",
        )
    _check("momentum", momentum, lambda x: bool(0 <= x < 1), "in [0, 1)")
    _check("decay_factor", decay_factor, lambda x: bool(np.isfinite(x) and x > 1), "finite and > 1")
    _check("cooldown", cooldown, _finite_at_least_zero, "finite and ≥ 0")
    _check_count("patience", patience)
    _check_count("check_every", check_every)
    _check("min_l2", min_l2, _finite_at_least_zero, "a finite scalar ≥ 0")
    if not isinstance(l2_init, jax.core.Tracer):
        _check(
            "min_l2", min_l2, lambda x: bool(x <= np.asarray(l2_init)), f"≤ l2_init = {l2_init!r}"
        )


def _state_dtype(params: optax.Params) -> jnp.dtype:
    """The widest floating dtype of the params, at least float32.

    Loss sums and λ need float32 even when parameters are half precision; float64
    parameters (with ``jax_enable_x64``) get a float64 state.
    """
    dtypes = [x.dtype for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.result_type(jnp.float32, *dtypes)


def _add_scaled_params(updates: optax.Updates, params: optax.Params, l2) -> optax.Updates:
    """``updates + l2 · params``, leaf by leaf, in each leaf's own dtype.

    The updates of integer or boolean parameters (float0 updates, from
    ``jax.grad(..., allow_int=True)``, included) are returned unchanged: L2 on them is
    meaningless, and λ cast to an integer would be truncated.
    """
    if params is None:
        raise ValueError(
            "the L2 transforms need the parameters: call update(updates, state, params)"
        )

    def add(update, param):
        if update is None or not (
            jnp.issubdtype(param.dtype, jnp.inexact) and jnp.issubdtype(update.dtype, jnp.inexact)
        ):
            return update
        return update + jnp.asarray(l2, param.dtype) * param

    is_leaf = lambda x: x is None
    if jax.tree.structure(updates, is_leaf=is_leaf) != jax.tree.structure(params, is_leaf=is_leaf):
        raise ValueError(
            "updates must have the structure of params (one gradient per parameter), got "
            f"{jax.tree.structure(updates)} for params {jax.tree.structure(params)}"
        )
    return jax.tree.map(add, updates, params, is_leaf=is_leaf)


def _maybe_masked(transform, mask: MaskOrFn):
    return transform if mask is None else optax.masked(transform, mask)


def add_l2(l2: ScalarOrSchedule, mask: MaskOrFn = None) -> optax.GradientTransformation:
    """Adds ``l2 · params`` to the updates: a fixed or scheduled L2 coefficient.

    For a constant ``l2`` this is numerically identical to
    ``optax.add_decayed_weights(l2, mask)``; unlike it, the state records the λ in
    force, so `current_l2` can report it for logging.

    Args:
      l2: the L2 coefficient λ of ``(λ/2)·‖θ‖²`` (dimensionless per step when the
        transform precedes the learning rate), a float ≥ 0 or an optax schedule
        mapping the update count to λ (checked at step 0: a finite scalar ≥ 0). A traced
        value is checked only for being a real scalar (see `validate_add_l2`).
      mask: as in `optax.masked`: a pytree of booleans (or a function of the params
        returning one) selecting the leaves that get L2, e.g. to skip biases. Integer and
        boolean leaves never get L2: their updates pass through unchanged.

    Returns:
      An `optax.GradientTransformation` whose ``update`` needs ``params``.
    """
    validate_add_l2(l2)
    schedule = l2 if callable(l2) else (lambda count: l2)

    def init_fn(params):
        return AddL2State(
            count=jnp.zeros([], jnp.int32),
            l2=jnp.asarray(schedule(0), _state_dtype(params)),
        )

    def update_fn(updates, state, params=None):
        # A constant keeps its Python float so results match add_decayed_weights bit for bit.
        l2_now = schedule(state.count)
        count = optax.safe_increment(state.count)
        next_state = AddL2State(count=count, l2=jnp.asarray(schedule(count), state.l2.dtype))
        return _add_scaled_params(updates, params, l2_now), next_state

    return _maybe_masked(optax.GradientTransformation(init_fn, update_fn), mask)


def _init_tracker(dtype: jnp.dtype, worst: float) -> RecordTracker:
    zero_count = jnp.zeros([], jnp.int32)
    return RecordTracker(
        total=jnp.zeros([], dtype),
        count=zero_count,
        best=jnp.full([], worst, dtype),
        patience_count=zero_count,
    )


def _add_observation(
    tracker: RecordTracker, observation: Any, name: str
) -> tuple[RecordTracker, jax.Array]:
    """Adds one observation to the running sum if finite; also returns 1 if it was not, else 0."""
    observation = jnp.asarray(observation, tracker.total.dtype)
    if observation.ndim != 0:
        raise ValueError(f"autol2's update takes a scalar {name}, got shape {observation.shape}")
    finite = jnp.isfinite(observation)
    tracker = tracker._replace(
        total=tracker.total + jnp.where(finite, observation, 0),
        count=tracker.count + finite.astype(jnp.int32),
    )
    return tracker, (~finite).astype(jnp.int32)


def _run_check(
    tracker: RecordTracker,
    is_check: jax.Array,
    is_better: Callable[[jax.Array, jax.Array], jax.Array],
    empty_is_stale: bool,
) -> RecordTracker:
    """The tracker after step n: at a check, measures, updates the record and the patience count.

    The measurement is the mean of the finite values since the last check. A check with none is
    not a record; it counts as a check without a record if ``empty_is_stale`` and changes nothing
    otherwise. Off a check, the tracker is returned unchanged.
    """
    measured = tracker.count > 0
    # Comparisons with NaN are False: an empty measurement is never a record.
    measurement = jnp.where(measured, tracker.total / jnp.maximum(tracker.count, 1), jnp.nan)
    is_record = is_better(measurement, tracker.best)
    counts = is_check & (measured | empty_is_stale)
    return RecordTracker(
        total=jnp.where(is_check, jnp.zeros_like(tracker.total), tracker.total),
        count=jnp.where(is_check, 0, tracker.count),
        best=jnp.where(is_check & is_record, measurement, tracker.best),
        patience_count=jnp.where(
            counts, jnp.where(is_record, 0, tracker.patience_count + 1), tracker.patience_count
        ),
    )


def autol2(
    l2_init: float | jax.Array,
    learning_rate: ScalarOrSchedule,
    *,
    momentum: float = 0.0,
    decay_factor: float = 10.0,
    cooldown: float = 0.1,
    patience: int = 2,
    check_every: int = 10,
    min_l2: float = 0.0,
    mask: MaskOrFn = None,
) -> optax.GradientTransformationExtraArgs:
    """AutoL2: adds ``λ · params`` and divides λ when training stops improving.

    Lewkowycz & Gur-Ari (2020) observe that a large λ reaches its best accuracy
    fast (after ~1/(λη) steps) while a small one reaches a better one. AutoL2
    starts large and decays λ whenever the training loss (or accuracy) stalls.

    Rule, with updates numbered t = 0, 1, 2, …: update t adds ``λ · params`` with
    λ as it stood before it, then records ``value`` (and ``accuracy``, if passed). When
    ``t + 1`` is a multiple of ``check_every``, a check runs at ``n = t + 1``:

    - its loss measurement is the mean of the finite values recorded since the
      previous check (a record if lower than every earlier measurement; with no
      finite value it is not a record, and counts as a check without one);
    - its accuracy measurement is the mean of the finite accuracies passed since the
      previous check (a record if higher than every earlier one); ``accuracy`` may be
      passed on every update, on some (e.g. only where it is computed) or on none: a
      check with no accuracy since the previous one changes nothing for the accuracy
      (it is not a record and does not count towards its patience);
    - λ ← min(λ, max(λ / decay_factor, min_l2)) (never raised) when at least
      ``patience + 1`` checks have run, the last ``patience`` loss measurements were not
      records (or the last ``patience`` accuracy measurements were not), and
      ``n − last_decay > cooldown / (λ · η_t/(1 − momentum))`` with η_t =
      ``learning_rate(t)`` (a tie within 1e-5 relative counts as not more than; η_t = 0
      makes the cooldown infinite, except that ``cooldown = 0`` is no cooldown at any η).
      ``last_decay`` starts at 0 and becomes n at a decay,
      which takes effect from update t + 1. λ = 0 never decays.

    Differences from `optax.contrib.reduce_on_plateau`: records keep being
    tracked during the cooldown and nothing is reset at a decay; the cooldown is
    measured in the paper's natural time 1/(λη), not in steps; and the scaled
    quantity is the L2 coefficient, not the update.

    Under wrappers: `optax.MultiSteps` calls this update once per optimizer step, with the
    ``value`` of the micro-batch that completes it (the others' are not recorded), so
    ``check_every`` and the cooldown count optimizer steps. The clock sees only
    ``learning_rate``: a learning rate scaled later in the chain (by
    `optax.contrib.reduce_on_plateau`, or injected into another transform by
    `optax.inject_hyperparams`) does not reach it; inject it into this transform too
    (``optax.inject_hyperparams(autol2)(..., learning_rate=schedule)``) or pass the same
    schedule.

    The authors' released rule (their loss adds ``L2·Σθ²``, λ = 2·L2, cooldown
    ``0.1/L2`` steps) is ``autol2(2 * L2, learning_rate=1.0, cooldown=0.2)``.

    Args:
      l2_init: initial λ, ≥ 0 (may be traced, e.g. vmapped over a batch of runs), in the
        units of ``(λ/2)·‖θ‖²`` added to the loss.
      learning_rate: η_t, the optimizer's learning rate per update, used only for the
        cooldown clock: a float ≥ 0 or an optax schedule of the update count with values
        ≥ 0. η_t = 0 (the start of a warmup) stops the clock: no decay happens at a check
        where η_t = 0 unless ``cooldown = 0``.
      momentum: μ of the optimizer's heavy-ball momentum, in [0, 1): the clock runs at the
        effective learning rate η_t/(1 − μ), the paper's physical time. Leave it 0 for a
        momentum-free optimizer and for decoupled placement (weight decay after the
        preconditioner does not pass through the momentum).
      decay_factor: λ is divided by this at a decay, > 1.
      cooldown: minimum time between decays, in units of 1/(λη), ≥ 0.
      patience: checks in a row without a record before a decay, an integer ≥ 1.
      check_every: updates between checks, an integer ≥ 1.
      min_l2: floor of λ, in [0, l2_init].
      mask: as in `optax.masked`: which parameter leaves get L2. Integer and boolean
        leaves never get L2: their updates pass through unchanged.

    The arguments are checked when the transform is built, with a one-line ValueError. A
    traced argument (built inside ``jit``/``vmap``, e.g. by `optax.inject_hyperparams`) is
    checked only for being a real scalar: its value is unknown until the program runs, so
    it is the caller's to validate beforehand with `validate_autol2` on the concrete values.

    Returns:
      An `optax.GradientTransformationExtraArgs`. Its
      ``update(updates, state, params, *, value, accuracy=None)`` takes the
      training loss without the L2 term as ``value`` (a scalar, on every update) and
      optionally the training accuracy (a scalar fraction).
    """
    validate_autol2(
        l2_init,
        learning_rate,
        momentum=momentum,
        decay_factor=decay_factor,
        cooldown=cooldown,
        patience=patience,
        check_every=check_every,
        min_l2=min_l2,
    )
    lr_schedule = learning_rate if callable(learning_rate) else (lambda count: learning_rate)

    def init_fn(params):
        dtype = _state_dtype(params)
        zero_count = jnp.zeros([], jnp.int32)
        return AutoL2State(
            count=zero_count,
            l2=jnp.asarray(l2_init, dtype),
            last_decay=zero_count,
            num_checks=zero_count,
            loss=_init_tracker(dtype, jnp.inf),
            accuracy=_init_tracker(dtype, -jnp.inf),
            num_nonfinite=zero_count,
        )

    def update_fn(updates, state, params=None, *, value=None, accuracy=None, **extra_args):
        del extra_args  # Other transforms' extra arguments, forwarded by optax.chain.
        if value is None:
            raise TypeError(
                "autol2's update needs value=<training loss without the L2 term>, got None "
                "(flax's TrainState.apply_gradients does not pass it: use l2reg.TrainState "
                "and apply_gradients(grads=grads, value=loss))"
            )
        updates = _add_scaled_params(updates, params, state.l2)
        dtype = state.l2.dtype

        loss, loss_nonfinite = _add_observation(state.loss, value, "value")
        num_nonfinite = state.num_nonfinite + loss_nonfinite
        accuracy_tracker = state.accuracy
        if accuracy is not None:
            accuracy_tracker, accuracy_nonfinite = _add_observation(
                accuracy_tracker, accuracy, "accuracy"
            )
            num_nonfinite = num_nonfinite + accuracy_nonfinite

        n = state.count + 1
        is_check = n % check_every == 0
        # All losses non-finite is a stall (training diverged); no accuracy is no news.
        loss = _run_check(loss, is_check, jnp.less, empty_is_stale=True)
        accuracy_tracker = _run_check(accuracy_tracker, is_check, jnp.greater, empty_is_stale=False)
        stalled = (loss.patience_count >= patience) | (accuracy_tracker.patience_count >= patience)

        num_checks = state.num_checks + is_check.astype(jnp.int32)
        eta = jnp.asarray(lr_schedule(state.count), dtype) / (1 - jnp.asarray(momentum, dtype))
        # With λ = 0 the cooldown is infinite: a zero L2 never decays. A tie within
        # float rounding of λ counts as not yet cooled down, so that jit (which may
        # turn λ/decay_factor into a multiplication) and eager runs decay at one step.
        # A zero cooldown is none even at η = 0, where the quotient is 0/0.
        cooldown_steps = cooldown / (state.l2 * eta) * (1 + _COOLDOWN_TIE_RTOL)
        cooled_down = ((n - state.last_decay).astype(dtype) > cooldown_steps) | (cooldown == 0)
        decay = is_check & (num_checks >= patience + 1) & stalled & cooled_down & (state.l2 > 0)
        # min(λ, ·): a traced l2_init below min_l2 (unchecked) must not be raised to it.
        decayed_l2 = jnp.minimum(state.l2, jnp.maximum(state.l2 / decay_factor, min_l2))

        new_state = AutoL2State(
            count=optax.safe_increment(state.count),
            l2=jnp.where(decay, decayed_l2, state.l2).astype(dtype),
            last_decay=jnp.where(decay, n, state.last_decay),
            num_checks=num_checks,
            loss=loss,
            accuracy=accuracy_tracker,
            num_nonfinite=num_nonfinite,
        )
        return updates, new_state

    transform = optax.GradientTransformationExtraArgs(init_fn, update_fn)
    return _maybe_masked(transform, mask)


def current_l2(opt_state: optax.OptState) -> jax.Array:
    """The λ in force for the next update, found anywhere inside an optimizer state.

    Looks through any nesting of `optax.chain`, `optax.named_chain`, `optax.masked`,
    `optax.inject_hyperparams`, `optax.MultiSteps` and the like for the state of
    exactly one `add_l2` or `autol2`, also where its leaves are wrapped in pytree nodes
    of their own (``flax.nnx.Optimizer.opt_state`` holds them as ``nnx.OptArray``).

    Args:
      opt_state: an optimizer state (a pytree).

    Returns:
      λ, a plain `jax.Array` scalar (or an array with the batch shape of a vmapped state).

    Raises:
      ValueError: if the state holds no l2reg transform, or more than one.
    """
    is_l2_state = lambda node: isinstance(node, AddL2State | AutoL2State)
    found = [node for node in jax.tree.leaves(opt_state, is_leaf=is_l2_state) if is_l2_state(node)]
    if len(found) != 1:
        raise ValueError(
            f"current_l2 needs exactly one add_l2/autol2 state in the optimizer state, "
            f"found {len(found)}"
        )
    # A wrapper node (an nnx variable) flattens to the array it holds; an array to itself.
    (l2,) = jax.tree.leaves(found[0].l2)
    return l2
