"""Finite-width networks trained by full-batch gradient descent with L2, to compare with theory.

The network is `theory.relu_network` at a finite width (the same stax parameterization as the
kernel), trained on ``½·mean over the n·k entries of (f − y)²`` plus ``(l2/2)·‖θ‖²`` with
``optax.chain(l2reg.add_l2(l2), optax.sgd(lr))``. Its output at initialization is made exactly
zero, as in the theory (``f₀ = 0``), with the antisymmetric pair
``f(x) = (g(θ_a, x) − g(θ_b, x))/√2``, ``θ_b = θ_a`` at initialization: the pair's tangent
kernel at initialization is that of ``g``, and its output is still homogeneous of degree
``depth``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import l2reg
from theory import checks, kernels


def train_finite_network(
    x_train: jax.typing.ArrayLike,
    y_train: jax.typing.ArrayLike,
    x_test: jax.typing.ArrayLike,
    *,
    depth: int,
    width: int,
    l2: float,
    lr: float,
    steps: np.ndarray,
    key: jax.Array,
    architecture: str = "dense",
    **network_options,
) -> tuple[jax.Array, jax.Array]:
    """Trains the zero-output pair of `theory.relu_network` and records its outputs.

    Args:
      x_train: (n, ...) training inputs, finite, in the layout of ``architecture`` (as for
        `theory.ntk`).
      y_train: (n, k) finite targets, as for `theory.l2_flow_mse`.
      x_test: (m, ...) test inputs of the shape of x_train but for m.
      depth: number of weight layers of the network.
      width: hidden width.
      l2: L2 coefficient λ of ``(λ/2)·‖θ‖²``, ≥ 0.
      lr: learning rate η of full-batch gradient descent, > 0.
      steps: (T,) non-decreasing integer steps at which the outputs are recorded, ≥ 0.
      key: PRNG key of the initialization.
      architecture: one of `theory.kernels.ARCHITECTURES`.
      **network_options: further options of `theory.relu_network` (``weight_std``,
        ``readout_std``).

    Returns:
      ``(f_train, f_test)`` of shapes (T, n, k) and (T, m, k): the network's outputs after
      each of ``steps`` gradient-descent steps.
    """
    checks.finite_array("steps", steps)
    steps = np.asarray(steps)  # NumPy keeps large step counts exact without 64-bit JAX
    if steps.ndim != 1 or steps.size == 0:
        raise ValueError(f"steps must be a non-empty 1-D array, got shape {steps.shape}")
    checks.first_bad_entry("steps", steps, steps < 0, "be ≥ 0")
    checks.first_bad_entry(
        "steps", steps, np.diff(steps, prepend=steps[0]) < 0, "be non-decreasing"
    )
    checks.first_bad_entry("steps", steps, steps != np.round(steps), "be whole numbers of steps")
    l2 = checks.number("l2", l2)
    lr = checks.number("lr", lr, strictly_positive=True)
    y_train = checks.targets(y_train)
    init_fn, apply_fn, _ = kernels.relu_network(
        depth,
        width=width,
        num_outputs=y_train.shape[1],
        architecture=architecture,
        **network_options,
    )
    x_train, x_test = kernels.check_inputs(architecture, x_train=x_train, x_test=x_test)
    if len(x_train) != len(y_train):
        raise ValueError(
            f"x_train must have n = {len(y_train)} rows to match y_train, got shape {x_train.shape}"
        )
    _, params = init_fn(key, x_train.shape)
    pair = (params, params)
    optimizer = optax.chain(l2reg.add_l2(l2), optax.sgd(lr))
    state = (pair, optimizer.init(pair))
    f_train, f_test = [], []
    done = 0
    for step in steps.astype(int):
        state = _advance(state, step - done, apply_fn, optimizer, x_train, y_train)
        done = step
        f_train.append(_pair_output(apply_fn, state[0], x_train))
        f_test.append(_pair_output(apply_fn, state[0], x_test))
    return jnp.stack(f_train), jnp.stack(f_test)


def _pair_output(apply_fn, pair, inputs):
    """Output of the antisymmetric pair, (batch, k)."""
    return (apply_fn(pair[0], inputs) - apply_fn(pair[1], inputs)) / jnp.sqrt(2.0)


@functools.partial(jax.jit, static_argnames=("apply_fn", "optimizer"))
def _advance(state, num_steps, apply_fn, optimizer, x_train, y_train):
    """``num_steps`` full-batch gradient-descent steps of the regularized MSE."""

    def loss_fn(pair):
        return 0.5 * jnp.mean((_pair_output(apply_fn, pair, x_train) - y_train) ** 2)

    def step(_, state):
        pair, optimizer_state = state
        grads = jax.grad(loss_fn)(pair)
        updates, optimizer_state = optimizer.update(grads, optimizer_state, pair)
        return optax.apply_updates(pair, updates), optimizer_state

    return jax.lax.fori_loop(0, num_steps, step, state)
