"""Shared fixtures of the theory tests: 64-bit floats and a small digits kernel."""

import jax
import pytest

import theory
from theory import problems


@pytest.fixture(autouse=True)
def x64():
    """Runs each theory test with 64-bit floats, as the module's docstring advises."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def digits_kernels():
    """Depth-3 ReLU NTK on 300 digits: (k_train_train, k_test_train, y_train, test_labels)."""
    with jax.enable_x64(True):
        problem = problems.load_flat("digits", num_train=300)
        return (
            theory.ntk(problem.x_train, depth=3),
            theory.ntk(problem.x_test, problem.x_train, depth=3),
            problem.y_train,
            problem.test_labels,
        )
