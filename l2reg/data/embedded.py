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


def _raw_mnist1d(num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """mnist1d's `make_dataset` before its final standardization: signals (N, 40) float64 and
    labels (N,), in its order (num_samples // 10 per class, then shuffled).

    `make_dataset` standardizes each call's samples by their own mean and std; this gives the
    raw samples so that another set can be standardized with the standard set's constants.
    The global random states that mnist1d reseeds are restored.
    """
    from mnist1d.data import get_dataset_args, get_templates
    from mnist1d.transform import transform
    from mnist1d.utils import set_seed

    args, templates = get_dataset_args(), get_templates()
    # set_seed seeds the global generators of `random` and NumPy; leave them as found.
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        set_seed(seed)
        signals, labels = [], []
        for label, template in zip(templates["y"], templates["x"], strict=True):
            for _ in range(num_samples // len(templates["y"])):
                signals.append(transform(template, templates["t"], args)[0])
                labels.append(label)
        order = np.random.permutation(len(labels))  # noqa: NPY002 (as make_dataset shuffles)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002
    return np.stack(signals)[order], np.stack(labels)[order]


def mnist1d(test_size: int | None = None) -> Dataset:
    """MNIST-1D (Greydanus, 2020): float32 signals of length 40, 10 classes.

    Training split: the standard 4,000 samples (seed 42). Test split: by default the standard
    1,000 samples generated with them; with `test_size` (a multiple of 10), that many samples
    generated independently from seed 43, as a less noisy test set (the 1,000-sample one moves
    by several points between training seeds). Signals are in units of the standard 5,000
    samples' standard deviation, centered on their mean, as mnist1d's `make_dataset` gives them;
    an independent test set is standardized with those same constants, not its own.
    """
    if test_size is not None and (
        not isinstance(test_size, int) or test_size < 10 or test_size % 10
    ):
        raise ValueError(f"test_size={test_size!r} must be None or a positive multiple of 10")
    signals, labels = _raw_mnist1d(5000, MNIST1D_SEED)
    mean, std = signals.mean(), signals.std()
    signals = ((signals - mean) / std).astype(np.float32)
    labels = labels.astype(np.int32)
    train = Split(signals[:4000], labels[:4000])
    if test_size is None:
        test = Split(signals[4000:], labels[4000:])
    else:
        test_signals, test_labels = _raw_mnist1d(test_size, MNIST1D_TEST_SEED)
        test = Split(((test_signals - mean) / std).astype(np.float32), test_labels.astype(np.int32))
    return _dataset("mnist1d", train, test, 10)
