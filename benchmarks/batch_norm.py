"""One batch-norm + ReLU layer in training, forward and backward: the models' batch norm with
its hand-written gradient (`l2reg.models.batch_norm.BatchNorm`) vs flax's `nn.BatchNorm` and
`nn.relu` differentiated by JAX, timed interleaved in one run.

    python benchmarks/batch_norm.py --shape=1024,32,32,160 --dtype=bfloat16

The default shape is a WRN-28-10 layer of the first group at batch 1024. Each timed call
returns the layer's output, the input and parameter gradients and the new running averages, as
a training step needs them. Prints the median time of each, their ratio, and the bytes XLA's
cost analysis counts for each compiled program (reads and writes of every fusion).
"""

import argparse
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import tqdm

from l2reg.models import batch_norm

IMPLEMENTATIONS = ("hand_written", "autodiff")


def make_step(implementation: str, dtype, batch_stats):
    """Jitted (params, x, g) -> (y, dx, d_params, new batch_stats) of one layer in training."""
    if implementation == "hand_written":
        module = batch_norm.BatchNorm(use_running_average=False, relu=True, dtype=dtype)
    else:
        module = nn.BatchNorm(
            use_running_average=False, momentum=batch_norm.BATCH_NORM_MOMENTUM, dtype=dtype
        )

    def forward(params, x):
        y, updates = module.apply(
            {"params": params, "batch_stats": batch_stats}, x, mutable=["batch_stats"]
        )
        return (y if implementation == "hand_written" else nn.relu(y)), updates

    @jax.jit
    def step(params, x, g):
        y, backward, updates = jax.vjp(forward, params, x, has_aux=True)
        d_params, dx = backward(g)
        return y, dx, d_params, updates

    return step


def time_block(step, args, calls: int) -> float:
    """Seconds per call over `calls` calls, synchronized at the end only."""
    start = time.perf_counter()
    for _ in range(calls):
        result = step(*args)
    jax.block_until_ready(result)
    return (time.perf_counter() - start) / calls


def bytes_accessed(step, args) -> float:
    analysis = step.lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("bytes accessed", float("nan")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="1024,32,32,160", help="N,H,W,C of the activations")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds")
    parser.add_argument("--calls", type=int, default=20, help="calls per timed block")
    args = parser.parse_args()
    for name in ("rounds", "calls"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be ≥ 1, got {getattr(args, name)}")
    try:
        shape = tuple(int(size) for size in args.shape.split(","))
    except ValueError:
        shape = ()
    if len(shape) < 2 or min(shape) < 1:
        parser.error(
            f"--shape must be two or more positive ints like 1024,32,32,160, got {args.shape}"
        )

    dtype = jnp.dtype(args.dtype)
    keys = jax.random.split(jax.random.key(0), 2)
    x = (2.0 * jax.random.normal(keys[0], shape) + 0.5).astype(dtype)
    g = jax.random.normal(keys[1], shape).astype(dtype)
    # Both layers have the same variables (tested in tests/models/test_batch_norm.py).
    variables = jax.jit(nn.BatchNorm(use_running_average=False).init)(jax.random.key(1), x)
    steps = {
        implementation: make_step(implementation, dtype, variables["batch_stats"])
        for implementation in IMPLEMENTATIONS
    }
    inputs = (variables["params"], x, g)
    seconds = {implementation: [] for implementation in IMPLEMENTATIONS}
    for implementation in IMPLEMENTATIONS:  # compile and warm up
        time_block(steps[implementation], inputs, args.calls)
    for _ in tqdm.trange(args.rounds, desc="timing", unit="round"):
        for implementation in IMPLEMENTATIONS:
            seconds[implementation].append(time_block(steps[implementation], inputs, args.calls))

    device = jax.devices()[0]
    megabytes = x.size * dtype.itemsize / 1e6
    print(f"device: {device.device_kind}, jax {jax.__version__}")
    print(
        f"batch norm + ReLU, forward and backward, {shape} {args.dtype} "
        f"({megabytes:.1f} MB per pass over the activations)"
    )
    medians = {}
    for implementation in IMPLEMENTATIONS:
        medians[implementation] = statistics.median(seconds[implementation])
        traffic = bytes_accessed(steps[implementation], inputs) / 1e6
        print(
            f"{implementation:>13}: {1e3 * medians[implementation]:.3f} ms "
            f"(median of {args.rounds} blocks), XLA counts {traffic:.1f} MB accessed "
            f"({traffic / megabytes:.1f} passes)"
        )
    ratio = medians["hand_written"] / medians["autodiff"]
    print(f"hand-written / autodiff time: {ratio:.3f}")


if __name__ == "__main__":
    main()
