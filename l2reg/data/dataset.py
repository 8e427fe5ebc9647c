"""The data-set interface: splits held in memory, on-device preprocessing and batch order."""

import dataclasses
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PADDING_MODES = ("reflect", "constant")
SPLITS = ("train", "test", "validation")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split in host memory: images (N, *input_shape) uint8 or float32, labels (N,) int32."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random crop after padding `padding` pixels on each side, and optional horizontal flip.

    `padding_mode` is 'reflect' (mirror the border) or 'constant' (zeros in raw pixel units,
    i.e. black). The crop has the input's own size.
    """

    padding: int = 4
    padding_mode: str = "reflect"
    flip: bool = True

    def __post_init__(self):
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode={self.padding_mode!r} is not one of {PADDING_MODES}")
        if not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"padding={self.padding!r} must be a non-negative int")


def augment(key: jax.Array, images: jax.Array, augmentation: Augmentation) -> jax.Array:
    """Pads, randomly crops and flips each image of (N, H, W, C) independently; jittable.

    Every image draws its own crop offsets and flip from `jax.random.split(key, N)`.
    """
    _, height, width, channels = images.shape
    pad = augmentation.padding
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), augmentation.padding_mode)

    def one(key, image):
        crop_key, flip_key = jax.random.split(key)
        top, left = jax.random.randint(crop_key, (2,), 0, 2 * pad + 1)
        image = lax.dynamic_slice(image, (top, left, 0), (height, width, channels))
        if augmentation.flip:
            image = jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)
        return image

    return jax.vmap(one)(jax.random.split(key, len(images)), padded)


def mixup(
    key: jax.Array, images: jax.Array, labels: jax.Array, alpha: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mixup (Zhang et al., 2018) of a batch with itself shifted by one; jittable.

    One weight w ~ Beta(alpha, alpha) is drawn for the batch, and example i becomes
    w·x_i + (1 − w)·x_(i−1): batches are already in random order, so the shift pairs random
    examples, and on a batch sharded over devices it moves one example per device. Train on
    `w·loss(labels) + (1 − w)·loss(partner_labels)`, which for cross-entropy (and, up to a
    constant, for the squared error) is the loss on the mixed one-hot targets.

    Args:
      key: a PRNG key.
      images: float (N, ...) inputs, already preprocessed.
      labels: int (N,) labels.
      alpha: the Beta distribution's parameters, > 0.

    Returns:
      (mixed images, partner labels (N,), w as a float32 scalar in [0, 1]).
    """
    if not alpha > 0:
        raise ValueError(f"alpha={alpha!r} must be > 0")
    weight = jax.random.beta(key, alpha, alpha).astype(jnp.float32)
    partner = jnp.roll(images, 1, axis=0)
    mixed = weight * images + (1.0 - weight) * partner
    return mixed.astype(images.dtype), jnp.roll(labels, 1, axis=0), weight


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set: splits, shapes and its preprocessing.

    Attributes:
      name: the name it was loaded by.
      num_classes: number of labels.
      input_shape: shape of one example, e.g. (32, 32, 3) or (40,).
      train, test: `Split`s in host memory, or None for data sets that stream (see `batches`).
      mean, std: float32 per-channel statistics of the training images in raw units, shape
        (C,) for images (H, W, C) and () for other inputs, used by `preprocess`.
      augmentation: the standard training augmentation of this data set, or None.
      stream: for data sets too large for memory, a function
        `(split_name, batch_size, seed, start_step, augment) -> iterator of Split` (see
        `batches`).
      validation: a `Split` carved out of the training data (`l2reg.data.split_validation`),
        disjoint from `train`, or None (no validation split).
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    train: Split | None
    test: Split | None
    mean: np.ndarray
    std: np.ndarray
    augmentation: Augmentation | None = None
    stream: Callable[..., Iterator[Split]] | None = None
    validation: Split | None = None

    def preprocess(self, images: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Raw images (N, *input_shape) -> float32, augmented when `key` is given, normalized.

        Jittable; meant to run on device inside the training step. Without `key`, or for a
        data set without standard augmentation, images are only normalized per channel.
        """
        images = jnp.asarray(images).astype(jnp.float32)
        if key is not None and self.augmentation is not None:
            images = augment(key, images, self.augmentation)
        return (images - self.mean) / self.std

    def batches(
        self, split: str, *, batch_size: int, seed: int, start_step: int = 0, augment: bool = True
    ) -> Iterator[Split]:
        """Iterator of raw global batches of `split` ('train', 'test' or 'validation') from
        `start_step`.

        Endless, except for a streamed test split, which runs once (its last batch partial).

        Batch `step` holds the examples `batch_indices(seed, step, ...)`, so a run resumed at
        `start_step` sees exactly the batches it would have seen. `augment` matters only for a
        streamed training split, which is augmented as it is decoded (False gives the test
        view); in-memory batches are raw, augmented on device by `preprocess`.
        """
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not one of {SPLITS}")
        if split == "validation" and self.validation is None:
            raise ValueError(f"data set {self.name!r} has no validation split")
        if self.stream is not None and split != "validation":
            return self.stream(split, batch_size, seed, start_step, augment)
        return _in_memory_batches(getattr(self, split), batch_size, seed, start_step)


def _in_memory_batches(split: Split, batch_size: int, seed: int, step: int) -> Iterator[Split]:
    indices_at = jax.jit(batch_indices, static_argnums=(2, 3))
    while True:
        indices = np.asarray(indices_at(seed, step, batch_size, len(split)))
        yield Split(split.images[indices], split.labels[indices])
        step += 1


def batch_indices(seed, step, batch_size: int, num_examples: int) -> jax.Array:
    """Indices (batch_size,) int32 of the examples in batch `step` of the run seeded by `seed`.

    Each epoch of num_examples // batch_size steps walks a fresh pseudo-random permutation of
    the examples, keyed by (seed, epoch), without replacement; num_examples % batch_size
    examples (a different set each epoch) are skipped in that epoch. Only the batch's own
    positions of the permutation are computed (see `permute`), so the cost is O(batch_size),
    not O(num_examples). Jittable with `seed` and `step` traced; `batch_size` and
    `num_examples` must be static ints.
    """
    for label, value in (("batch_size", batch_size), ("num_examples", num_examples)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{label}={value!r} must be a positive int")
    if batch_size > num_examples:
        raise ValueError(f"batch_size={batch_size} exceeds num_examples={num_examples}")
    if isinstance(step, int | np.integer) and not 0 <= step <= np.iinfo(np.int32).max:
        # A traced step cannot be checked here; a concrete one can, before it wraps around.
        raise ValueError(f"step must be an integer in [0, {np.iinfo(np.int32).max}], got {step}")
    epoch, position = jnp.divmod(jnp.asarray(step, jnp.int32), num_examples // batch_size)
    key = jax.random.fold_in(jax.random.key(seed), epoch)
    positions = position * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    return permute(key, positions, num_examples)


# Rounds of the Feistel network in `permute`; 4 already give a pseudo-random permutation
# (Luby & Rackoff, 1988), more rounds mix small domains better at negligible cost.
FEISTEL_ROUNDS = 8

# Cycle-walking steps in `permute` between two checks of the loop's condition. On a GPU each
# check is a read of the device from the host; a batch's slowest entry can need a dozen or
# more steps, while a step is a few integer operations per entry.
WALKS_PER_CHECK = 8


def _hash32(x: jax.Array) -> jax.Array:
    """A 32-bit integer mixing function (Wellons' "lowbias32"); uint32 in, uint32 out."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def permute(key: jax.Array, positions: jax.Array, num_examples: int) -> jax.Array:
    """Entries `positions` (int, in [0, num_examples)) of a random permutation keyed by `key`.

    A balanced Feistel network on 2·h bits (the smallest 2^(2h) >= num_examples) is a bijection
    of [0, 2^(2h)); cycle walking (re-applying it until the value falls below num_examples)
    restricts it to a bijection of [0, num_examples). Any entry costs O(1) expected work (at
    most 4 walks on average), so a batch never materializes the whole permutation. Jittable.
    The loop walks WALKS_PER_CHECK steps between checks of its condition; an entry already
    below num_examples stays put, so this changes the number of checks, not the result.
    """
    half_bits = max(1, (max(num_examples - 1, 1).bit_length() + 1) // 2)
    mask = jnp.uint32((1 << half_bits) - 1)
    round_keys = jax.random.bits(key, (FEISTEL_ROUNDS,), jnp.uint32)

    def encrypt(x):
        left, right = x >> half_bits, x & mask
        for round_key in round_keys:
            left, right = right, left ^ (_hash32(right ^ round_key) & mask)
        return (left << half_bits) | right

    def walk(x):
        for _ in range(WALKS_PER_CHECK):
            x = jnp.where(x < num_examples, x, encrypt(x))
        return x

    values = encrypt(jnp.asarray(positions).astype(jnp.uint32))
    values = lax.while_loop(lambda x: jnp.any(x >= num_examples), walk, values)
    return values.astype(jnp.int32)


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (float32) of raw images over all but the channel axis.

    Images (N, H, W, C) give shape (C,); any other shape (e.g. signals (N, L)) gives ().
    Accumulated in float64 over chunks, so uint8 data sets are never copied whole.
    """
    axes = (0, 1, 2) if images.ndim == 4 else tuple(range(images.ndim))
    total = total_squares = 0.0
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096].astype(np.float64)
        total = total + chunk.sum(axis=axes)
        total_squares = total_squares + np.square(chunk).sum(axis=axes)
    count = images.size / np.size(total)
    mean = total / count
    std = np.sqrt(np.maximum(total_squares / count - np.square(mean), 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel is only centered
    return mean.astype(np.float32), std.astype(np.float32)
