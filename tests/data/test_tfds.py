"""Tests of the TFDS path with `tfds.testing.mock_data` (no data set is downloaded)."""

import numpy as np
import pytest

from l2reg import data

tfds = pytest.importorskip("tensorflow_datasets")


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
    assert message.endswith(
        "(download_and_prepare failed: ConnectionError: Failed to resolve 'www.cs.toronto.edu')"
    )


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
