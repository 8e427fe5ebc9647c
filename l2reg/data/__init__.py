"""Data sets behind one interface, batch order as a pure function of (seed, step).

    dataset = l2reg.data.load("cifar10", data_dir="~/tensorflow_datasets")
    indices = l2reg.data.batch_indices(seed, step, batch_size, len(dataset.train))
    images = dataset.preprocess(train_images[indices], key=jax.random.fold_in(key, step))

`digits` and `mnist1d` are generated offline from Python packages; the others are read with
TensorFlow Datasets from `data_dir` and must have been prepared there (see `load`).
"""

from l2reg.data.dataset import (
    Augmentation,
    Dataset,
    Split,
    augment,
    batch_indices,
    channel_stats,
)
from l2reg.data.embedded import digits, mnist1d

__all__ = [
    "NAMES",
    "Augmentation",
    "Dataset",
    "Split",
    "augment",
    "batch_indices",
    "channel_stats",
    "load",
]

EMBEDDED = ("digits", "mnist1d")
NAMES = EMBEDDED


def load(name: str, *, data_dir: str | None = None, test_size: int | None = None) -> Dataset:
    """Loads the data set `name` (one of NAMES).

    Args:
      name: 'digits' or 'mnist1d' (embedded).
      data_dir: TFDS data directory (unused by embedded data sets).
      test_size: mnist1d only: size of an independently generated test set (see `mnist1d`).
    """
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(NAMES)}")
    if test_size is not None and name != "mnist1d":
        raise ValueError(f"test_size={test_size!r} applies to mnist1d only, not {name!r}")
    if name == "digits":
        return digits()
    return mnist1d(test_size)
