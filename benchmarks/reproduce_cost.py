"""Where the default reproduction's time goes, and how close it runs to this CPU's matmul rate.

    python benchmarks/reproduce_cost.py [--config=experiments/configs/reproduce_default.py]
        [--workdir=DIR] [--json=FILE]

Measures, in one process:
1. the machine's float32 matrix-product rate (a jitted 2048×2048 product, best of 5);
2. the preset's model FLOPs: each run's SGD steps times the FLOPs of one step (forward and
   backward, `l2reg.flops.matmul_flops` of the trainer's step, per example), plus its test
   evaluations (forward over the test set) — the useful work, without the padding of buckets;
3. the reproduction itself, from an empty cache, timed part by part (each runner call, the
   compilations included) and in all.

Prints seconds per part, the model FLOPs per part, the achieved GFLOP/s and its fraction of the
matmul rate. The target (issue "One training core") is the default preset in ≤ 4 minutes on 2
cores, or ≥ 50% of the measured matmul rate.
"""

import argparse
import collections
import json
import os
import tempfile
import time

import config_file
import jax
import jax.numpy as jnp
import numpy as np

from l2reg import files, flops, reproduction, training
from l2reg.reproduction import runners


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-product rate in FLOP/s (best of `repeats`)."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        product(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def flops_per_step_and_eval(config) -> tuple[float, float]:
    """Model FLOPs of one training step and of one evaluation over the test set."""
    trainer = training.create_trainer(config, devices=jax.devices()[:1])
    batch = next(trainer.train_batches(0))
    step = flops.matmul_flops(trainer.sharded_train_step, trainer.init_state(), *batch)

    def forward(state, images):
        variables = {"params": state.params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
        return trainer.model.apply(variables, images, train=False)

    forward_per_example = flops.matmul_flops(forward, trainer.init_state(), batch[0]) / len(
        batch[1]
    )
    return float(step), float(forward_per_example * len(trainer.dataset.test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        default=os.path.join(config_file.CONFIGS, "reproduce_default.py"),
        help="a reproduce preset config file",
    )
    parser.add_argument("--workdir", default=None, help="reproduction folder (default: a temp)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    preset = reproduction.Preset.from_config(config_file.load(args.config))
    if preset.driver != "sweep":
        parser.error(f"--config={args.config} trains through the trainer; this times sweeps")
    name = os.path.splitext(os.path.basename(args.config))[0]

    rate = matmul_rate()
    seconds, work = collections.defaultdict(float), collections.defaultdict(float)
    counts = collections.Counter()
    call = runners.SweepRunner.__call__

    def timed_call(runner, name, runs, eval_at=()):
        step_flops, eval_flops = flops_per_step_and_eval(runner.config)
        start = time.perf_counter()
        curves = call(runner, name, runs, eval_at)
        seconds[name] += time.perf_counter() - start
        counts[name] += len(runs)
        work[name] += sum(
            run.steps * step_flops + len(curve.steps) * eval_flops
            for run, curve in zip(runs, curves, strict=True)
        )
        return curves

    runners.SweepRunner.__call__ = timed_call
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or scratch
        start = time.perf_counter()
        reproduction.reproduce(workdir, preset, name=name, seeds=range(preset.seeds))
        total = time.perf_counter() - start
    runners.SweepRunner.__call__ = call

    print(f"matmul rate: {rate / 1e9:.1f} GFLOP/s (float32, 2048², {jax.devices()[0]})")
    print(f"{'part':10s} {'seconds':>8s} {'GFLOP':>9s} {'GFLOP/s':>8s} {'of rate':>8s}")
    for part in seconds:
        achieved = work[part] / seconds[part]
        print(
            f"{part:10s} {seconds[part]:8.1f} {work[part] / 1e9:9.1f} {achieved / 1e9:8.1f} "
            f"{achieved / rate:8.1%}"
        )
    other = total - sum(seconds.values())
    achieved = sum(work.values()) / total
    print(f"{'analysis, plots, report':24s} {other:.1f} s")
    print(
        f"total: {total:.1f} s, {sum(work.values()) / 1e9:.1f} GFLOP, {achieved / 1e9:.1f} "
        f"GFLOP/s = {achieved / rate:.1%} of the matmul rate; target ≤ 240 s or ≥ 50%: "
        f"{'met' if total <= 240 or achieved >= 0.5 * rate else 'missed'}"
    )
    if args.json:
        results = {
            "preset": name,
            "matmul_gflops": rate / 1e9,
            "seconds": dict(seconds),
            "gflop": {name: value / 1e9 for name, value in work.items()},
            "other_seconds": other,
            "total_seconds": total,
            "fraction_of_matmul_rate": achieved / rate,
            "runs": dict(counts),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
        }
        files.write_atomic(args.json, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
