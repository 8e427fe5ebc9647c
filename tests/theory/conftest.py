"""Shared fixtures of the theory tests: 64-bit floats and a small digits kernel."""

import jax
import numpy as np
import pytest

import theory
from l2reg import data


@pytest.fixture(autouse=True)
def x64():
    """Runs each theory test with 64-bit floats, as the module's docstring advises."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def digits_kernels():
    """Depth-3 ReLU NTK on 300 digits: (k_train_train, k_test_train, y_train, test_labels)."""
    with jax.enable_x64(True):
        dataset = data.load("digits")

        def features(split, size):
            images = split.images[:size]
            return np.asarray(dataset.preprocess(images), np.float64).reshape(len(images), -1)

        x_train, x_test = features(dataset.train, 300), features(dataset.test, 10_000)
        labels = np.asarray(dataset.train.labels[:300])
        return (
            theory.ntk(x_train, depth=3),
            theory.ntk(x_test, x_train, depth=3),
            np.eye(dataset.num_classes)[labels],
            np.asarray(dataset.test.labels),
        )
