"""Training throughput through the whole loop, `l2reg.training.train_and_evaluate`, in images/s.

    python benchmarks/train_loop.py --model=wrn28_10 --batch=1024 --dtype=bfloat16 --steps=400

`throughput.py` times the trainer's step alone; this runs the trainer's loop as a launch does
(the batch iterator over the in-memory training set, the progress bar, a metrics line with a
test evaluation every --eval_every steps, queued behind its step, and a checkpoint at the end)
on the WRN CIFAR-10 config with AutoL2, in a fresh temporary workdir. The data are CIFAR-10
from TFDS when prepared in --data_dir, otherwise 50,000 random CIFAR-shaped uint8 images (the
same cost); evaluation reads the first --test_size test images.

The figure is each metrics line's `steps_per_sec` (evaluation and checkpoints left out) times
the batch, the first line, which includes compilation, excepted: prints their median, and
with the model FLOPs of `l2reg.flops.matmul_flops`, the TFLOP/s. `--json=FILE` also writes
the figures to FILE.
"""

import argparse
import dataclasses
import statistics
import tempfile

import wrn_cifar

from l2reg import data, training
from l2reg.flops import matmul_flops


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    wrn_cifar.add_arguments(parser)
    parser.add_argument("--steps", type=int, default=400, help="training steps in all")
    parser.add_argument("--eval_every", type=int, default=100, help="steps between lines")
    parser.add_argument("--test_size", type=int, default=10_000, help="test images evaluated")
    args = parser.parse_args()
    wrn_cifar.require_positive(parser, args, "steps", "eval_every", "test_size")
    if args.steps < 2 * args.eval_every:
        parser.error(
            f"--steps must be ≥ 2 × --eval_every (a line after the compiling one), got "
            f"{args.steps} steps and --eval_every={args.eval_every}"
        )

    dataset = wrn_cifar.cifar10_or_random(args.data_dir)
    test = data.Split(dataset.test.images[: args.test_size], dataset.test.labels[: args.test_size])
    dataset = dataclasses.replace(dataset, test=test)
    config = wrn_cifar.config(
        args,
        eval_batch_size=min(args.batch, len(test.labels)),
        l2_mode="autol2",
        l2=0.2,
        steps=args.steps,
        eval_every=args.eval_every,
        checkpoint_every=args.steps,
    )
    trainer = training.create_trainer(config, dataset=dataset)
    flops = matmul_flops(
        trainer.sharded_train_step, trainer.init_state(), *next(trainer.train_batches(0))
    )
    with tempfile.TemporaryDirectory() as workdir:
        training.train_and_evaluate(config, workdir, dataset=dataset)
        lines = training.read_metrics(workdir)

    images_per_sec = [line["steps_per_sec"] * args.batch for line in lines[1:]]
    median = statistics.median(images_per_sec)
    setup = (
        f"{wrn_cifar.describe(args, dataset)}, {args.steps} steps, a line every {args.eval_every}"
    )
    results = {
        "setup": setup,
        "gflop_per_image": flops / args.batch / 1e9,
        "images_per_sec_by_line": images_per_sec,
        "images_per_sec": median,
        "tflop_per_sec": median * flops / args.batch / 1e12,
        "final_train_loss": lines[-1]["train_loss"],
    }
    print(setup)
    print(
        f"training loop: {median:10.1f} images/s, median of {len(images_per_sec)} lines "
        f"({results['tflop_per_sec']:.2f} TFLOP/s, {results['gflop_per_image']:.2f} GFLOP per "
        "image)"
    )
    wrn_cifar.write_json(args, results)


if __name__ == "__main__":
    main()
