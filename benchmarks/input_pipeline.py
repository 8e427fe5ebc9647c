"""Can the input pipeline limit training? In-memory augmented CIFAR vs a WRN training step.

    python benchmarks/input_pipeline.py --batch=16 --steps=5               # CPU
    python benchmarks/input_pipeline.py --batch=1024 --dtype=bfloat16      # accelerator

Measures, on the default device and at the same batch size:

- `input`: the in-memory CIFAR path of `l2reg.data` — training images held in device memory,
  a batch gathered by `batch_indices(seed, step)`, then `Dataset.preprocess` with a key
  (4-pixel reflect pad, random crop, horizontal flip, per-channel normalization), all jitted;
- `host_input`: the same batches gathered on the host by `Dataset.batches`, copied to the
  device and preprocessed there (the path for data that is not held on device);
- `train`: one training step of the model (cross-entropy, SGD with momentum 0.9, batch-norm
  statistics updated), written minimally here, on an already preprocessed batch.

CIFAR-10 comes from TFDS when it is prepared in --data_dir (TensorFlow is imported only then);
otherwise 50,000 random CIFAR-shaped uint8 images, which cost the same to gather and augment.
Compilation and --warmup steps are excluded. Prints images/s of each and the ratio
input/train: far above 1 means input cannot limit training.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import optax
from wrn_cifar import cifar10_or_random

from l2reg import data, models


def images_per_second(step, state, batch_size: int, steps: int, warmup: int) -> float:
    """Runs `state = step(state, i)` for warmup + steps iterations; times the last `steps`."""
    for i in range(warmup):
        state = step(state, i)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        state = step(state, i)
    jax.block_until_ready(state)
    return batch_size * steps / (time.perf_counter() - start)


def input_step(dataset: data.Dataset, batch_size: int):
    """Jitted (images on device, step) -> preprocessed batch, as a training loop would run it."""
    num_examples = len(dataset.train)

    @jax.jit
    def step(images, step):
        indices = data.batch_indices(0, step, batch_size, num_examples)
        key = jax.random.fold_in(jax.random.key(0), step)
        return dataset.preprocess(images[indices], key=key)

    return step


def train_step(model, learning_rate: float = 0.1):
    """Jitted SGD-momentum step on ((params, batch_stats, opt_state), images, labels)."""
    optimizer = optax.sgd(learning_rate, momentum=0.9)

    def loss_fn(params, batch_stats, images, labels):
        logits, updates = model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, updates.get("batch_stats", {})

    @jax.jit
    def step(state, images, labels):
        params, batch_stats, opt_state = state
        grads, batch_stats = jax.grad(loss_fn, has_aux=True)(params, batch_stats, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state

    return step, optimizer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="images per step")
    parser.add_argument("--model", default="wrn28_10", help="a name for l2reg.models.create")
    parser.add_argument("--dtype", default="float32", help="compute dtype of the model")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--input_steps", type=int, default=50, help="timed input steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--data_dir", default=None, help="TFDS data directory")
    parser.add_argument("--num_train", type=int, default=50_000, help="random images if no TFDS")
    args = parser.parse_args()
    for name in ("batch", "steps", "input_steps", "num_train"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name}={getattr(args, name)} must be positive")
    model = models.create(args.model, num_classes=10, dtype=args.dtype)

    dataset = cifar10_or_random(args.data_dir, args.num_train)
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(f"data: {dataset.name}, {len(dataset.train)} training images, batch {args.batch}")

    preprocess = input_step(dataset, args.batch)
    train_images = jax.device_put(dataset.train.images)
    input_rate = images_per_second(
        lambda _, i: preprocess(train_images, i), None, args.batch, args.input_steps, args.warmup
    )
    host_batches = dataset.batches("train", batch_size=args.batch, seed=0)
    host_preprocess = jax.jit(dataset.preprocess)
    host_rate = images_per_second(
        lambda _, i: host_preprocess(
            jax.device_put(next(host_batches).images), key=jax.random.key(i)
        ),
        None,
        args.batch,
        args.input_steps,
        args.warmup,
    )

    images = preprocess(train_images, 0)
    labels = jnp.asarray(dataset.train.labels[: args.batch])
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)
    step, optimizer = train_step(model)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    state = (params, batch_stats, optimizer.init(params))
    train_rate = images_per_second(
        lambda state, _: step(state, images, labels), state, args.batch, args.steps, args.warmup
    )

    print(f"input (device-resident, gather + augment + normalize): {input_rate:,.0f} images/s")
    print(f"host_input (host gather, copy, augment + normalize):  {host_rate:,.0f} images/s")
    print(f"train ({args.model} {args.dtype}, SGD momentum):       {train_rate:,.1f} images/s")
    print(
        f"ratio input/train: {input_rate / train_rate:,.0f}x; "
        f"host_input/train: {host_rate / train_rate:,.0f}x"
    )


if __name__ == "__main__":
    main()
