"""Small real data sets that ship with Python packages and need no download."""

import random

import numpy as np

from l2reg.data.dataset import Dataset, Split, channel_stats

# load_digits: 1,797 images; a permutation with this seed puts the first DIGITS_TRAIN_SIZE
# in the training split and the remaining 297 in the test split.
DIGITS_SPLIT_SEED = 0
DIGITS_TRAIN_SIZE = 1500
# mnist1d's standard data set: 5,000 samples from seed 42, the first 4,000 for training.
MNIST1D_SEED = 42
MNIST1D_TEST_SEED = MNIST1D_SEED + 1


def _dataset(name: str, train: Split, test: Split, num_classes: int) -> Dataset:
    mean, std = channel_stats(train.images)
    return Dataset(
        name=name,
        num_classes=num_classes,
        input_shape=train.images.shape[1:],
        train=train,
        test=test,
        mean=mean,
        std=std,
    )


def digits() -> Dataset:
    """scikit-learn's handwritten digits: 8×8×1 uint8 images (values 0–16), 10 classes.

    1,500 training and 297 test images, split by a fixed permutation (DIGITS_SPLIT_SEED).
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = raw.images.astype(np.uint8)[..., None]
    labels = raw.target.astype(np.int32)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    train, test = order[:DIGITS_TRAIN_SIZE], order[DIGITS_TRAIN_SIZE:]
    return _dataset(
        "digits", Split(images[train], labels[train]), Split(images[test], labels[test]), 10
    )


def _make_mnist1d(num_samples: int, train_fraction: float, seed: int) -> dict:
    """Calls mnist1d's generator, restoring the global random states it reseeds."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_fraction, seed
    # make_dataset seeds the global generators of `random` and NumPy; leave them as found.
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        return make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002


def mnist1d(test_size: int | None = None) -> Dataset:
    """MNIST-1D (Greydanus, 2020): float32 signals of length 40, 10 classes.

    Training split: the standard 4,000 samples (seed 42). Test split: by default the standard
    1,000 samples generated with them; with `test_size` (a multiple of 10), that many samples
    generated independently from seed 43, as a less noisy test set (the 1,000-sample one moves
    by several points between training seeds).
    """
    if test_size is not None and (
        not isinstance(test_size, int) or test_size < 10 or test_size % 10
    ):
        raise ValueError(f"test_size={test_size!r} must be None or a positive multiple of 10")
    standard = _make_mnist1d(5000, 0.8, MNIST1D_SEED)
    train = Split(standard["x"].astype(np.float32), standard["y"].astype(np.int32))
    if test_size is None:
        test = Split(standard["x_test"].astype(np.float32), standard["y_test"].astype(np.int32))
    else:
        extra = _make_mnist1d(test_size, 0.0, MNIST1D_TEST_SEED)
        test = Split(extra["x_test"].astype(np.float32), extra["y_test"].astype(np.int32))
    return _dataset("mnist1d", train, test, 10)
