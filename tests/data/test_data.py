"""Tests of the data interface: embedded sets, preprocessing, augmentation and batch order."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2reg import data


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_digits_fixed_split(digits):
    assert (digits.name, digits.num_classes, digits.input_shape) == ("digits", 10, (8, 8, 1))
    assert (len(digits.train), len(digits.test)) == (1500, 297)
    assert digits.train.images.dtype == np.uint8 and digits.train.labels.dtype == np.int32
    assert digits.train.images.max() == 16
    assert set(np.unique(digits.test.labels)) == set(range(10))
    again = data.load("digits")
    np.testing.assert_array_equal(again.test.images, digits.test.images)
    np.testing.assert_array_equal(again.train.labels, digits.train.labels)


def test_mnist1d_standard_split_and_larger_test_set():
    state = np.random.get_state()  # noqa: NPY002 (the loader must leave it alone)
    standard = data.load("mnist1d")
    assert (standard.input_shape, standard.num_classes) == ((40,), 10)
    assert (len(standard.train), len(standard.test)) == (4000, 1000)
    assert standard.train.images.dtype == np.float32
    assert standard.train.labels.dtype == np.int32
    larger = data.load("mnist1d", test_size=2000)
    np.testing.assert_array_equal(larger.train.images, standard.train.images)
    assert len(larger.test) == 2000
    assert np.bincount(larger.test.labels).tolist() == [200] * 10
    seen = {row.tobytes() for row in np.concatenate([standard.train.images, standard.test.images])}
    assert not any(row.tobytes() in seen for row in larger.test.images)
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002


def test_mnist1d_test_sets_share_the_standard_normalization(monkeypatch):
    from mnist1d.data import get_dataset_args, make_dataset

    standard = data.load("mnist1d")
    reference = make_dataset(get_dataset_args())  # mnist1d's own standard data set, unchanged
    for split, inputs, labels in ((standard.train, "x", "y"), (standard.test, "x_test", "y_test")):
        assert split.images.tobytes() == reference[inputs].astype(np.float32).tobytes()
        assert split.labels.tolist() == reference[labels].tolist()
    # Standardized by its own statistics, a set of 10 would have mean 0 to float precision.
    tiny = data.load("mnist1d", test_size=10)
    assert abs(float(tiny.test.images.astype(np.float64).mean())) > 1e-3
    # Drawn from the standard seed, the set's first sample (its only 0) is the standard set's
    # first one, so it must come out the same, bit for bit.
    monkeypatch.setattr(data.embedded, "MNIST1D_TEST_SEED", data.embedded.MNIST1D_SEED)
    same_seed = data.load("mnist1d", test_size=10)
    first = same_seed.test.images[same_seed.test.labels == 0][0].tobytes()
    standard_rows = np.concatenate([standard.train.images, standard.test.images])
    assert first in {row.tobytes() for row in standard_rows}


def test_preprocess_normalizes_per_channel_and_jits(digits):
    images = digits.preprocess(digits.train.images)
    assert images.dtype == jnp.float32 and images.shape == digits.train.images.shape
    np.testing.assert_allclose(images.mean(), 0.0, atol=1e-4)
    np.testing.assert_allclose(images.std(), 1.0, atol=1e-4)
    np.testing.assert_allclose(jax.jit(digits.preprocess)(digits.train.images), images, atol=1e-6)
    # digits has no standard augmentation: a key changes nothing.
    keyed = digits.preprocess(digits.train.images[:4], key=jax.random.key(0))
    np.testing.assert_array_equal(keyed, images[:4])


def _crops(padded, height, width):
    """All crops of one padded image and their mirror images, as float arrays."""
    rows, cols = padded.shape[0] - height + 1, padded.shape[1] - width + 1
    crops = [padded[r : r + height, c : c + width] for r in range(rows) for c in range(cols)]
    return crops + [crop[:, ::-1] for crop in crops]


@pytest.mark.parametrize("padding_mode", ["reflect", "constant"])
def test_augment_is_a_keyed_pad_crop_flip(padding_mode):
    images = np.random.default_rng(0).integers(0, 256, (16, 12, 12, 3)).astype(np.float32)
    augmentation = data.Augmentation(padding=4, padding_mode=padding_mode, flip=True)
    key = jax.random.key(3)
    augmented = np.asarray(jax.jit(data.augment, static_argnums=2)(key, images, augmentation))
    assert augmented.shape == images.shape
    np.testing.assert_array_equal(augmented, data.augment(key, images, augmentation))
    assert not np.array_equal(augmented, data.augment(jax.random.key(4), images, augmentation))
    mode = "reflect" if padding_mode == "reflect" else "constant"
    flipped = 0
    for image, result in zip(images, augmented, strict=True):
        padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode)
        matches = [np.array_equal(result, crop) for crop in _crops(padded, 12, 12)]
        assert any(matches)
        flipped += not any(matches[: len(matches) // 2])
    assert 0 < flipped < len(images)  # flips are drawn per image


def test_augment_draws_crop_offsets_and_flips_per_image():
    # One image whose pixels are all distinct and nonzero, so that each crop of it (and each
    # mirrored crop) differs from every other, even where the zero padding shows.
    image = np.arange(1, 8 * 8 + 1, dtype=np.float32).reshape(8, 8, 1)
    images = np.broadcast_to(image, (64, 8, 8, 1))
    augmentation = data.Augmentation(padding=2, padding_mode="constant", flip=True)
    augmented = np.asarray(data.augment(jax.random.key(0), images, augmentation))
    crops = _crops(np.pad(image, ((2, 2), (2, 2), (0, 0))), 8, 8)
    draws = []  # (top, left, flipped) of each image
    for result in augmented:
        (match,) = [i for i, crop in enumerate(crops) if np.array_equal(result, crop)]
        flipped, offset = divmod(match, len(crops) // 2)
        draws.append((*divmod(offset, 5), flipped))
    tops, lefts, flips = (set(column) for column in zip(*draws, strict=True))
    assert tops == lefts == set(range(5)) and flips == {0, 1}
    assert any(top != left for top, left, _ in draws)
    assert len(set(draws)) > 20  # 64 draws from 50 outcomes give about 36 distinct


def test_cifar_style_preprocess_augments_only_with_a_key():
    rng = np.random.default_rng(0)
    train = data.Split(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), np.zeros(8, np.int32))
    mean, std = data.channel_stats(train.images)
    dataset = data.Dataset(
        "synthetic", 10, (32, 32, 3), train, train, mean, std, data.Augmentation()
    )
    plain = dataset.preprocess(train.images)
    np.testing.assert_allclose(plain, (train.images - mean) / std, rtol=1e-5)
    augmented = jax.jit(dataset.preprocess)(train.images, key=jax.random.key(0))
    assert augmented.shape == plain.shape and not np.allclose(augmented, plain)


def test_mixup_blends_each_example_with_the_previous_one():
    images = jax.random.normal(jax.random.key(1), (6, 4, 4, 3))
    labels = jnp.arange(6)
    mixup = jax.jit(data.mixup, static_argnums=3)
    mixed, partner_labels, weight = mixup(jax.random.key(2), images, labels, 1.0)
    assert weight.shape == () and 0 <= weight <= 1
    np.testing.assert_array_equal(partner_labels, [5, 0, 1, 2, 3, 4])
    expected = weight * images + (1 - weight) * images[np.array([5, 0, 1, 2, 3, 4])]
    np.testing.assert_allclose(mixed, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(mixup(jax.random.key(2), images, labels, 1.0)[0], mixed)
    assert not np.array_equal(mixup(jax.random.key(3), images, labels, 1.0)[0], mixed)


@pytest.mark.parametrize(("alpha", "near_ends"), [(0.2, (0.5, 1.0)), (8.0, (0.0, 0.01))])
def test_mixup_weight_follows_beta_alpha_alpha(alpha, near_ends):
    # Beta(0.2, 0.2) puts 72% of its mass within 0.1 of 0 or 1; Beta(8, 8) puts 0.04% there.
    keys = jax.random.split(jax.random.key(0), 4000)
    draw = jax.vmap(lambda key: data.mixup(key, jnp.zeros((2, 1)), jnp.zeros(2), alpha)[2])
    weights = np.asarray(draw(keys))
    assert abs(weights.mean() - 0.5) < 0.03
    share = np.mean(np.minimum(weights, 1 - weights) < 0.1)
    assert near_ends[0] <= share <= near_ends[1]


def test_channel_stats_match_numpy():
    images = np.random.default_rng(0).integers(0, 256, (5000, 4, 4, 3), dtype=np.uint8)
    mean, std = data.channel_stats(images)
    np.testing.assert_allclose(mean, images.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, images.std(axis=(0, 1, 2)), rtol=1e-5)
    assert data.channel_stats(images[:, 0, 0, :].astype(np.float32))[0].shape == ()


def test_batch_indices_walk_epoch_permutations_without_replacement():
    batch_size, num_examples = 30, 100  # 3 steps per epoch, 10 examples skipped in each
    indices_at = jax.jit(data.batch_indices, static_argnums=(2, 3))
    epochs = [
        np.concatenate([indices_at(7, step, batch_size, num_examples) for step in range(e, e + 3)])
        for e in (0, 3)
    ]
    for epoch in epochs:
        assert epoch.dtype == np.int32 and len(np.unique(epoch)) == 90
        assert epoch.min() >= 0 and epoch.max() < num_examples
    assert not np.array_equal(epochs[0], epochs[1])
    # A pure function of (seed, step): eager and jitted agree; another seed, another order.
    np.testing.assert_array_equal(
        data.batch_indices(7, 4, batch_size, num_examples), epochs[1][30:60]
    )
    assert not np.array_equal(indices_at(8, 0, batch_size, num_examples), epochs[0][:30])


def test_batch_indices_vmap_over_seeds_and_steps():
    # A vmapped sweep gives each configuration the batches of its own (seed, step).
    seeds, steps = jnp.arange(4), jnp.array([0, 5, 14, 15])
    batched = jax.jit(jax.vmap(lambda seed, step: data.batch_indices(seed, step, 100, 1500)))
    for seed, step, indices in zip(seeds, steps, batched(seeds, steps), strict=True):
        np.testing.assert_array_equal(indices, data.batch_indices(int(seed), int(step), 100, 1500))


@pytest.mark.parametrize("num_examples", [1, 2, 3, 7, 64, 1000])
def test_permute_is_a_bijection(num_examples):
    positions = np.arange(num_examples)
    values = np.asarray(data.permute(jax.random.key(5), positions, num_examples))
    np.testing.assert_array_equal(np.sort(values), positions)


@pytest.mark.parametrize("num_examples", [5, 1025, 1500])
def test_permute_walks_between_checks_without_changing_the_permutation(num_examples, monkeypatch):
    # Several cycle-walking steps per check of the loop's condition (fewer host reads on a
    # GPU) give the permutation of one step per check: an entry in range stays put. At 1,025
    # examples in a domain of 4,096, some entries need more walks than one check covers.
    key, positions = jax.random.key(3), np.arange(num_examples)
    walks_per_check = np.asarray(data.permute(key, positions, num_examples))
    monkeypatch.setattr(data.dataset, "WALKS_PER_CHECK", 1)
    one_per_check = np.asarray(data.permute(key, positions, num_examples))
    np.testing.assert_array_equal(walks_per_check, one_per_check)


def test_permute_places_an_example_uniformly():
    # Where example 0 lands over 3,000 keys, in 10 positions: a chi-square with 9 degrees
    # of freedom stays below 27.9 with probability 0.999 for a uniform shuffle.
    keys = jax.random.split(jax.random.key(0), 3000)
    orders = jax.vmap(lambda key: data.permute(key, jnp.arange(10), 10))(keys)
    counts = np.bincount(np.argmax(np.asarray(orders) == 0, axis=1), minlength=10)
    chi_square = np.sum((counts - 300) ** 2 / 300)
    assert chi_square < 27.9, counts


def test_batches_resume_where_they_left_off(digits):
    stream = digits.batches("train", batch_size=100, seed=1)
    first = [next(stream) for _ in range(17)]
    resumed = next(digits.batches("train", batch_size=100, seed=1, start_step=16))
    np.testing.assert_array_equal(resumed.images, first[16].images)
    np.testing.assert_array_equal(resumed.labels, first[16].labels)
    indices = data.batch_indices(1, 16, 100, 1500)
    np.testing.assert_array_equal(resumed.labels, digits.train.labels[indices])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: data.load("imagenet"), "data set must be one of ('digits', 'mnist1d', "),
        (lambda: data.load("digits", test_size=100), "test_size=100 applies to mnist1d only"),
        (lambda: data.load("mnist1d", test_size=15), "test_size=15 must be"),
        (lambda: data.load("cifar10", manual_dir="/x"), "manual_dir='/x' applies to imagenet"),
        (lambda: data.batch_indices(0, 0, 101, 100), "batch_size=101 exceeds num_examples=100"),
        (lambda: data.batch_indices(0, 0, 0, 100), "batch_size=0 must be a positive int"),
        (lambda: data.batch_indices(0, -1, 10, 100), "step must be an integer in [0, 2147483647]"),
        (lambda: data.Augmentation(padding_mode="wrap"), "padding_mode='wrap' is not one of"),
        (lambda: data.mixup(jax.random.key(0), jnp.ones((2, 3)), jnp.ones(2), 0.0), "alpha=0.0"),
    ],
)
def test_bad_arguments_give_one_line_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_importing_the_package_does_not_import_tensorflow():
    code = "import sys, l2reg.data; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr[-500:]


def test_label_noise_moves_the_requested_fraction_of_training_labels_to_other_classes():
    labels = np.arange(1000) % 10
    noisy = data.noisy_labels(labels, 10, 0.2, seed=0)
    assert noisy.dtype == np.int32 and np.all((noisy >= 0) & (noisy < 10))
    assert np.count_nonzero(noisy != labels) == 200
    np.testing.assert_array_equal(noisy, data.noisy_labels(labels, 10, 0.2, seed=0))
    other = data.noisy_labels(labels, 10, 0.2, seed=1)
    assert np.count_nonzero(other != labels) == 200 and not np.array_equal(other, noisy)
    np.testing.assert_array_equal(data.noisy_labels(labels, 10, 0.0, seed=0), labels)
    # round(fraction·N): 0.25% of 1000 is 2.5, rounded to 2 (half to even).
    assert np.count_nonzero(data.noisy_labels(labels, 10, 0.0025, seed=0) != labels) == 2


def test_loaded_label_noise_flips_only_training_labels_deterministically(digits):
    noisy = data.load("digits", label_noise=0.2, label_noise_seed=3)
    changed = noisy.train.labels != digits.train.labels
    assert np.count_nonzero(changed) == round(0.2 * 1500) == 300
    np.testing.assert_array_equal(noisy.train.images, digits.train.images)
    np.testing.assert_array_equal(noisy.test.labels, digits.test.labels)
    np.testing.assert_array_equal(noisy.test.images, digits.test.images)
    again = data.load("digits", label_noise=0.2, label_noise_seed=3)
    np.testing.assert_array_equal(again.train.labels, noisy.train.labels)
    other = data.load("digits", label_noise=0.2, label_noise_seed=4)
    assert not np.array_equal(other.train.labels, noisy.train.labels)
    np.testing.assert_array_equal(
        noisy.train.labels, data.noisy_labels(digits.train.labels, 10, 0.2, 3)
    )
    with pytest.raises(ValueError, match=r"^label_noise must be in \[0, 1\), got 1.5$"):
        data.load("digits", label_noise=1.5)


# ------------------------------------------------------------------------------------------
# The validation split.
# ------------------------------------------------------------------------------------------


def _rows(split: data.Split) -> list[tuple[bytes, int]]:
    return sorted(
        (image.tobytes(), int(label))
        for image, label in zip(split.images, split.labels, strict=True)
    )


def test_validation_split_is_carved_disjointly_from_the_training_split(digits):
    split = data.load("digits", validation_size=300, validation_seed=5)
    assert (len(split.train), len(split.validation), len(split.test)) == (1200, 300, 297)
    assert digits.validation is None
    # The union of the two is the original training split, example for example; digits has
    # no duplicate image with the same label, so disjoint rows are disjoint examples.
    assert _rows(digits.train) == sorted(_rows(split.train) + _rows(split.validation))
    assert not {row for row, _ in _rows(split.train)} & {row for row, _ in _rows(split.validation)}
    np.testing.assert_array_equal(split.test.images, digits.test.images)
    # The examples are those of the seed's permutation, in their stored order.
    order = np.random.default_rng(5).permutation(1500)
    np.testing.assert_array_equal(
        split.validation.labels, digits.train.labels[np.sort(order[:300])]
    )
    np.testing.assert_array_equal(split.train.images, digits.train.images[np.sort(order[300:])])
    # The training statistics are those of the examples left for training.
    mean, std = data.channel_stats(split.train.images)
    np.testing.assert_array_equal(split.mean, mean)
    np.testing.assert_array_equal(split.std, std)
    batch = next(split.batches("validation", batch_size=100, seed=0))
    assert set(_rows(batch)) <= set(_rows(split.validation))


def test_validation_split_is_a_function_of_its_seed(digits):
    first = data.load("digits", validation_size=100, validation_seed=7)
    again = data.load("digits", validation_size=100, validation_seed=7)
    other = data.load("digits", validation_size=100, validation_seed=8)
    np.testing.assert_array_equal(again.validation.images, first.validation.images)
    np.testing.assert_array_equal(again.train.labels, first.train.labels)
    assert _rows(other.validation) != _rows(first.validation)


def test_validation_labels_are_as_noisy_as_the_training_labels(digits):
    noisy = data.load("digits", label_noise=0.2, label_noise_seed=3)
    split = data.load(
        "digits", label_noise=0.2, label_noise_seed=3, validation_size=500, validation_seed=1
    )
    # Carved after the noise: the same examples with the same (noisy) labels, split in two.
    assert _rows(noisy.train) == sorted(_rows(split.train) + _rows(split.validation))
    clean = dict(_rows(digits.train))
    flipped = [label != clean[image] for image, label in _rows(split.validation)]
    assert 0.1 < np.mean(flipped) < 0.3  # 20% of the labels moved, about as many here


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"validation_size": -1}, "validation_size must be an integer ≥ 0, got -1"),
        ({"validation_size": 2.5}, "validation_size must be an integer ≥ 0, got 2.5"),
        ({"validation_size": True}, "validation_size must be an integer ≥ 0, got True"),
        (
            {"validation_seed": -1},
            "validation_seed must be an integer in [0, 2147483647], got -1",
        ),
        (
            {"validation_seed": 2**31},
            "validation_seed must be an integer in [0, 2147483647], got 2147483648",
        ),
        # numpy.random.default_rng takes no negative seed: refused up front, as for validation.
        (
            {"label_noise": 0.1, "label_noise_seed": -1},
            "label_noise_seed must be an integer in [0, 2147483647], got -1",
        ),
    ],
)
def test_bad_validation_options_are_refused_before_loading(options, message):
    for call in (data.check_options, data.load):
        with pytest.raises(ValueError) as error:
            call("digits", **options)
        assert str(error.value) == message


def test_a_validation_split_must_leave_training_examples():
    message = (
        "validation_size={} must be an integer in [1, 1499]: less than the 1500 training "
        "examples of 'digits'"
    )
    for size in (1500, 2000):
        with pytest.raises(ValueError) as error:
            data.load("digits", validation_size=size)
        assert str(error.value) == message.format(size)
    assert len(data.load("digits", validation_size=1499).train) == 1


def test_a_streamed_data_set_has_no_validation_split():
    message = (
        "validation_size=100 applies to in-memory data sets only, not 'imagenet2012': it must be 0"
    )
    with pytest.raises(ValueError) as error:
        data.check_options("imagenet2012", validation_size=100)
    assert str(error.value) == message
    data.check_options("imagenet2012", validation_size=0, validation_seed=3)
