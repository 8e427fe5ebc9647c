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


X, Y = np.ones((3, 4)), np.ones((3, 2))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"y_train": np.ones(3)}, "y_train must have shape (n, k) with n, k ≥ 1, got shape (3,)"),
        ({"y_train": np.ones((1, 2))}, "x_train must have n = 1 rows to match y_train"),
        ({"y_train": np.full((3, 2), np.inf)}, "y_train must be finite, got inf at index (0, 0)"),
        ({"x_train": np.full((3, 4), np.nan)}, "x_train must be finite, got nan at index (0, 0)"),
        ({"x_test": np.ones((5, 3))}, "x_test must have the input shape of x_train, (4,)"),
        (
            {"architecture": "conv"},
            "x_train must have shape (n, height, width, channels) for architecture 'conv'",
        ),
        ({"steps": np.array([0, np.inf])}, "steps must be finite, got inf at index (1,)"),
        ({"steps": np.r_[np.arange(300), -1]}, "steps must be ≥ 0, got -1 at index (300,)"),
        (
            {"steps": np.r_[np.arange(300), 5]},
            "steps must be non-decreasing, got 5 at index (300,)",
        ),
        (
            {"steps": np.r_[np.arange(300), 300.5]},
            "steps must be whole numbers of steps, got 300.5 at index (300,)",
        ),
        ({"steps": np.ones((2, 2))}, "steps must be a non-empty 1-D array, got shape (2, 2)"),
        ({"steps": np.array(["1"])}, "steps must hold real numbers"),
        ({"l2": "0.1"}, "l2 must be a finite number ≥ 0, got '0.1'"),
        ({"lr": True}, "lr must be a finite number > 0, got True"),
        ({"weight_std": 0.0}, "weight_std must be a finite number > 0, got 0.0"),
    ],
)
def test_bad_arguments_raise_one_line_errors_before_training(change, message, monkeypatch):
    monkeypatch.setattr(finite, "_advance", None)  # training would fail with a TypeError
    arguments = dict(
        x_train=X, y_train=Y, x_test=X, depth=2, width=8, l2=0.1, lr=0.1, steps=np.array([0, 2])
    )
    with pytest.raises(ValueError) as error:
        finite.train_finite_network(**{**arguments, **change}, key=jax.random.key(0))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
