"""What a run computes, read from its config: the model, the loss, η's schedule and the optimizer.

The one home of these definitions: the data-parallel trainer and the vmapped sweep both build
their steps from here. The numbers a sweep varies across its members (λ, η, the seed, the run's
length, AutoL2's numeric settings, the anytime schedule's c) come in as `Hyperparameters`, which
may be traced, so that one compiled program trains every member; everything else is read from
the config.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import l2reg
from l2reg import models

LOSSES = ("cross_entropy", "mse")
MSE_TARGETS = ("one_hot", "centered")
OPTIMIZERS = ("sgd", "momentum", "adam")
LR_SCHEDULES = ("constant", "cosine", "step")
L2_MODES = ("none", "fixed", "autol2", "anytime")
L2_PLACEMENTS = ("coupled", "decoupled")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


class Hyperparameters(NamedTuple):
    """The numbers of a run that a sweep may vary across members (each a scalar, or traced).

    Attributes:
      l2: λ (AutoL2's and the anytime schedule's initial λ).
      lr: η, the peak learning rate.
      seed: int32, the initialization, batch order and augmentation seed.
      steps: int32, the run's length in SGD steps (the cosine schedule decays over it).
      lr_boundaries: int32 (len(config.lr_step_boundaries),), the steps at which the 'step'
        schedule multiplies η by `lr_step_factor`.
      decay_factor, cooldown, min_l2: AutoL2's settings (unused without AutoL2).
      anytime_c: the anytime schedule's c (`l2reg.anytime_l2`; unused in other L2 modes).
    """

    l2: Any
    lr: Any
    seed: Any
    steps: Any
    lr_boundaries: Any
    decay_factor: Any
    cooldown: Any
    min_l2: Any
    anytime_c: Any

    @classmethod
    def of(cls, config: ml_collections.ConfigDict) -> "Hyperparameters":
        """The numbers of `config` as device arrays, each field in its dtype."""
        host = cls.on_host(config)
        return cls(
            *(jnp.asarray(value, dtype) for value, dtype in zip(host, _HYPER_DTYPES, strict=True))
        )

    @classmethod
    def stack(cls, hypers: "list[Hyperparameters]") -> "Hyperparameters":
        """Runs' numbers as device arrays with a leading run axis, each field in its dtype."""
        columns = zip(*hypers, strict=True)
        return cls(
            *(
                jnp.asarray(np.stack(values), dtype)
                for values, dtype in zip(columns, _HYPER_DTYPES, strict=True)
            )
        )

    @classmethod
    def on_host(cls, config: ml_collections.ConfigDict) -> "Hyperparameters":
        """The numbers of `config` (host scalars)."""
        return cls(
            l2=config.l2,
            lr=config.lr,
            seed=config.seed,
            steps=config.steps,
            lr_boundaries=np.asarray(lr_boundary_steps(config), np.int32),
            decay_factor=config.autol2.decay_factor,
            cooldown=config.autol2.cooldown,
            min_l2=config.autol2.min_l2,
            anytime_c=config.anytime_c,
        )


# The dtypes of the fields on device, in order: int32 step counts and seeds, float32 numbers.
_HYPER_DTYPES = (jnp.float32, jnp.float32, jnp.int32, jnp.int32, jnp.int32, *(jnp.float32,) * 4)


def lr_boundary_steps(config: ml_collections.ConfigDict) -> list[int]:
    """The steps at which the 'step' schedule multiplies η: each fraction of `steps`, rounded
    (on the host, in float64, so that no member of a sweep rounds differently)."""
    return [round(fraction * config.steps) for fraction in config.lr_step_boundaries]


def create_lr_schedule(config: ml_collections.ConfigDict, hyper: Hyperparameters):
    """η as a function of the step: constant, cosine decay to 0 over `hyper.steps`, or step
    decay multiplying η by `config.lr_step_factor` at each of `hyper.lr_boundaries`."""
    if config.lr_schedule == "constant":
        return optax.constant_schedule(hyper.lr)
    if config.lr_schedule == "cosine":
        # On the fraction of the run done, so that the run's length may be traced.
        unit_cosine = optax.cosine_decay_schedule(1.0, decay_steps=1)
        return lambda step: hyper.lr * unit_cosine(step / hyper.steps)
    boundaries = jnp.asarray(hyper.lr_boundaries, jnp.int32)
    factor = config.lr_step_factor
    return lambda step: hyper.lr * factor ** jnp.sum(step >= boundaries)


def effective_momentum(config: ml_collections.ConfigDict) -> float:
    """The momentum μ that λ goes through: L2 added to the gradient of momentum SGD decays the
    weights at η/(1−μ) per step (the paper's effective learning rate); decoupled decay, or
    another optimizer, applies it once, at η."""
    through_momentum = config.optimizer == "momentum" and config.l2_placement == "coupled"
    return config.momentum if through_momentum else 0.0


def create_optimizer(
    config: ml_collections.ConfigDict, hyper: Hyperparameters
) -> optax.GradientTransformationExtraArgs:
    """The optimizer of `config` with the numbers of `hyper`: preconditioner, L2 transform and
    learning rate, chained.

    Coupled placement puts the L2 step before the preconditioner (λθ joins the gradient, as the
    paper's L2 in the loss); decoupled puts it after (weight decay λη per step, as in AdamW).
    AutoL2's cooldown is measured in 1/(λη), and the anytime schedule λ(t) = c/(η(t + t0))
    computed, with the effective η/(1−μ) of `effective_momentum`; the anytime schedule takes
    the base η, also under an η schedule (its budget clock counts steps, not η's decay).
    """
    lr_schedule = create_lr_schedule(config, hyper)
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
        l2_step = [l2reg.add_l2(hyper.l2)]
    elif config.l2_mode == "anytime":
        effective_lr = hyper.lr / (1 - effective_momentum(config))
        l2_step = [l2reg.add_l2(l2reg.anytime_l2(hyper.l2, effective_lr, hyper.anytime_c))]
    else:
        l2_step = [
            l2reg.autol2(
                hyper.l2,
                lr_schedule,
                momentum=effective_momentum(config),
                decay_factor=hyper.decay_factor,
                cooldown=hyper.cooldown,
                patience=config.autol2.patience,
                check_every=config.autol2.check_every,
                min_l2=hyper.min_l2,
            )
        ]
    if config.l2_placement == "coupled":
        steps = [*l2_step, preconditioner]
    else:
        steps = [preconditioner, *l2_step]
    return optax.chain(*steps, optax.scale_by_learning_rate(lr_schedule))


def create_loss(config: ml_collections.ConfigDict) -> LossFn:
    """The per-example loss `(logits (batch, classes) float32, labels (batch,) int) -> (batch,)`.

    'cross_entropy' is the softmax cross-entropy. 'mse' is ½·Σ_classes (logits − y)² with
    targets y = one_hot (`mse_targets='one_hot'`) or one_hot − 1/classes ('centered': zero-mean
    targets, which a network whose outputs shrink toward 0, as under L2, approaches from the
    mean rather than from a bias toward every class).
    """
    if config.loss == "cross_entropy":
        return optax.softmax_cross_entropy_with_integer_labels
    centered = config.mse_targets == "centered"

    def mse(logits: jax.Array, labels: jax.Array) -> jax.Array:
        num_classes = logits.shape[-1]
        targets = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
        if centered:
            targets = targets - 1.0 / num_classes
        return 0.5 * jnp.sum(jnp.square(logits - targets), axis=-1)

    return mse


def model_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """`config.model_options` as keywords; the string 'none' stands for None (command-line
    overrides cannot set a field to None)."""
    return {
        key: None if isinstance(value, str) and value.lower() == "none" else value
        for key, value in config.model_options.to_dict().items()
    }


def create_model(config: ml_collections.ConfigDict, num_classes: int, axis_name: str | None):
    """The Flax module of `config`, its batch statistics averaged over `axis_name` (None: over
    the local batch only, as inside a vmapped sweep member)."""
    return models.create(
        config.model,
        num_classes=num_classes,
        dtype=DTYPES[config.dtype],
        axis_name=axis_name,
        **model_options(config),
    )
