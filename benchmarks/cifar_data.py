"""CIFAR-10 for the benchmarks: from TFDS when prepared, else random images of the same shape.

Random uint8 images cost the same to gather, augment, transfer and train on as real ones, so
the benchmarks run anywhere, including machines without TensorFlow or the data set.
"""

import os

import numpy as np

from l2reg import data

TFDS_DEFAULT_DIR = os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def cifar10_or_random(data_dir: str | None, num_train: int = 50_000) -> data.Dataset:
    """CIFAR-10 when its TFDS folder exists (TensorFlow is imported only then), else
    `num_train` random CIFAR-shaped uint8 images with CIFAR's augmentation."""
    if os.path.isdir(os.path.join(data_dir or TFDS_DEFAULT_DIR, "cifar10")):
        try:
            return data.load("cifar10", data_dir=data_dir)
        except (ImportError, ValueError) as error:
            print(f"CIFAR-10 not loaded ({str(error).splitlines()[0]}); using random images")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (num_train, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, num_train).astype(np.int32)
    mean, std = data.channel_stats(images)
    split = data.Split(images, labels)
    return data.Dataset(
        "cifar10_random", 10, (32, 32, 3), split, split, mean, std, data.Augmentation()
    )
