"""Small classification problems as flat feature vectors with one-hot targets, for kernels."""

from typing import NamedTuple

import numpy as np

from l2reg import data
from theory import checks


class Problem(NamedTuple):
    """A data set as arrays: ``x_*`` (num, features) float64, ``y_train`` one-hot (n, k)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    test_labels: np.ndarray

    @property
    def y_test(self) -> np.ndarray:
        """(m, k) one-hot test targets."""
        return np.eye(self.y_train.shape[1])[self.test_labels]


def load_flat(name: str, *, num_train: int, num_test: int | None = None) -> Problem:
    """The first ``num_train`` training and ``num_test`` test examples of `l2reg.data.load`.

    Images are normalized by the data set's ``preprocess`` and flattened.

    Args:
      name: a data set of `l2reg.data.load`, e.g. ``"digits"`` or ``"mnist1d"``.
      num_train: training examples kept, from 1 to the size of the training split.
      num_test: test examples kept, from 1 to the size of the test split (all when None).
    """
    checks.integer("num_train", num_train)
    if num_test is not None:
        checks.integer("num_test", num_test)
    dataset = data.load(name)
    for split, requested, available in (
        ("train", num_train, len(dataset.train.labels)),
        ("test", num_test, len(dataset.test.labels)),
    ):
        if requested is not None and requested > available:
            raise ValueError(
                f"num_{split} must be ≤ {available}, the {split} examples of {name!r}, "
                f"got {requested}"
            )

    def features(images):
        return np.asarray(dataset.preprocess(images), np.float64).reshape(len(images), -1)

    test = slice(None, num_test)
    return Problem(
        features(dataset.train.images[:num_train]),
        np.eye(dataset.num_classes)[np.asarray(dataset.train.labels[:num_train])],
        features(dataset.test.images[test]),
        np.asarray(dataset.test.labels[test]),
    )


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Fraction of correct argmax predictions over the second-to-last axis' examples.

    Args:
      outputs: (..., m, k) outputs, e.g. (T, m, k) at T times.
      labels: (m,) integer labels.

    Returns:
      (...) accuracies.
    """
    if np.shape(labels) != np.shape(outputs)[-2:-1]:
        raise ValueError(
            f"labels must have shape (m,) = {np.shape(outputs)[-2:-1]} to match outputs "
            f"(..., m, k), got shape {np.shape(labels)}"
        )
    return np.mean(np.argmax(outputs, axis=-1) == labels, axis=-1)


def mse_loss(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """½·mean over test examples and classes of (f − y)², per time.

    Args:
      outputs: (..., m, k) outputs, e.g. (T, m, k) at T times.
      targets: (m, k) targets.

    Returns:
      (...) losses.
    """
    if np.shape(targets) != np.shape(outputs)[-2:]:
        raise ValueError(
            f"targets must have shape (m, k) = {np.shape(outputs)[-2:]} to match outputs "
            f"(..., m, k), got shape {np.shape(targets)}"
        )
    return 0.5 * np.mean((outputs - targets) ** 2, axis=(-2, -1))


def curves(predict, steps, problem):
    """(test accuracy, test loss) at ``steps`` of a predictor of `theory.dynamics`."""
    f_test = np.asarray(predict(steps)[1])
    return accuracy(f_test, problem.test_labels), mse_loss(f_test, problem.y_test)
