"""Lanczos on Hessian-vector products."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import theory


def test_lanczos_finds_the_extreme_eigenvalues_of_a_symmetric_matrix():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(60, 60))
    matrix = matrix + matrix.T
    alphas, betas = theory.lanczos_tridiagonal(
        lambda v: matrix @ v, jnp.asarray(rng.normal(size=60)), 60
    )
    ritz = jax.scipy.linalg.eigh_tridiagonal(alphas, betas, eigvals_only=True)
    np.testing.assert_allclose(np.sort(ritz), np.linalg.eigvalsh(matrix), atol=1e-8)


def test_exhausted_krylov_space_adds_no_spurious_eigenvalue():
    # Two distinct eigenvalues: the Krylov space has dimension 2, far fewer than 20 iterations.
    spectrum = jnp.concatenate([jnp.full(50, 3.0), jnp.full(50, 5.0)])
    min_eig = theory.hessian_min_eig(
        lambda w: 0.5 * jnp.sum(spectrum * w**2), jnp.ones(100), num_iterations=20
    )
    np.testing.assert_allclose(min_eig, 3.0, rtol=1e-10)


@pytest.mark.slow
def test_hessian_min_eig_matches_the_dense_hessian_of_a_network():
    init_fn, apply_fn, _ = theory.relu_network(2, width=16)
    x, y = (
        np.random.default_rng(0).normal(size=(6, 3)),
        np.random.default_rng(1).normal(size=(6, 1)),
    )
    _, params = init_fn(jax.random.key(0), x.shape)

    def loss_fn(p):
        return 0.5 * jnp.mean((apply_fn(p, x) - y) ** 2) + 0.5e-2 * optax.tree.norm(p, squared=True)

    flat, unravel = ravel_pytree(params)
    dense = jax.hessian(lambda f: loss_fn(unravel(f)))(flat)
    min_eig = theory.hessian_min_eig(loss_fn, params, num_iterations=flat.size)
    np.testing.assert_allclose(min_eig, np.linalg.eigvalsh(dense)[0], atol=1e-9)


def test_min_eig_is_l2_at_the_minimum_of_an_overparameterized_model():
    # A model linear in its 200 parameters fitted to 20 points: L is flat in 180 directions,
    # and the L2 term curves them by exactly l2.
    rng = np.random.default_rng(0)
    features, targets, l2 = rng.normal(size=(20, 200)), rng.normal(size=20), 1e-3

    def loss_fn(weights):
        return 0.5 * jnp.mean((features @ weights - targets) ** 2) + 0.5 * l2 * weights @ weights

    minimum = np.linalg.solve(
        features.T @ features / 20 + l2 * np.eye(200), features.T @ targets / 20
    )
    min_eig = theory.hessian_min_eig(loss_fn, jnp.asarray(minimum), num_iterations=40)
    np.testing.assert_allclose(min_eig, l2, rtol=1e-6)


def test_numpy_integer_iterations_are_accepted():
    min_eig = theory.hessian_min_eig(
        lambda w: jnp.sum(w**2), jnp.ones(3), num_iterations=np.int64(3)
    )
    np.testing.assert_allclose(min_eig, 2.0, rtol=1e-10)


@pytest.mark.parametrize(
    "params, num_iterations, message",
    [
        (jnp.ones(3), 0, "num_iterations must be an integer ≥ 1, got 0"),
        (jnp.ones(3), 2.0, "num_iterations must be an integer ≥ 1, got 2.0"),
        (jnp.ones(3, int), 2, "params must be floating point, got dtype int"),
        (
            jnp.array([1.0, jnp.nan]),
            2,
            "params (flattened) must be finite, got nan at index (1,)",
        ),
    ],
)
def test_bad_hessian_arguments_raise_one_line_errors(params, num_iterations, message):
    with pytest.raises(ValueError) as error:
        theory.hessian_min_eig(lambda w: jnp.sum(w**2), params, num_iterations=num_iterations)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "start, num_iterations, message",
    [
        (jnp.ones(3), 0, "num_iterations must be an integer in [1, 3], got 0"),
        (jnp.ones(3), 4, "num_iterations must be an integer in [1, 3], got 4"),
        (jnp.zeros(3), 2, "start must be nonzero, got a vector of zeros"),
        (jnp.array([1.0, jnp.inf]), 2, "start must be finite, got inf at index (1,)"),
        (jnp.ones((3, 1)), 2, "start must be a 1-D floating-point vector, got shape (3, 1)"),
        (jnp.ones(3, int), 2, "start must be a 1-D floating-point vector, got shape (3,) of int"),
    ],
)
def test_bad_lanczos_arguments_raise_one_line_errors(start, num_iterations, message):
    with pytest.raises(ValueError) as error:
        theory.lanczos_tridiagonal(lambda v: v, start, num_iterations)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
