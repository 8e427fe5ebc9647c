"""Where the default reproduction's time goes, and how close it runs to this CPU's matmul rate.

    python benchmarks/reproduce_cost.py [--config=experiments/configs/reproduce_default.py]
        [--workdir=DIR] [--json=FILE]

Measures, in one process:
1. the machine's float32 matrix-product rate (a jitted 2048×2048 product, best of 5);
2. the preset's model FLOPs per runner call: its member-steps (the sum of its runs' steps, from
   the reproduction's own plan, `reproduction._planned`) times the FLOPs of one step of its
   config (forward and backward, `l2reg.flops.matmul_flops` of the trainer's step), plus its
   evaluations (a forward pass over the test set and the validation split) — the useful work,
   without the padding of buckets;
3. the reproduction itself, from an empty cache, timed runner call by runner call (one per part
   and data draw, e.g. 'digits_mse: λ grid (draw 0)', the compilations included) and in all.

Prints each call's member-steps, seconds, model FLOPs, achieved GFLOP/s and its fraction of the
matmul rate, then the totals; exits with an error if the calls made differ from the plan. The
target (issue "One training core") is the default preset in ≤ 4 minutes on 2 cores, or ≥ 50% of
the measured matmul rate.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import config_file
import jax
import jax.numpy as jnp
import numpy as np

from l2reg import files, flops, reproduction, training
from l2reg.reproduction import runners
from l2reg.training import rundir


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
    """Model FLOPs of one training step and of one evaluation (the test set and the validation
    split, when there is one)."""
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
    dataset = trainer.dataset
    evaluated = len(dataset.test) + (0 if dataset.validation is None else len(dataset.validation))
    return float(step), float(forward_per_example * evaluated)


def config_key(config) -> str:
    """A runner config's identity for its FLOPs: the same for every data draw (a draw sets
    only the label-noise and validation seeds)."""
    return json.dumps(rundir.config_json(reproduction.draw_config(config, 0)), sort_keys=True)


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
    # Every runner call the reproduction will make, with its member-steps; and the FLOPs of a
    # step and of an evaluation of each config it trains, measured before the clock starts.
    planned = reproduction._planned(preset, preset.replicas())
    costs = {}
    for config in (preset.t_star.config, *(setup.base_config() for setup in preset.setups)):
        key = config_key(config)
        if key not in costs:
            costs[key] = flops_per_step_and_eval(config)
    seconds, work, runs_per_call, unplanned = {}, {}, {}, []
    call = runners.SweepRunner.__call__

    def timed_call(runner, name, runs, eval_at=()):
        start = time.perf_counter()
        curves = call(runner, name, runs, eval_at)
        seconds[name] = time.perf_counter() - start
        runs_per_call[name] = len(runs)
        if planned.get(name) != sum(run.steps for run in runs):
            unplanned.append(name)
            return curves
        step_flops, eval_flops = costs[config_key(runner.config)]
        evaluations = sum(len(curve.steps) for curve in curves)
        work[name] = planned[name] * step_flops + evaluations * eval_flops
        return curves

    runners.SweepRunner.__call__ = timed_call
    try:
        with tempfile.TemporaryDirectory() as scratch:
            workdir = args.workdir or scratch
            start = time.perf_counter()
            reproduction.reproduce(workdir, preset, name=name)
            total = time.perf_counter() - start
    finally:
        runners.SweepRunner.__call__ = call
    if unplanned or set(seconds) != set(planned):
        sys.exit(
            f"the reproduction's runner calls {sorted(seconds)} differ from its plan "
            f"{sorted(planned)} (calls off the plan or with other member-steps: {unplanned}): "
            "reproduction._planned is out of date"
        )

    print(f"matmul rate: {rate / 1e9:.1f} GFLOP/s (float32, 2048², {jax.devices()[0]})")
    width = max(len(call_name) for call_name in seconds)
    print(
        f"{'runner call':{width}s} {'member-steps':>12s} {'seconds':>8s} {'GFLOP':>9s} "
        f"{'GFLOP/s':>8s} {'of rate':>8s}"
    )
    for call_name in planned:
        achieved = work[call_name] / seconds[call_name]
        print(
            f"{call_name:{width}s} {planned[call_name]:12,d} {seconds[call_name]:8.1f} "
            f"{work[call_name] / 1e9:9.1f} {achieved / 1e9:8.1f} {achieved / rate:8.1%}"
        )
    other = total - sum(seconds.values())
    achieved = sum(work.values()) / total
    print(f"{'analysis, plots, report':{width}s} {other:.1f} s")
    print(
        f"total: {total:.1f} s, {sum(planned.values()):,} member-steps, "
        f"{sum(work.values()) / 1e9:.1f} GFLOP, {achieved / 1e9:.1f} GFLOP/s = "
        f"{achieved / rate:.1%} of the matmul rate; target ≤ 240 s or ≥ 50%: "
        f"{'met' if total <= 240 or achieved >= 0.5 * rate else 'missed'}"
    )
    if args.json:
        results = {
            "preset": name,
            "matmul_gflops": rate / 1e9,
            "seconds": seconds,
            "member_steps": planned,
            "gflop": {call_name: value / 1e9 for call_name, value in work.items()},
            "other_seconds": other,
            "total_seconds": total,
            "fraction_of_matmul_rate": achieved / rate,
            "runs": runs_per_call,
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
        }
        files.write_atomic(args.json, json.dumps(results, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
