"""Tests of the L2 schedules: `l2reg.anytime_l2`."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2reg

L2_INIT, LR, C = 0.05, 0.4, 2.0
T0 = C / (LR * L2_INIT)  # 100 steps


def closed_form(step):
    """λ(t) = c / (lr · (t + t0)), in float64."""
    return C / (LR * (np.asarray(step, np.float64) + T0))


def test_anytime_l2_is_relation_3_at_every_step():
    schedule = l2reg.anytime_l2(L2_INIT, LR, C)
    steps = np.array([0, 1, 10, 1000])
    values = np.array([schedule(step) for step in steps])
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, closed_form(steps), rtol=1e-6)
    np.testing.assert_allclose(values[0], L2_INIT, rtol=1e-7)
    # λ(t) is relation 3's λ_opt = c/(ηT) for the budget T = t + t0.
    np.testing.assert_allclose(values * LR * (steps + T0), C, rtol=1e-6)
    # Jitted with a traced step, and with traced arguments (a sweep's members), the same.
    np.testing.assert_allclose(jax.jit(schedule)(steps), values, rtol=1e-7)
    traced = jax.jit(lambda l2, lr, c, step: l2reg.anytime_l2(l2, lr, c)(step))
    np.testing.assert_allclose(traced(L2_INIT, LR, C, steps), values, rtol=1e-6)


def test_anytime_l2_never_increases():
    values = np.asarray(l2reg.anytime_l2(L2_INIT, LR, C)(jnp.arange(100_000)))
    assert np.all(np.diff(values) <= 0) and values[-1] < values[0] / 100


def test_current_l2_reports_the_schedule_after_each_update():
    schedule = l2reg.anytime_l2(L2_INIT, LR, C)
    optimizer = optax.chain(l2reg.add_l2(schedule), optax.sgd(LR))
    params = {"w": jnp.array([1.0, -2.0])}
    state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    grads = jax.tree.map(jnp.zeros_like, params)
    for k in range(1, 31):
        updates, state = update(grads, state, params)
        # Update k − 1 added λ(k − 1)·θ (the SGD step scales it by −η); λ(k) is next.
        np.testing.assert_allclose(-updates["w"][0], LR * schedule(k - 1), rtol=1e-6)
        # Jitted and eager, the same quotient to float32 rounding (XLA may fold l2_init·lr/c).
        np.testing.assert_allclose(l2reg.current_l2(state), schedule(k), rtol=1e-6)


@pytest.mark.parametrize("name", ["l2_init", "lr", "c"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_arguments_are_one_line_errors_naming_them(name, value):
    arguments = {"l2_init": L2_INIT, "lr": LR, "c": C, name: value}
    message = f"{name} must be a finite scalar > 0, got {value!r}"
    with pytest.raises(ValueError, match=rf"^{re.escape(message)}\Z"):
        l2reg.anytime_l2(**arguments)


def test_arrays_and_non_numbers_are_refused():
    with pytest.raises(
        ValueError, match=r"^c must be a finite scalar > 0, got float32\[2\] array$"
    ):
        l2reg.anytime_l2(L2_INIT, LR, np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"^lr must be a finite scalar > 0, got '0.1'$"):
        l2reg.anytime_l2(L2_INIT, "0.1", C)
