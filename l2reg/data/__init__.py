"""Data sets behind one interface, batch order as a pure function of (seed, step).

    dataset = l2reg.data.load("cifar10", data_dir="~/tensorflow_datasets")
    indices = l2reg.data.batch_indices(seed, step, batch_size, len(dataset.train))
    images = dataset.preprocess(train_images[indices], key=jax.random.fold_in(key, step))

`digits` and `mnist1d` are generated offline from Python packages; the others are read with
TensorFlow Datasets from `data_dir` and must have been prepared there (see `load`).
"""

import dataclasses

import numpy as np

from l2reg import checks
from l2reg.data.dataset import (
    Augmentation,
    Dataset,
    Split,
    augment,
    batch_indices,
    channel_stats,
    mixup,
    permute,
)
from l2reg.data.embedded import digits, mnist1d
from l2reg.data.tfds_data import IN_MEMORY, STREAMED, DatasetNotPreparedError

__all__ = [
    "NAMES",
    "Augmentation",
    "Dataset",
    "DatasetNotPreparedError",
    "Split",
    "augment",
    "batch_indices",
    "channel_stats",
    "check_options",
    "load",
    "mixup",
    "noisy_labels",
    "permute",
    "split_validation",
]

EMBEDDED = ("digits", "mnist1d")
NAMES = (*EMBEDDED, *IN_MEMORY, *STREAMED)


def check_options(
    name: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    manual_dir: str | None = None,
    test_size: int | None = None,
    label_noise: float = 0.0,
    label_noise_seed: int = 0,
    validation_size: int = 0,
    validation_seed: int = 0,
) -> None:
    """Raises the one-line ValueError that `load(name, ...)` would for these options, without
    loading anything (the keywords are `load`'s: an unknown one is a TypeError).

    A validation split as large as the training split can only be refused by `load`, which
    knows the split's size.
    """
    if name not in NAMES:
        raise ValueError(f"data set must be one of {NAMES}, got {name!r}")
    if test_size is not None and name != "mnist1d":
        raise ValueError(f"test_size={test_size!r} applies to mnist1d only, not {name!r}")
    if manual_dir is not None and name != "imagenet2012":
        raise ValueError(f"manual_dir={manual_dir!r} applies to imagenet2012 only, not {name!r}")
    checks.number("label_noise", label_noise, lambda x: 0 <= x < 1, "in [0, 1)")
    if label_noise and name in STREAMED:
        raise ValueError(f"label_noise applies to in-memory data sets only, not {name!r}")
    # Seeds of numpy.random.default_rng, which takes no negative seed.
    checks.integer("label_noise_seed", label_noise_seed, minimum=0, maximum=checks.INT32_MAX)
    checks.integer("validation_size", validation_size, minimum=0)
    if validation_size and name in STREAMED:
        raise ValueError(
            f"validation_size={validation_size!r} applies to in-memory data sets only, "
            f"not {name!r}: it must be 0"
        )
    checks.integer("validation_seed", validation_seed, minimum=0, maximum=checks.INT32_MAX)


def load(
    name: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    manual_dir: str | None = None,
    test_size: int | None = None,
    label_noise: float = 0.0,
    label_noise_seed: int = 0,
    validation_size: int = 0,
    validation_seed: int = 0,
) -> Dataset:
    """Loads the data set `name` (one of NAMES).

    Args:
      name: 'digits', 'mnist1d' (embedded, generated offline), 'cifar10', 'cifar100', 'mnist',
        'fashion_mnist', 'svhn_cropped' (TFDS, held in memory) or 'imagenet2012' (TFDS,
        streamed through `Dataset.batches`).
      data_dir: TFDS data directory; None means TFDS's default (~/tensorflow_datasets).
      download: let TFDS download and prepare a data set that is not prepared yet.
      manual_dir: imagenet2012 only: folder holding the ILSVRC2012 tar files.
      test_size: mnist1d only: size of an independently generated test set (see `mnist1d`).
      label_noise: fraction of the training labels moved, once and for all, to another class
        drawn uniformly (`noisy_labels`); the test labels stay clean. In-memory data sets only.
      label_noise_seed: which labels are moved, and where, an integer in [0, 2**31 − 1].
      validation_size: examples carved out of the training split into `Dataset.validation`
        (`split_validation`), after the label noise: their labels are as noisy as the training
        labels. 0 (the default) leaves the training split whole and `validation` None.
        In-memory data sets only, less than the training split's size.
      validation_seed: which examples form the validation split, an integer in [0, 2**31 − 1].

    Raises:
      ValueError: unknown name, an option that does not apply to `name`, or a validation split
        not smaller than the training split.
      DatasetNotPreparedError (a ValueError): a TFDS data set is not prepared in `data_dir`
        and `download` is False, or preparing it failed.
    """
    check_options(
        name,
        manual_dir=manual_dir,
        test_size=test_size,
        label_noise=label_noise,
        label_noise_seed=label_noise_seed,
        validation_size=validation_size,
        validation_seed=validation_seed,
    )
    dataset = _load_clean(name, data_dir, download, manual_dir, test_size)
    if label_noise:
        labels = noisy_labels(
            dataset.train.labels, dataset.num_classes, label_noise, label_noise_seed
        )
        dataset = dataclasses.replace(dataset, train=Split(dataset.train.images, labels))
    if validation_size:
        dataset = split_validation(dataset, validation_size, validation_seed)
    return dataset


def split_validation(dataset: Dataset, size: int, seed: int) -> Dataset:
    """`dataset` with `size` examples of its training split moved to its validation split.

    The examples are the first `size` of `numpy.random.default_rng(seed).permutation(N)`, N the
    training split's size; both splits keep the examples in their stored order. The training
    statistics (`mean`, `std`) are recomputed on the examples left for training, so that
    nothing of the validation split enters the training run.

    Raises:
      ValueError: `size` is not an integer in [1, N − 1], or the data set streams.
    """
    if dataset.train is None:
        raise ValueError(
            f"validation_size applies to in-memory data sets only, not {dataset.name!r}"
        )
    num_train = len(dataset.train)
    if not checks.is_integer(size) or not 0 < size < num_train:
        raise ValueError(
            f"validation_size={size!r} must be an integer in [1, {num_train - 1}]: less than the "
            f"{num_train} training examples of {dataset.name!r}"
        )
    order = np.random.default_rng(seed).permutation(num_train)
    validation, train = np.sort(order[:size]), np.sort(order[size:])
    images, labels = dataset.train.images, dataset.train.labels
    mean, std = channel_stats(images[train])
    return dataclasses.replace(
        dataset,
        train=Split(images[train], labels[train]),
        validation=Split(images[validation], labels[validation]),
        mean=mean,
        std=std,
    )


def noisy_labels(labels: np.ndarray, num_classes: int, fraction: float, seed: int) -> np.ndarray:
    """int32 labels with round(fraction·N) of them, chosen at random, moved to another class."""
    rng = np.random.default_rng(seed)
    labels = np.array(labels, dtype=np.int32)
    flipped = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    shift = rng.integers(1, num_classes, size=len(flipped))
    labels[flipped] = (labels[flipped] + shift) % num_classes
    return labels


def _load_clean(name, data_dir, download, manual_dir, test_size) -> Dataset:
    if name == "digits":
        return digits()
    if name == "mnist1d":
        return mnist1d(test_size)
    from l2reg.data import tfds_data

    builder = tfds_data.builder(name, data_dir=data_dir, download=download, manual_dir=manual_dir)
    if name in STREAMED:
        return tfds_data.imagenet(builder)
    return tfds_data.load_in_memory(name, builder)
