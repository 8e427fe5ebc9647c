"""Training throughput of the trainer's own step, in images/s and TFLOP/s.

    python benchmarks/throughput.py --model=wrn28_10 --batch=1024 --dtype=bfloat16 --steps=50

Times `l2reg.training.create_trainer(config).sharded_train_step` of the WRN CIFAR-10 config —
batch norm, on-device augmentation, the L2 transform and the data-parallel shard_map over all local
devices
included — in four variants, interleaved round by round so drifts hit all alike:

- `synthetic`: one device-resident batch reused every step (the step alone), with AutoL2;
- `real`: the trainer's own batch iterator over the in-memory training set (CIFAR-10 from TFDS
  when it is prepared in --data_dir, otherwise 50,000 random CIFAR-shaped uint8 images, which
  cost the same to gather, augment and transfer), with AutoL2;
- `fixed_l2`: as `synthetic`, with a fixed λ instead of AutoL2;
- `autodiff_bn`: as `synthetic`, with flax's batch norm and ReLU differentiated by JAX instead
  of the models' batch norm with a hand-written gradient (`fused_batch_norm=False`).

Warm-up steps (and compilation) are excluded. FLOPs are counted on the step's jaxpr by
`l2reg.flops.matmul_flops_by_layer` (XLA's cost analysis misses cuDNN convolutions on GPU).
Prints one line per variant and the ratios the targets are stated in; `--json=FILE` also writes
them, and the FLOPs per layer, to FILE. `--profile_dir=DIR` then records a `jax.profiler` trace
of a few synthetic steps in DIR: `profile_summary.py DIR --flops=FILE` splits it by kind, pass
and layer, with each layer's TFLOP/s (or open `perfetto_trace.json.gz` in ui.perfetto.dev, or
DIR in TensorBoard's or XProf's profile viewer).
"""

import argparse
import glob
import os
import statistics
import time

import jax
import tqdm
import wrn_cifar

from l2reg import training
from l2reg.flops import matmul_flops_by_layer

VARIANTS = ("synthetic", "real", "fixed_l2", "autodiff_bn")


def make_config(args: argparse.Namespace, l2_mode: str, fused_batch_norm: bool = True):
    config = wrn_cifar.config(
        args,
        l2_mode=l2_mode,
        l2=0.2 if l2_mode == "autol2" else 1e-3,
        steps=1_000_000,  # far beyond the run: the schedule stays at its first value
    )
    config.model_options.fused_batch_norm = fused_batch_norm
    return config


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    wrn_cifar.add_arguments(parser)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps after compiling")
    parser.add_argument("--profile_dir", default=None, help="record a profiler trace here")
    parser.add_argument("--profile_steps", type=int, default=5, help="steps in the trace")
    args = parser.parse_args()
    wrn_cifar.require_positive(parser, args, "steps", "rounds", "warmup", "profile_steps")

    dataset = wrn_cifar.cifar10_or_random(args.data_dir)
    trainers = {
        "autol2": training.create_trainer(make_config(args, "autol2"), dataset=dataset),
        "fixed_l2": training.create_trainer(make_config(args, "fixed"), dataset=dataset),
        "autodiff_bn": training.create_trainer(
            make_config(args, "autol2", fused_batch_norm=False), dataset=dataset
        ),
    }
    trainer_of = {
        "synthetic": "autol2",
        "real": "autol2",
        "fixed_l2": "fixed_l2",
        "autodiff_bn": "autodiff_bn",
    }
    batches = trainers["autol2"].train_batches(0)
    synthetic = next(batches)  # a real batch, already sharded over the devices
    states = {variant: trainers[trainer_of[variant]].init_state() for variant in VARIANTS}
    flops_by_layer = matmul_flops_by_layer(
        trainers["autol2"].sharded_train_step, states["synthetic"], *synthetic
    )
    flops = sum(flops_by_layer.values())

    def run(variant: str, steps: int) -> float:
        """Seconds per step over `steps` steps, synchronized at the end only."""
        step_fn = trainers[trainer_of[variant]].sharded_train_step
        state = states[variant]
        start = time.perf_counter()
        for _ in range(steps):
            inputs = next(batches) if variant == "real" else synthetic
            state = step_fn(state, *inputs)
        jax.block_until_ready(state)
        states[variant] = state
        return (time.perf_counter() - start) / steps

    # Compiling the WRN-28-10 step takes minutes on a GPU: show where the time goes.
    for variant in tqdm.tqdm(VARIANTS, desc="compiling and warming up", unit="variant"):
        run(variant, args.warmup)
    seconds = {variant: [] for variant in VARIANTS}
    for _ in tqdm.trange(args.rounds, desc="timing", unit="round"):
        for variant in VARIANTS:
            seconds[variant].append(run(variant, args.steps))

    setup = wrn_cifar.describe(args, dataset)
    print(setup)
    print(f"{flops / args.batch / 1e9:.2f} GFLOP per image (convolutions and matmuls, fwd+bwd)")
    results = {
        "setup": setup,
        "gflop_per_image": flops / args.batch / 1e9,
        # Per step, for profile_summary.py's TFLOP/s by layer.
        "gflop_by_layer": {layer: count / 1e9 for layer, count in flops_by_layer.items()},
    }
    for variant in VARIANTS:
        median = statistics.median(seconds[variant])
        figures = results[variant] = {
            "images_per_sec": args.batch / median,
            "ms_per_step": 1e3 * median,
            "tflop_per_sec": flops / median / 1e12,
        }
        print(
            f"{variant:>10}: {figures['images_per_sec']:10.1f} images/s "
            f"({figures['ms_per_step']:.2f} ms/step, {figures['tflop_per_sec']:.2f} TFLOP/s)"
        )
    rate = {variant: results[variant]["images_per_sec"] for variant in VARIANTS}
    results["real_over_synthetic"] = rate["real"] / rate["synthetic"]
    results["autol2_over_fixed_step_time"] = rate["fixed_l2"] / rate["synthetic"]
    results["hand_written_over_autodiff_bn_step_time"] = rate["autodiff_bn"] / rate["synthetic"]
    print(f"real / synthetic input: {results['real_over_synthetic']:.3f} (target ≥ 0.95)")
    print(
        f"AutoL2 / fixed-λ step time: {results['autol2_over_fixed_step_time']:.3f} (target ≤ 1.01)"
    )
    print(
        "batch norm, hand-written / autodiff gradient step time: "
        f"{results['hand_written_over_autodiff_bn_step_time']:.3f}"
    )
    wrn_cifar.write_json(args, results)
    if args.profile_dir:
        with jax.profiler.trace(args.profile_dir, create_perfetto_trace=True):
            run("synthetic", args.profile_steps)
        traces = glob.glob(
            os.path.join(args.profile_dir, "**", "perfetto_trace.json.gz"), recursive=True
        )
        newest = max(traces, key=os.path.getmtime) if traces else args.profile_dir
        print(f"profile of {args.profile_steps} synthetic steps: {newest}")


if __name__ == "__main__":
    main()
