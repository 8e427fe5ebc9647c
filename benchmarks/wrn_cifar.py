"""What the WRN CIFAR-10 benchmarks share: their common flags, the config they time, a line
naming the setup, and CIFAR-10 from TFDS when prepared, else random images of the same shape.

Random uint8 images cost the same to gather, augment, transfer and train on as real ones, so
the benchmarks run anywhere, including machines without TensorFlow or the data set.
"""

import argparse
import json
import os

import config_file
import jax
import numpy as np

from l2reg import data, files

TFDS_DEFAULT_DIR = os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--config, --model, --batch, --dtype, --data_dir and --json."""
    parser.add_argument(
        "--config",
        default=os.path.join(config_file.CONFIGS, "wrn28_10_cifar10.py"),
        help="trainer config file to time",
    )
    parser.add_argument("--model", default="wrn28_10", help="wrn{depth}_{width}")
    parser.add_argument("--batch", type=int, default=1024, help="global batch, images per step")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--data_dir", default=None, help="TFDS data directory for CIFAR-10")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")


def require_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, *names: str):
    """Exits with the parser's one-line usage error for the first flag of `names` below 1."""
    for name in ("batch", *names):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be ≥ 1, got {getattr(args, name)}")


def config(args: argparse.Namespace, **fields):
    """The --config file's config (WRN CIFAR-10 by default) with the flags' model, batch and
    dtype, and `fields`."""
    result = config_file.load(args.config)
    result.update(model=args.model, batch_size=args.batch, dtype=args.dtype, **fields)
    return result


def describe(args: argparse.Namespace, dataset: data.Dataset) -> str:
    """Model, batch, dtype, devices, JAX version and data, on one line."""
    devices = jax.local_devices()
    return (
        f"{args.model}, global batch {args.batch}, {args.dtype}, {len(devices)} × "
        f"{devices[0].device_kind}, jax {jax.__version__}, data {dataset.name}"
    )


def write_json(args: argparse.Namespace, results: dict) -> None:
    """Writes `results` to --json, if given."""
    if args.json:
        files.write_atomic(args.json, json.dumps(results, indent=2) + "\n")


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
