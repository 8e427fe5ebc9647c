"""`train.create_optimizer` against independent references: two updates on fixed parameters and
gradients, and the steps AutoL2 waits before it may decay λ.

The references follow the documented semantics (README, "placement"; the docstring of
`create_optimizer`): coupled L2 adds λθ to the gradient before the optimizer, as the gradient of
(λ/2)‖θ‖² in the loss; decoupled L2 is weight decay after the preconditioner, scaled by the
learning rate, as in AdamW (θ ← θ − η_t·(u_t + λθ)).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2reg
from experiments.configs import mlp_digits
from l2reg.training import recipe

LR = (0.1, 0.03)  # η of the first and the second update: a 'step' schedule, factor 0.3
L2 = 0.5  # large, so that where λθ enters shows well above float32 rounding
MOMENTUM = 0.9
ADAM = {"b1": 0.8, "b2": 0.9, "eps": 1e-3}  # not optax's defaults: they must come from the config


def _config(optimizer: str, l2_mode: str, l2_placement: str):
    config = mlp_digits.get_config()
    config.update(
        optimizer=optimizer,
        momentum=MOMENTUM,
        lr=LR[0],
        lr_schedule="step",
        steps=2,
        lr_step_boundaries=(0.5,),
        lr_step_factor=LR[1] / LR[0],
        l2_mode=l2_mode,
        l2=L2,
        l2_placement=l2_placement,
    )
    config.adam.update(ADAM)
    # No check within two updates: AutoL2 adds its initial λ, like fixed L2; so, to float32
    # rounding, does the anytime schedule, with a c so large that λ(1) ≥ λ(0)/(1 + 5e-7).
    config.autol2.update(check_every=100)
    config.anytime_c = 1e6
    return config


def _params_and_grads():
    keys = jax.random.split(jax.random.key(0), 4)
    params = {
        "kernel": jax.random.normal(keys[0], (3, 2)),
        "bias": jax.random.normal(keys[1], (2,)),
    }
    grads = [
        {"kernel": jax.random.normal(key, (3, 2)), "bias": jax.random.normal(key, (2,)) + 1.0}
        for key in keys[2:]
    ]
    return params, grads


def _two_updates(optimizer: optax.GradientTransformation, params, grads, *, coupled_l2: float):
    """Parameters after each of two updates of `optimizer`, fed g + coupled_l2·θ."""
    state, trajectory = optimizer.init(params), []
    for grad in grads:
        grad = jax.tree.map(lambda g, p: g + coupled_l2 * p, grad, params)
        updates, state = optimizer.update(grad, state, params, value=jnp.float32(1.0))
        params = optax.apply_updates(params, updates)
        trajectory.append(params)
    return trajectory


def _by_hand(optimizer: str, l2: float, coupled: bool, params, grads):
    """SGD and heavy-ball momentum (m ← μm + g, θ ← θ − η·m), written out in numpy."""
    mu = MOMENTUM if optimizer == "momentum" else 0.0
    theta = {name: np.asarray(value, np.float64) for name, value in params.items()}
    momentum = {name: np.zeros_like(value) for name, value in theta.items()}
    trajectory = []
    for eta, grad in zip(LR, grads, strict=True):
        for name in theta:
            g = np.asarray(grad[name], np.float64)
            decay = l2 * theta[name]
            momentum[name] = mu * momentum[name] + g + (decay if coupled else 0.0)
            theta[name] = theta[name] - eta * (momentum[name] + (0.0 if coupled else decay))
        trajectory.append(dict(theta))
    return trajectory


def _reference(optimizer: str, l2_mode: str, l2_placement: str, params, grads):
    l2 = 0.0 if l2_mode == "none" else L2
    coupled = l2_placement == "coupled"
    if optimizer in ("sgd", "momentum"):
        return _by_hand(optimizer, l2, coupled, params, grads)
    schedule = lambda count: jnp.where(count < 1, LR[0], LR[1])
    if coupled:
        return _two_updates(optax.adam(schedule, **ADAM), params, grads, coupled_l2=l2)
    adamw = optax.adamw(schedule, **ADAM, weight_decay=l2)
    return _two_updates(adamw, params, grads, coupled_l2=0.0)


@pytest.mark.parametrize("l2_placement", ["coupled", "decoupled"])
@pytest.mark.parametrize("l2_mode", ["none", "fixed", "autol2", "anytime"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_two_updates_match_the_reference_optimizer(optimizer, l2_mode, l2_placement):
    # Two updates, as coupled and decoupled momentum only part at the second (by η₁·μ·λ·θ₀);
    # with Adam they part at the first.
    config = _config(optimizer, l2_mode, l2_placement)
    tx = recipe.create_optimizer(config, recipe.Hyperparameters.of(config))
    params, grads = _params_and_grads()
    got = _two_updates(tx, params, grads, coupled_l2=0.0)
    expected = _reference(optimizer, l2_mode, l2_placement, params, grads)
    for step, (got_params, expected_params) in enumerate(zip(got, expected, strict=True)):
        for name in params:
            np.testing.assert_allclose(
                got_params[name],
                expected_params[name],
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{name} after update {step + 1}",
            )


def _l2_after_each_update(config, num_updates: int) -> list[float]:
    tx = recipe.create_optimizer(config, recipe.Hyperparameters.of(config))
    params = {"kernel": jnp.ones((2, 2))}
    zeros = jax.tree.map(jnp.zeros_like, params)
    update = jax.jit(lambda state: tx.update(zeros, state, params, value=jnp.float32(1.0))[1])
    state, l2 = tx.init(params), []
    for _ in range(num_updates):
        state = update(state)
        l2.append(float(l2reg.current_l2(state)))
    return l2


@pytest.mark.parametrize(
    ("optimizer", "l2_placement", "first_decayed"),
    [
        # Coupled L2 goes through momentum: η_eff = η/(1 − μ) = 0.1/0.1 = 1, so the cooldown
        # 0.55/(λ·η_eff) = 0.55/(0.1·1) = 5.5 updates: the first check after it is n = 6.
        ("momentum", "coupled", 6),
        # Decoupled decay is applied once per step at η: 0.55/(0.1·0.1) = 55 updates, n = 56.
        ("momentum", "decoupled", 56),
        # Plain SGD has no momentum to amplify η: n = 56 too.
        ("sgd", "coupled", 56),
    ],
)
def test_autol2_cooldown_runs_on_the_effective_learning_rate(
    optimizer, l2_placement, first_decayed
):
    config = _config(optimizer, "autol2", l2_placement)
    config.update(lr=0.1, lr_schedule="constant", l2=0.1)
    # A check every update, the loss constant: after the first check (a record) every check
    # stalls, so with patience 1 λ decays as soon as the cooldown allows (n ≥ 2).
    config.autol2.update(decay_factor=10.0, cooldown=0.55, patience=1, check_every=1, min_l2=0.0)
    l2 = _l2_after_each_update(config, num_updates=60)
    # A decay at check n takes effect from update n + 1: after n updates λ reads 0.01. The next
    # decay needs another 0.55/(0.01·η_eff) ≥ 55 updates, past the 60 run here.
    expected = [0.1] * (first_decayed - 1) + [0.01] * (60 - first_decayed + 1)
    np.testing.assert_allclose(l2, expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("optimizer", "l2_placement", "effective_lr"),
    [
        # Coupled L2 goes through momentum: the schedule's clock runs at η/(1 − μ) = 0.1/0.1.
        ("momentum", "coupled", 1.0),
        # Decoupled decay, and SGD, apply λ once per step at η.
        ("momentum", "decoupled", 0.1),
        ("sgd", "coupled", 0.1),
    ],
)
def test_anytime_l2_runs_on_the_effective_base_learning_rate(optimizer, l2_placement, effective_lr):
    # The 'step' schedule multiplies η by 0.3 from update 1 on; the anytime schedule keeps the
    # base η: its clock counts steps towards a budget, not η's decay.
    config = _config(optimizer, "anytime", l2_placement)
    config.update(lr=0.1, l2=0.5, anytime_c=2.0)
    expected = l2reg.anytime_l2(0.5, effective_lr, 2.0)
    l2 = _l2_after_each_update(config, num_updates=20)
    np.testing.assert_allclose(l2, [expected(k) for k in range(1, 21)], rtol=1e-6)
    # λ(t)·η_eff·(t + t0) = c, with t0 = c/(η_eff·λ(0)).
    t0 = 2.0 / (effective_lr * 0.5)
    np.testing.assert_allclose(
        np.array(l2) * effective_lr * (np.arange(1, 21) + t0), 2.0, rtol=1e-6
    )
