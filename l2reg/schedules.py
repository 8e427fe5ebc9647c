"""L2 schedules built on the paper's relations, as optax schedules for `l2reg.add_l2`.

optimizer = optax.chain(
    l2reg.add_l2(l2reg.anytime_l2(l2_init=1e-2, lr=0.1 / (1 - 0.9), c=2.0)),
    optax.sgd(0.1, momentum=0.9),
)
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2reg import transforms

__all__ = ["anytime_l2"]


def _finite_positive(x: np.ndarray) -> bool:
    return bool(np.isfinite(x) and x > 0)


def anytime_l2(
    l2_init: float | jax.Array, lr: float | jax.Array, c: float | jax.Array
) -> optax.Schedule:
    """The "anytime" L2 schedule: at each step, the λ that is optimal for the steps run so far.

    Relation 3 calls λ_opt = c/(ηT) optimal for a budget of T steps (relation 1: the test
    accuracy peaks at t* = c/(λη)). This schedule follows it with T = t + t0:

        λ(t) = c / (lr · (t + t0)),  t0 = c / (lr · l2_init),
             = l2_init / (1 + l2_init · lr · t / c),

    so it starts at λ(0) = l2_init and decays as 1/t once t ≫ t0, keeping λ(t)·lr·(t + t0) = c:
    a run stopped at any step t has had the λ that relation 3 prescribes for a budget of
    t + t0 steps. Non-increasing in t.

    Args:
      l2_init: λ(0), in the units of ``(λ/2)·‖θ‖²`` added to the loss (dimensionless per step
        when `add_l2` precedes the learning rate), finite and > 0.
      lr: the effective learning rate η/(1 − μ) (η the optimizer's, μ its heavy-ball momentum
        when λθ goes through it: coupled L2 under momentum SGD; η alone otherwise), per step,
        finite and > 0. A constant: the schedule's clock counts steps.
      c: relation 1's constant t*·λ·lr, in the same effective-η units (dimensionless), finite
        and > 0.

    Any argument may be traced (e.g. vmapped over the members of a sweep); then only its shape
    and dtype are checked here, its value being the caller's to check beforehand, as for
    `l2reg.autol2`.

    Returns:
      An `optax.Schedule`: the update count t (in steps, an int) -> λ(t), a float32 scalar
      (float64 with ``jax_enable_x64``). Use it as ``l2reg.add_l2(anytime_l2(...))``;
      `l2reg.current_l2` then reports λ(t) after t updates.

    Raises:
      ValueError: a concrete argument that is not a finite scalar > 0 (one line naming it).
    """
    for name, value in (("l2_init", l2_init), ("lr", lr), ("c", c)):
        transforms._check(name, value, _finite_positive, "a finite scalar > 0")

    def schedule(count):
        steps = jnp.asarray(count, jnp.result_type(float))
        return l2_init / (1 + l2_init * lr * steps / c)

    return schedule
