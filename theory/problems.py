"""Small classification problems as flat feature vectors with one-hot targets, for kernels."""

from typing import NamedTuple

import numpy as np

from l2reg import data


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
      num_train: training examples kept, ≥ 1.
      num_test: test examples kept (all when None).
    """
    if num_train < 1 or (num_test is not None and num_test < 1):
        raise ValueError(f"num_train and num_test must be ≥ 1, got {num_train!r}, {num_test!r}")
    dataset = data.load(name)

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
    """Fraction of correct argmax predictions over the second-to-last axis' examples."""
    return np.mean(np.argmax(outputs, axis=-1) == labels, axis=-1)


def mse_loss(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """½·mean over test examples and classes of (f − y)², per time."""
    return 0.5 * np.mean((outputs - targets) ** 2, axis=(-2, -1))


def curves(predict, steps, problem):
    """(test accuracy, test loss) at ``steps`` of a predictor of `theory.dynamics`."""
    f_test = np.asarray(predict(steps)[1])
    return accuracy(f_test, problem.test_labels), mse_loss(f_test, problem.y_test)
