"""Is a vmapped sweep faster than the same runs one after another?

    python benchmarks/sweep_speedup.py [--steps=2000] [--setup=mnist1d_batch_norm]

Trains 16 configurations (4 values of λ × 4 seeds, one learning rate, the same number of
steps) of one small model twice in the same process: once as one vmapped `l2reg.training.sweep.run`
(one bucket of 16), and once as 16 `sweep.run` calls of one configuration each. Both use the
same code path, chunk length and evaluation steps; compilation is excluded (each program is
compiled by a short warm-up first). Prints the time per configuration-step of each and the
ratio sequential / vmapped (the goal is ≥ 5).

Then it times, alone in a `lax.scan` of as many steps, two parts of the sweep's step whose cost
on an accelerator does not follow their arithmetic: the batch order (`l2reg.data.batch_indices`
for 16 seeds, a data-dependent `while_loop`) and the per-step evaluation branch (a `lax.cond`
that is false on most steps). With `--profile_dir`, a `jax.profiler` trace of one vmapped chunk
is recorded there.
"""

import argparse
import time

import jax
import jax.numpy as jnp
from ml_collections import config_dict

from l2reg import data, training
from l2reg.training import sweep


def _mnist1d_batch_norm() -> config_dict.ConfigDict:
    config = training.default_config()
    config.dataset = "mnist1d"
    config.model_options = config_dict.ConfigDict(
        {"use_bias": False, "normalization": "batch", "widths": (128, 128)}
    )
    config.optimizer = "sgd"
    return config


def _digits_ntk_mse() -> config_dict.ConfigDict:
    config = training.default_config()
    config.model_options = config_dict.ConfigDict(
        {"parameterization": "ntk", "use_bias": False, "widths": (256, 256)}
    )
    config.loss, config.mse_targets, config.optimizer = "mse", "centered", "sgd"
    return config


SETUPS = {"mnist1d_batch_norm": _mnist1d_batch_norm, "digits_ntk_mse": _digits_ntk_mse}
NUM_CONFIGS = 16


def timed(config, groups: list[list[sweep.Run]], chunk_steps: int) -> float:
    """Seconds to train each group of runs as one sweep, one group after another."""
    start = time.perf_counter()
    for runs in groups:
        sweep.run(config, runs, chunk_steps=chunk_steps, progress=False)
    return time.perf_counter() - start


def scan_time(body, num_steps: int) -> float:
    """Seconds per step of `lax.scan(body)` over steps 0 … num_steps − 1, compiled first."""
    loop = jax.jit(lambda: jax.lax.scan(body, jnp.int32(0), jnp.arange(num_steps))[0])
    loop().block_until_ready()
    start = time.perf_counter()
    loop().block_until_ready()
    return (time.perf_counter() - start) / num_steps


def part_costs(config, num_steps: int) -> dict[str, float]:
    """Seconds per step of the batch order and of a mostly skipped `lax.cond`, each alone."""
    num_examples = len(data.load(config.dataset).train)
    seeds = jnp.arange(NUM_CONFIGS)
    is_eval = jnp.arange(num_steps + 1) % 100 == 0

    def batch_order(carry, step):
        indices = jax.vmap(data.batch_indices, in_axes=(0, None, None, None))(
            seeds, step, config.batch_size, num_examples
        )
        return carry + indices[:, 0].sum(), None

    def branch(carry, step):
        return jax.lax.cond(is_eval[step + 1], lambda c: c + 1, lambda c: c, carry), None

    return {
        "batch order (16 seeds)": scan_time(batch_order, num_steps),
        "evaluation branch": scan_time(branch, num_steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="SGD steps per configuration")
    parser.add_argument("--setup", choices=sorted(SETUPS), default="mnist1d_batch_norm")
    parser.add_argument("--chunk_steps", type=int, default=500)
    parser.add_argument("--profile_dir", default=None, help="record a profiler trace here")
    args = parser.parse_args()
    if args.steps < 1 or args.chunk_steps < 1:
        parser.error(f"--steps and --chunk_steps must be ≥ 1, got {args.steps}, {args.chunk_steps}")

    config = SETUPS[args.setup]()
    lr = 0.1

    def grid(num_steps):
        return [
            sweep.Run(l2, lr, seed, num_steps)
            for l2 in (1e-4, 1e-3, 3e-3, 1e-2)
            for seed in range(NUM_CONFIGS // 4)
        ]

    configs = grid(args.steps)
    warmup = grid(args.chunk_steps)
    # Compile both programs (a bucket of 16 and a bucket of 1) before timing.
    timed(config, [warmup, warmup[:1]], args.chunk_steps)
    vmapped = timed(config, [configs], args.chunk_steps)
    sequential = timed(config, [[config] for config in configs], args.chunk_steps)
    config_steps = NUM_CONFIGS * args.steps
    print(f"setup: {args.setup}")
    print(f"{NUM_CONFIGS} configurations × {args.steps} steps")
    for name, seconds in (("vmapped", vmapped), ("sequential", sequential)):
        per_step = 1e6 * seconds / config_steps
        print(f"{name + ':':12s}{seconds:7.2f} s  ({per_step:6.1f} µs/config-step)")
    print(f"speedup (sequential / vmapped): {sequential / vmapped:.1f}×")
    print(f"vmapped step: {1e6 * vmapped / args.steps:.1f} µs; of which, timed alone:")
    for name, seconds in part_costs(config, args.steps).items():
        print(f"  {name}: {1e6 * seconds:.1f} µs/step")
    if args.profile_dir:
        with jax.profiler.trace(args.profile_dir, create_perfetto_trace=True):
            timed(config, [warmup], args.chunk_steps)
        print(f"profile of one vmapped chunk of {args.chunk_steps} steps: {args.profile_dir}")


if __name__ == "__main__":
    main()
