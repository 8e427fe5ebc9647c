"""Is a vmapped sweep faster than the same runs one after another?

    python benchmarks/sweep_speedup.py [--steps=2000] [--setup=mnist1d_batch_norm]

Trains 16 configurations (4 values of λ × 4 seeds, one learning rate, the same number of
steps) of one small model twice in the same process: once as one vmapped `l2reg.sweep.run`
(one bucket of 16), and once as 16 `sweep.run` calls of one configuration each. Both use the
same code path, chunk length and evaluation steps; compilation is excluded (each program is
compiled by a short warm-up first). Prints the time per configuration-step of each and the
ratio sequential / vmapped (the goal is ≥ 5).
"""

import argparse
import time

from l2reg import sweep

SETUPS = {
    "mnist1d_batch_norm": sweep.Setup(
        "mnist1d",
        model_options=(("use_bias", False), ("normalization", "batch"), ("widths", (128, 128))),
    ),
    "digits_ntk_mse": sweep.Setup(
        "digits",
        loss="mse",
        model_options=(("parameterization", "ntk"), ("use_bias", False), ("widths", (256, 256))),
    ),
}
NUM_CONFIGS = 16


def timed(setup: sweep.Setup, groups: list[list[sweep.Config]], chunk_steps: int) -> float:
    """Seconds to train each group of configurations as one sweep, one group after another."""
    start = time.perf_counter()
    for configs in groups:
        sweep.run(setup, configs, chunk_steps=chunk_steps, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="SGD steps per configuration")
    parser.add_argument("--setup", choices=sorted(SETUPS), default="mnist1d_batch_norm")
    parser.add_argument("--chunk_steps", type=int, default=500)
    args = parser.parse_args()
    if args.steps < 1 or args.chunk_steps < 1:
        parser.error(f"--steps and --chunk_steps must be ≥ 1, got {args.steps}, {args.chunk_steps}")

    setup = SETUPS[args.setup]
    lr = 0.1

    def grid(num_steps):
        return [
            sweep.Config(l2, lr, seed, num_steps)
            for l2 in (1e-4, 1e-3, 3e-3, 1e-2)
            for seed in range(NUM_CONFIGS // 4)
        ]

    configs = grid(args.steps)
    warmup = grid(args.chunk_steps)
    # Compile both programs (a bucket of 16 and a bucket of 1) before timing.
    timed(setup, [warmup, warmup[:1]], args.chunk_steps)
    vmapped = timed(setup, [configs], args.chunk_steps)
    sequential = timed(setup, [[config] for config in configs], args.chunk_steps)
    config_steps = NUM_CONFIGS * args.steps
    print(f"setup: {setup.describe()}")
    print(f"{NUM_CONFIGS} configurations × {args.steps} steps")
    for name, seconds in (("vmapped", vmapped), ("sequential", sequential)):
        per_step = 1e6 * seconds / config_steps
        print(f"{name + ':':12s}{seconds:7.2f} s  ({per_step:6.1f} µs/config-step)")
    print(f"speedup (sequential / vmapped): {sequential / vmapped:.1f}×")


if __name__ == "__main__":
    main()
