"""AutoL2's cost in a training step: one jitted SGD step with `l2reg.autol2` vs
`optax.add_decayed_weights`, timed interleaved in one run so machine noise hits both.

    python benchmarks/transform_overhead.py [--width 1024] [--batch 256] [--rounds 30]

Prints the median step time of each and their ratio (target: AutoL2 ≤ 1.03×).
"""

import argparse
import statistics
import time

import jax
import optax

import l2reg
from l2reg import models


def make_step(model, optimizer):
    """A jitted SGD step (cross-entropy) that feeds the loss to the optimizer as `value`."""

    def loss_fn(params, images, labels):
        logits = model.apply({"params": params}, images, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(params, opt_state, images, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
        # optax.chain forwards `value` to autol2 and drops it for transforms without extra args.
        updates, opt_state = optimizer.update(grads, opt_state, params, value=loss)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def time_block(step, carry, images, labels, steps):
    """Seconds per step over ``steps`` steps, synchronized at the end only."""
    params, opt_state = carry
    start = time.perf_counter()
    for _ in range(steps):
        params, opt_state, loss = step(params, opt_state, images, labels)
    loss.block_until_ready()
    return (time.perf_counter() - start) / steps, (params, opt_state)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1024, help="hidden width of the 2-layer MLP")
    parser.add_argument("--batch", type=int, default=256, help="examples per step")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    args = parser.parse_args()
    for name in ("width", "batch", "rounds", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be ≥ 1, got {getattr(args, name)}")

    model = models.create("mlp", num_classes=10, widths=(args.width, args.width))
    images = jax.random.normal(jax.random.key(0), (args.batch, 784))
    labels = jax.random.randint(jax.random.key(1), (args.batch,), 0, 10)
    params = model.init(jax.random.key(2), images, train=False)["params"]
    lr, l2 = 0.1, 5e-4
    optimizers = {
        "add_decayed_weights": optax.chain(optax.add_decayed_weights(l2), optax.sgd(lr, 0.9)),
        # check_every=1 runs the full rule at every step: the worst case.
        "autol2": optax.chain(l2reg.autol2(l2, lr, check_every=1), optax.sgd(lr, 0.9)),
    }
    steps = {name: make_step(model, optimizer) for name, optimizer in optimizers.items()}
    carries = {name: (params, optimizer.init(params)) for name, optimizer in optimizers.items()}
    times = {name: [] for name in optimizers}
    for name in optimizers:  # compile and warm up
        _, carries[name] = time_block(steps[name], carries[name], images, labels, args.steps)
    for _ in range(args.rounds):
        for name in optimizers:
            seconds, carries[name] = time_block(
                steps[name], carries[name], images, labels, args.steps
            )
            times[name].append(seconds)

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    print(f"MLP 784-{args.width}-{args.width}-10, batch {args.batch}, SGD momentum 0.9")
    for name, median in medians.items():
        print(f"{name:>20}: {1e3 * median:.3f} ms/step (median of {args.rounds} blocks)")
    ratio = medians["autol2"] / medians["add_decayed_weights"]
    print(f"autol2 / add_decayed_weights step time: {ratio:.3f} (target ≤ 1.03)")


if __name__ == "__main__":
    main()
