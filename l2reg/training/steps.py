"""The pure steps of a run: initialization, one training step, evaluation sums, the summary.

Each works on one run's state and is jittable. The trainer runs `train_step` inside `shard_map`
over its data axis (`axis_name`: gradients, losses and batch statistics averaged over devices);
the sweep vmaps it over the members of a sweep (`axis_name=None`). Both prepare a batch with
`prepare_batch` and build the optimizer and loss with `recipe`, so one config trains the same
run through either.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

import l2reg
from l2reg import data
from l2reg.training import recipe


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


class RunState(struct.PyTreeNode):
    """Everything a run needs to continue, arrays only: its numbers (`recipe.Hyperparameters`:
    λ, η, seed, length, AutoL2's settings, the anytime c), the step count, parameters,
    batch-norm statistics (an empty dict without batch norm), optimizer state (λ of AutoL2
    included) and the running training metrics. Saved whole in every checkpoint."""

    hyper: recipe.Hyperparameters
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: optax.OptState
    metrics: TrainMetrics


class RunKeys(NamedTuple):
    """The PRNG keys of a run, all derived from its seed."""

    init: jax.Array
    augment: jax.Array
    mixup: jax.Array

    @classmethod
    def of(cls, seed) -> "RunKeys":
        root = jax.random.key(seed)
        init, augment = jax.random.split(root)
        return cls(init, augment, jax.random.fold_in(root, 1))  # mixup: its own stream


def init_state(
    config, hyper: recipe.Hyperparameters, model: Any, input_shape: tuple[int, ...]
) -> RunState:
    """A run's state at step 0: the model initialized from the run's seed, the state of its
    optimizer (`recipe.create_optimizer(config, hyper)`)."""
    # lazy_init traces the forward pass for shapes only; it gives the same variables as init
    # while compiling much less (only the initializers).
    example = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    variables = model.lazy_init(RunKeys.of(hyper.seed).init, example, train=False)
    params = variables["params"]
    return RunState(
        hyper=hyper,
        step=jnp.int32(0),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=recipe.create_optimizer(config, hyper).init(params),
        metrics=TrainMetrics.zeros(),
    )


def prepare_batch(dataset: data.Dataset, config, state: RunState, images, labels):
    """Raw global batch of the state's step -> `(inputs, labels, mix)`: preprocessed, augmented when
    `config.augment`, mixed when `config.mixup_alpha` > 0 (`mix = (partner_labels, weight)`,
    else None). On the whole global batch, so the result does not depend on the device count.
    """
    keys, step = RunKeys.of(state.hyper.seed), state.step
    key = jax.random.fold_in(keys.augment, step) if config.augment else None
    images = dataset.preprocess(images, key=key)
    if config.mixup_alpha <= 0:
        return images, labels, None
    images, partner_labels, weight = data.mixup(
        jax.random.fold_in(keys.mixup, step), images, labels, config.mixup_alpha
    )
    return images, labels, (partner_labels, weight)


def _variables(state: RunState, params: Any) -> dict[str, Any]:
    if state.batch_stats:
        return {"params": params, "batch_stats": state.batch_stats}
    return {"params": params}


def _mean(value: Any, axis_name: str | None) -> Any:
    return value if axis_name is None else jax.lax.pmean(value, axis_name)


def train_step(
    state: RunState,
    images: jax.Array,
    labels: jax.Array,
    mix: tuple[jax.Array, jax.Array] | None,
    restart: jax.Array,
    *,
    config,
    apply_fn: Callable,
    loss_fn: recipe.LossFn,
    axis_name: str | None,
) -> RunState:
    """One optimizer step on this device's slice of the batch (all of it without `axis_name`).

    Args:
      state: the run's state (replicated over `axis_name`).
      images: float inputs, (batch / devices, *input_shape), from `prepare_batch`.
      labels: int labels, (batch / devices,).
      mix: with mixup, `(partner_labels, weight)` from `prepare_batch`: the loss and the
        accuracy are then weight · (those of `labels`) + (1 − weight) · (those of the partners).
      restart: bool scalar; the running training metrics restart at this step (the first after
        a report).
      config: the run's config: its optimizer is `recipe.create_optimizer(config, state.hyper)`.
      apply_fn: the model's `apply`.
      loss_fn: the per-example loss (`recipe.create_loss`).
      axis_name: the data-parallel axis (inside shard_map), or None.

    Returns:
      The state after one step (identical on every device).
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
        variables = _variables(state, params)
        if state.batch_stats:
            logits, updates = apply_fn(variables, images, train=True, mutable=["batch_stats"])
        else:
            logits, updates = apply_fn(variables, images, train=True), {}
        logits = logits.astype(jnp.float32)
        return mean_over(lambda target: loss_fn(logits, target)), (logits, updates)

    params = state.params
    if axis_name is not None:
        # Gradients of this device's loss alone, then averaged explicitly with pmean (the pmap
        # model). Without the cast, shard_map differentiates the replicated parameters through
        # an implicit broadcast whose transpose sums the per-device gradients.
        params = jax.lax.pcast(params, axis_name, to="varying")
    (batch_loss, (logits, updates)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    grads = _mean(grads, axis_name)
    batch_loss = _mean(batch_loss, axis_name)
    predictions = jnp.argmax(logits, -1)
    accuracy = _mean(mean_over(lambda target: predictions == target), axis_name)

    tx = recipe.create_optimizer(config, state.hyper)
    updates_tx, opt_state = tx.update(
        grads, state.opt_state, state.params, value=batch_loss, accuracy=accuracy
    )
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


def eval_sums(
    state: RunState,
    images: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    *,
    apply_fn: Callable,
    loss_fn: recipe.LossFn,
    axis_name: str | None,
) -> jax.Array:
    """Summed loss and number of correct predictions over this device's slice (all devices
    summed over `axis_name`); `weights` (0 or 1, per example) mask out a last batch's padding.

    Returns:
      float32 (2,): [Σ weight·loss, Σ weight·correct].
    """
    logits = apply_fn(_variables(state, state.params), images, train=False).astype(jnp.float32)
    correct = jnp.argmax(logits, -1) == labels
    sums = jnp.stack([jnp.sum(weights * loss_fn(logits, labels)), jnp.sum(weights * correct)])
    return sums if axis_name is None else jax.lax.psum(sums, axis_name)


def summary(state: RunState, config) -> dict[str, jax.Array]:
    """Scalars of the state for a metrics line: training means since the last report, λ in
    force, η of the last step, the parameters' L2 norm and the first non-finite step."""
    l2_mode, lr_schedule = config.l2_mode, recipe.create_lr_schedule(config, state.hyper)
    return {
        "train_loss": state.metrics.loss_sum / state.metrics.count,
        "train_accuracy": state.metrics.accuracy_sum / state.metrics.count,
        "l2": jnp.float32(0) if l2_mode == "none" else l2reg.current_l2(state.opt_state),
        "lr": lr_schedule(state.step - 1),
        "weight_norm": optax.tree.norm(state.params),
        "nonfinite_step": state.metrics.nonfinite_step,
    }
