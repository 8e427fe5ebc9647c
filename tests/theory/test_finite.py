"""A finite network trained by gradient descent with L2 approaches the infinite-width theory."""

import jax
import numpy as np
import pytest

import theory
from theory import finite, problems


@pytest.mark.slow
def test_finite_network_tracks_theory_better_as_width_grows():
    x_train, y_train, x_test, _ = problems.load_flat("digits", num_train=64, num_test=128)
    depth, l2, lr = 2, 1e-2, 0.5
    steps = np.unique(np.geomspace(1, 4 / (l2 * lr), 12).astype(int))
    _, f_theory = theory.l2_flow_mse(
        theory.ntk(x_train, depth=depth),
        theory.ntk(x_test, x_train, depth=depth),
        y_train,
        l2=l2,
        degree=depth,
        lr=lr,
    )(steps)
    errors = []
    for width in (128, 512, 2048):
        _, f_network = finite.train_finite_network(
            x_train,
            y_train,
            x_test,
            depth=depth,
            width=width,
            l2=l2,
            lr=lr,
            steps=steps,
            key=jax.random.key(0),
        )
        distance = np.linalg.norm(f_network - f_theory, axis=(1, 2))
        errors.append(distance.max() / np.linalg.norm(f_theory, axis=(1, 2)).max())
    # Fluctuations around the infinite-width limit shrink as 1/sqrt(width): 4x over 16x width.
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.5 * errors[0], errors


def test_finite_network_output_starts_at_zero_and_rejects_bad_steps():
    x, y = np.ones((3, 4)), np.ones((3, 2))
    f_train, f_test = finite.train_finite_network(
        x, y, x, depth=2, width=8, l2=0.1, lr=0.1, steps=np.array([0, 2]), key=jax.random.key(0)
    )
    np.testing.assert_array_equal(f_train[0], 0.0)
    assert f_test.shape == (2, 3, 2) and np.abs(f_train[1]).max() > 0
    with pytest.raises(ValueError, match="steps"):
        finite.train_finite_network(
            x, y, x, depth=2, width=8, l2=0.1, lr=0.1, steps=np.array([3, 1]), key=jax.random.key(0)
        )
