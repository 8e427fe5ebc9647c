"""Data sets read with TensorFlow Datasets (imported only when one is loaded).

Small sets (CIFAR, MNIST, SVHN) are read whole into host memory and augmented on device by
`Dataset.preprocess`; ImageNet streams through a prefetching tf.data pipeline.
"""

import os

import numpy as np

from l2reg.data.dataset import Augmentation, Dataset, Split, channel_stats

# Standard augmentations: 4-pixel pad, random crop, and a horizontal flip except for digits,
# whose identity a mirror image does not keep.
CIFAR_AUGMENTATION = Augmentation(padding=4, padding_mode="reflect", flip=True)
SVHN_AUGMENTATION = Augmentation(padding=4, padding_mode="reflect", flip=False)
IN_MEMORY = {
    "cifar10": CIFAR_AUGMENTATION,
    "cifar100": CIFAR_AUGMENTATION,
    "mnist": None,
    "fashion_mnist": None,
    "svhn_cropped": SVHN_AUGMENTATION,
}
STREAMED = ("imagenet2012",)
# ImageNet per-channel statistics in pixel units (0–255), as commonly used.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255
# Examples per tf.data batch when reading a whole split into memory.
_READ_CHUNK = 10_000


class DatasetNotPreparedError(ValueError):
    """A TFDS data set is not prepared in its data directory and could not be prepared."""


def _how_to_prepare(
    name: str, builder, manual_dir: str | None, failure: Exception | None = None
) -> str:
    """One line: where `name` is not prepared and how to prepare it.

    After a failed `download_and_prepare`, `failure` (the exception) is named instead of
    suggesting download=True again.
    """
    version_dir = os.fspath(builder.data_dir)
    root = os.path.dirname(os.path.dirname(version_dir))
    where = f"data set {name!r} is not prepared in {version_dir}"
    if failure is not None:
        reason = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
        where += f" and preparing it failed ({type(failure).__name__}: {reason})"
    if name == "imagenet2012":
        tars = "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from image-net.org)"
        if failure is not None:
            return f"{where}: check that manual_dir={manual_dir!r} holds {tars}"
        return (
            f"{where}: put {tars} in a folder (manual_dir={manual_dir!r} now) and load it once "
            f"with download=True, manual_dir=<that folder>, data_dir={root!r}"
        )
    build = f"`tfds build {name} --data_dir={root}`"
    if failure is not None:
        return f"{where}: run {build} where there is internet and copy it there"
    return (
        f"{where}: run {build} (needs internet; or build it elsewhere and copy it there), "
        "or load it with download=True"
    )


def builder(name: str, *, data_dir: str | None, download: bool, manual_dir: str | None = None):
    """The prepared `tfds` builder of `name`; prepares it only when `download` is True.

    `data_dir` and `manual_dir` may start with ~ (the user's home directory).

    Raises:
      DatasetNotPreparedError: not prepared under `data_dir` and `download` is False, or
        preparing it failed (no network, missing manual files); a one-line message says
        where it looked, what failed, and how to prepare it.
    """
    import tensorflow_datasets as tfds

    # TFDS does not expand ~, nor does a shell in `--config.data_dir=~/x`.
    data_dir = None if data_dir is None else os.path.expanduser(data_dir)
    manual_dir = None if manual_dir is None else os.path.expanduser(manual_dir)
    tfds_builder = tfds.builder(name, data_dir=data_dir)
    if tfds_builder.is_prepared():
        return tfds_builder
    if not download:
        raise DatasetNotPreparedError(_how_to_prepare(name, tfds_builder, manual_dir))
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    try:
        tfds_builder.download_and_prepare(download_config=config)
    except Exception as error:  # any failure: one actionable line instead of a traceback
        raise DatasetNotPreparedError(
            _how_to_prepare(name, tfds_builder, manual_dir, failure=error)
        ) from None
    return tfds_builder


def _read_split(tfds_builder, split: str) -> Split:
    """A whole split, in its stored order: images (N, H, W, C) uint8, labels (N,) int32."""
    import tensorflow_datasets as tfds

    data = tfds_builder.as_dataset(split=split, as_supervised=True).batch(_READ_CHUNK)
    chunks = list(tfds.as_numpy(data))
    images = np.concatenate([images for images, _ in chunks])
    labels = np.concatenate([labels for _, labels in chunks]).astype(np.int32)
    return Split(images, labels)


def load_in_memory(name: str, tfds_builder) -> Dataset:
    """Reads train and test splits of a prepared small data set into host memory."""
    train = _read_split(tfds_builder, "train")
    mean, std = channel_stats(train.images)
    return Dataset(
        name=name,
        num_classes=tfds_builder.info.features["label"].num_classes,
        input_shape=train.images.shape[1:],
        train=train,
        test=_read_split(tfds_builder, "test"),
        mean=mean,
        std=std,
        augmentation=IN_MEMORY[name],
    )


def _imagenet_image(image, seed, augment: bool, image_size: int):
    """Encoded JPEG -> (image_size, image_size, 3) uint8; a random-resized crop and flip when
    `augment`, else the central crop.

    `seed` (2,) int64 makes each example's random crop a pure function of (run seed, position).
    """
    import tensorflow as tf

    if augment:
        shape = tf.image.extract_jpeg_shape(image)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            tf.zeros([0, 0, 4], tf.float32),
            seed=seed,
            min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        window = tf.stack([begin[0], begin[1], size[0], size[1]])
        image = tf.image.decode_and_crop_jpeg(image, window, channels=3)
        image = tf.image.stateless_random_flip_left_right(image, seed=seed)
    else:
        # Central crop covering 87.5% of the shorter side, the usual evaluation view.
        image = tf.image.decode_jpeg(image, channels=3)
        shape = tf.shape(image)
        side = tf.cast(0.875 * tf.cast(tf.minimum(shape[0], shape[1]), tf.float32), tf.int32)
        top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
        image = image[top : top + side, left : left + side]
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.saturate_cast(tf.round(image), tf.uint8)


def imagenet(tfds_builder, *, image_size: int = 224) -> Dataset:
    """ImageNet (ILSVRC 2012), streamed: `Dataset.batches` yields uint8 batches.

    Training batches come endlessly from a shuffled, repeated stream with random-resized crops
    and flips (center crops with `augment=False`); test batches ('validation' split) come once,
    center-cropped, last one partial.
    For a given seed the stream is deterministic, so batch `step` is a pure function of
    (seed, step); resuming at `start_step` skips the examples of the batches before it, reading
    them but not decoding them.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def stream(split: str, batch_size: int, seed: int, start_step: int, augment: bool):
        train = split == "train"
        data = tfds_builder.as_dataset(
            split="train" if train else "validation",
            shuffle_files=train,
            read_config=tfds.ReadConfig(shuffle_seed=seed),
            decoders={"image": tfds.decode.SkipDecoding()},
        )
        if train:
            data = data.repeat().shuffle(16 * batch_size, seed=seed)
        run_seed = tf.constant(seed, tf.int64)

        def decode(index, example):
            seed = tf.stack([run_seed, index])
            image = _imagenet_image(example["image"], seed, train and augment, image_size)
            return image, tf.cast(example["label"], tf.int32)

        # Skipping before decoding spares the skipped examples' decoding; numbering them first
        # keeps each example's seed, so the batches are those of an uninterrupted stream.
        data = data.enumerate().skip(start_step * batch_size)
        data = data.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        data = data.batch(batch_size, drop_remainder=train)
        options = tf.data.Options()
        options.deterministic = True
        data = data.with_options(options).prefetch(tf.data.AUTOTUNE)
        return (Split(images, labels) for images, labels in tfds.as_numpy(data))

    return Dataset(
        name="imagenet2012",
        num_classes=tfds_builder.info.features["label"].num_classes,
        input_shape=(image_size, image_size, 3),
        train=None,
        test=None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        stream=stream,
    )
