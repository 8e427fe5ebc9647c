"""Tests of the TFDS path with `tfds.testing.mock_data` (no data set is downloaded)."""

import numpy as np
import pytest

from l2reg import data

tfds = pytest.importorskip("tensorflow_datasets")
tf = pytest.importorskip("tensorflow")


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("cifar10", "run `tfds build cifar10 --data_dir="),
        ("imagenet2012", "ILSVRC2012_img_train.tar"),
    ],
)
def test_unprepared_data_set_gives_one_line_error(tmp_path, name, hint):
    with pytest.raises(data.DatasetNotPreparedError) as error:
        data.load(name, data_dir=str(tmp_path))
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert message.startswith(f"data set {name!r} is not prepared in {tmp_path}/{name}/")
    assert hint in message and "\n" not in message


def test_failed_download_gives_one_line_error(tmp_path, monkeypatch):
    def offline(self, *args, **kwargs):
        raise ConnectionError("Failed to resolve 'www.cs.toronto.edu'\n(long details)")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(data.DatasetNotPreparedError) as error:
        data.load("cifar10", data_dir=str(tmp_path), download=True)
    message = str(error.value)
    assert "\n" not in message and error.value.__cause__ is None
    assert "preparing it failed (ConnectionError: Failed to resolve 'www.cs.toronto.edu'): " in (
        message
    )


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_failed_download_names_its_cause_without_suggesting_download(tmp_path, monkeypatch, name):
    # The builder's own code runs up to its first network call, which fails here.
    def offline(self, *args, **kwargs):
        raise ConnectionError("offline sentinel")

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    with pytest.raises(data.DatasetNotPreparedError) as error:
        data.load(name, data_dir=str(tmp_path), download=True)
    message = str(error.value)
    assert "\n" not in message and "ConnectionError: offline sentinel" in message
    assert "download=True" not in message and f"tfds build {name}" in message


CIFAR10_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}


def _write_cifar10_download(folder) -> dict[str, list[tuple[int, bytes]]]:
    """Writes a small CIFAR-10 in the layout of its binary download (2 images per file).

    Returns each split's (label, HWC image bytes) pairs, sorted: TFDS stores them shuffled.
    """
    batches = folder / "cifar-10-batches-bin"
    batches.mkdir(parents=True)
    (batches / "batches.meta.txt").write_text("\n".join(f"class_{i}" for i in range(10)))
    rng = np.random.default_rng(0)
    examples = {}
    for split, files in CIFAR10_FILES.items():
        examples[split] = []
        for file in files:
            labels = rng.integers(0, 10, 2, dtype=np.uint8)
            images = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)  # channels first
            records = np.concatenate([labels[:, None], images.reshape(2, -1)], axis=1)
            (batches / file).write_bytes(records.tobytes())
            examples[split] += [
                (int(label), image.transpose(1, 2, 0).tobytes())
                for label, image in zip(labels, images, strict=True)
            ]
    return {split: sorted(pairs) for split, pairs in examples.items()}


def test_download_prepares_in_data_dir_under_home(tmp_path, monkeypatch):
    examples = _write_cifar10_download(tmp_path / "download")
    monkeypatch.setattr(
        tfds.download.DownloadManager,
        "download_and_extract",
        lambda self, url: str(tmp_path / "download"),
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    dataset = data.load("cifar10", data_dir="~/tfds", download=True)
    assert (tmp_path / "home" / "tfds" / "cifar10" / "3.0.2" / "dataset_info.json").is_file()
    assert list((tmp_path / "cwd").iterdir()) == []  # no literal ~ folder
    for split in ("train", "test"):
        loaded = getattr(dataset, split)
        pairs = zip(loaded.labels.tolist(), map(np.ndarray.tobytes, loaded.images), strict=True)
        assert sorted(pairs) == examples[split]
    # Prepared, it loads again without download=True, found under the same ~ path.
    again = data.load("cifar10", data_dir="~/tfds")
    np.testing.assert_array_equal(again.train.images, dataset.train.images)


@pytest.mark.parametrize(
    ("name", "input_shape", "num_classes", "flip"),
    [
        ("cifar10", (32, 32, 3), 10, True),
        ("svhn_cropped", (32, 32, 3), 10, False),
        ("fashion_mnist", (28, 28, 1), 10, None),
    ],
)
def test_mock_data_sets_load_into_memory(tmp_path, name, input_shape, num_classes, flip):
    with tfds.testing.mock_data(num_examples=24):
        dataset = data.load(name, data_dir=str(tmp_path), download=True)
    assert (dataset.name, dataset.input_shape, dataset.num_classes) == (
        name,
        input_shape,
        num_classes,
    )
    for split in (dataset.train, dataset.test):
        assert split.images.shape == (24, *input_shape) and split.images.dtype == np.uint8
        assert split.labels.dtype == np.int32
        assert 0 <= split.labels.min() and split.labels.max() < num_classes
    assert dataset.mean.shape == (input_shape[-1],)
    np.testing.assert_allclose(dataset.mean, dataset.train.images.mean(axis=(0, 1, 2)), rtol=1e-5)
    if flip is None:
        assert dataset.augmentation is None
    else:
        assert dataset.augmentation.padding == 4 and dataset.augmentation.flip == flip


def test_imagenet_streams_deterministic_batches(tmp_path):
    with tfds.testing.mock_data(num_examples=10):
        dataset = data.load("imagenet2012", data_dir=str(tmp_path), download=True)
        assert dataset.train is None and dataset.input_shape == (224, 224, 3)
        stream = dataset.batches("train", batch_size=4, seed=3)
        first, second = next(stream), next(stream)
        resumed = next(dataset.batches("train", batch_size=4, seed=3, start_step=1))
        other_seed = next(dataset.batches("train", batch_size=4, seed=4))
        test_sizes = [len(batch.labels) for batch in dataset.batches("test", batch_size=4, seed=0)]
    assert first.images.shape == (4, 224, 224, 3) and first.images.dtype == np.uint8
    assert first.labels.dtype == np.int32 and first.labels.max() < 1000
    np.testing.assert_array_equal(resumed.images, second.images)
    assert not np.array_equal(other_seed.images, first.images)
    assert test_sizes == [4, 4, 2]
    images = dataset.preprocess(first.images)
    assert images.dtype == np.float32 and abs(float(images.mean())) < 1.0


# Sizes of the splits served by `_distinct_splits`; they differ so that no split can pass for
# the other even by its length.
DISTINCT_SIZES = {"train": 24, "test": 16}


def _split_examples(split: str, image_shape, num_classes: int) -> dict[str, np.ndarray]:
    """Reproducible examples of `split`, from a generator seeded differently for each split."""
    rng = np.random.default_rng(list(DISTINCT_SIZES).index(split))
    size = DISTINCT_SIZES[split]
    return {
        "image": rng.integers(0, 256, (size, *image_shape), dtype=np.uint8),
        "label": rng.integers(0, num_classes, size, dtype=np.int64),
    }


def _distinct_splits(self, split, **kwargs):
    """An `as_dataset_fn` for `mock_data` giving each split its own examples.

    `mock_data`'s default generator serves the same examples for every split.
    """
    features = self.info.features
    examples = _split_examples(str(split), features["image"].shape, features["label"].num_classes)
    return tf.data.Dataset.from_tensor_slices(examples)


@pytest.mark.parametrize(
    ("name", "image_shape"), [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1))]
)
def test_loaded_splits_hold_their_own_examples(tmp_path, name, image_shape):
    with tfds.testing.mock_data(as_dataset_fn=_distinct_splits):
        dataset = data.load(name, data_dir=str(tmp_path), download=True)
    for split_name in ("train", "test"):
        expected = _split_examples(split_name, image_shape, num_classes=10)
        split = getattr(dataset, split_name)
        np.testing.assert_array_equal(split.images, expected["image"])
        np.testing.assert_array_equal(split.labels, expected["label"].astype(np.int32))
    # The normalization statistics come from the training split alone.
    train_images = _split_examples("train", image_shape, num_classes=10)["image"].astype(np.float64)
    np.testing.assert_allclose(dataset.mean, train_images.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(dataset.std, train_images.std(axis=(0, 1, 2)), rtol=1e-5)


def _imagenet_splits(self, split, **kwargs):
    """An `as_dataset_fn` for imagenet2012: encoded JPEGs, labelled from 0 in 'train' and from
    500 in 'validation', so that every label tells which split it was read from."""
    size, offset = {"train": (12, 0), "validation": (6, 500)}[str(split)]
    image = tf.io.encode_jpeg(tf.zeros((40, 48, 3), tf.uint8))
    return tf.data.Dataset.from_tensor_slices(
        {"image": tf.fill([size], image), "label": offset + np.arange(size, dtype=np.int64)}
    )


def test_imagenet_streams_train_and_validation_splits(tmp_path):
    with tfds.testing.mock_data(as_dataset_fn=_imagenet_splits):
        dataset = data.load("imagenet2012", data_dir=str(tmp_path), download=True)
        train = dataset.batches("train", batch_size=4, seed=0)
        train_labels = np.concatenate([next(train).labels for _ in range(6)])
        test = dataset.batches("test", batch_size=4, seed=0)
        test_labels = np.concatenate([batch.labels for batch in test])
    assert set(train_labels.tolist()) <= set(range(12))  # only the 12 training examples
    np.testing.assert_array_equal(test_labels, 500 + np.arange(6))  # once, in stored order


def _imagenet_distinct_images(self, split, **kwargs):
    """An `as_dataset_fn` for imagenet2012 whose example i has its own image and label i."""
    images = np.random.default_rng(7).integers(0, 256, (8, 40, 48, 3), dtype=np.uint8)
    encoded = [tf.io.encode_jpeg(image).numpy() for image in images]
    return tf.data.Dataset.from_tensor_slices(
        {"image": encoded, "label": np.arange(len(encoded), dtype=np.int64)}
    )


def test_imagenet_resumes_without_decoding_the_skipped_examples(tmp_path, monkeypatch):
    # The stream position of every example decoded (from its seed), by split: training
    # examples are augmented, validation examples are not.
    decoded = {True: [], False: []}

    def recording_decode(image, seed, augment, image_size):
        record = tf.py_function(
            lambda index: decoded[augment].append(int(index)) or 0, [seed[1]], tf.int32
        )
        with tf.control_dependencies([record]):
            return tf.identity(original_decode(image, seed, augment, image_size))

    original_decode = data.tfds_data._imagenet_image
    with tfds.testing.mock_data(as_dataset_fn=_imagenet_distinct_images):
        builder = data.tfds_data.builder("imagenet2012", data_dir=str(tmp_path), download=True)
        dataset = data.tfds_data.imagenet(builder, image_size=32)
        train = dataset.batches("train", batch_size=2, seed=1)
        uninterrupted = {"train": [next(train) for _ in range(6)]}
        uninterrupted["test"] = list(dataset.batches("test", batch_size=3, seed=1))
        monkeypatch.setattr(data.tfds_data, "_imagenet_image", recording_decode)
        train = dataset.batches("train", batch_size=2, seed=1, start_step=4)
        resumed = {"train": [next(train) for _ in range(2)]}
        resumed["test"] = list(dataset.batches("test", batch_size=3, seed=1, start_step=1))
    assert min(decoded[True]) == 4 * 2  # decoding starts at the first example of step 4
    assert sorted(decoded[False]) == [3, 4, 5, 6, 7]  # of the 8 validation examples
    for split, start_step in (("train", 4), ("test", 1)):
        expected = uninterrupted[split][start_step:]
        assert len(resumed[split]) == len(expected)
        for got, want in zip(resumed[split], expected, strict=True):
            np.testing.assert_array_equal(got.images, want.images)
            np.testing.assert_array_equal(got.labels, want.labels)


def test_imagenet_training_stream_augments_only_when_asked(tmp_path):
    with tfds.testing.mock_data(as_dataset_fn=_imagenet_distinct_images):
        builder = data.tfds_data.builder("imagenet2012", data_dir=str(tmp_path), download=True)
        dataset = data.tfds_data.imagenet(builder, image_size=32)
        plain = next(dataset.batches("train", batch_size=8, seed=1, augment=False))
        augmented = next(dataset.batches("train", batch_size=8, seed=1))
        # The test view of each training example, found by its label.
        test_view = {}
        for example in _imagenet_distinct_images(None, "train"):
            image = data.tfds_data._imagenet_image(example["image"], None, False, 32)
            test_view[int(example["label"])] = image.numpy()
    for batch, should_match in ((plain, True), (augmented, False)):
        matches = [
            np.array_equal(image, test_view[label])
            for image, label in zip(batch.images, batch.labels, strict=True)
        ]
        assert all(matches) if should_match else not any(matches), matches
