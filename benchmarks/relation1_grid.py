r"""Relation 1 at accelerator scale: t* over decades of λη at several learning rates, and c = t*·λη
on the λ×η grid (does only the product λη matter?).

    python benchmarks/relation1_grid.py --out=/tmp/relation1_grid            # 1 draw × 10 seeds
    python benchmarks/relation1_grid.py --out=/tmp/r1 --draws=2 --bucket_size=50   # accelerator
    python benchmarks/relation1_grid.py --out=/tmp/r1 --seeds=2 --lrs=0.5,2 \
        --l2_lrs=2e-3,2e-2 --run_length=3                                 # a minute on a CPU

The calibration setup of `experiments.reproduce` (digits, bias-free NTK MLP, MSE, 20% label
noise, 300 validation digits), run through the same grid (`l2reg.reproduction.TStarGrid`: each
run `run_length/(λη)` steps, log-spaced evaluations) and read by the same protocol
(`l2reg.reproduction.relation1`: t* on validation accuracy, exclusions decided in advance, the
slope over the analysis grid), at a size only an accelerator trains in minutes: by default 10
seeds, λη over three decades (2e-5 … 2e-2, thirds of a decade) and five learning rates (0.125 …
2). Each data draw is one vmapped sweep; after each one the analysis of the draws so far is
written to `--out` (all files or none), so a run cut short keeps its finished draws.

Writes `results.json` (the pooled analysis, the same analysis per learning rate, c per cell, the
time of each draw, the devices and versions), `relation1.png` (t* against λη, every replica,
and the analysis grid) and `c_heatmap.png` (the median c of each (η, λη) cell over its kept
runs, on the grid and on λ×η axes), and prints the figures.
"""

import argparse
import json
import math
import os
import time

import numpy as np


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        message = f"expected numbers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers > 0, got {text!r}")
    return values


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for results.json and the plots")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per data draw")
    parser.add_argument("--draws", type=int, default=1, help="data draws (label noise, split)")
    parser.add_argument("--lrs", type=_floats, default=(0.125, 0.25, 0.5, 1.0, 2.0))
    parser.add_argument(
        "--l2_lrs",
        type=_floats,
        default=tuple(np.round(np.geomspace(2e-5, 2e-2, 10), 12).tolist()),
        help="the products λη (default: 2e-5 … 2e-2 in thirds of a decade)",
    )
    parser.add_argument("--run_length", type=float, default=3.0, help="run length × 1/(λη)")
    parser.add_argument("--evals_per_decade", type=int, default=12)
    parser.add_argument(
        "--bucket_size",
        type=int,
        default=None,
        help="runs trained side by side (default: the sweep's choice, at most 32)",
    )
    args = parser.parse_args()
    for name in ("seeds", "draws", "evals_per_decade", "bucket_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be ≥ 1, got {value}")
    if not (math.isfinite(args.run_length) and args.run_length > 0):
        parser.error(f"--run_length must be finite and > 0, got {args.run_length}")
    return args


def cells(result: dict) -> list[dict]:
    """c = t*·λη per (η, λη) cell of `relation1.analyse`'s result: the median over the cell's
    kept runs, their count, and the cell's runs."""
    by_cell: dict[tuple[float, float], list[dict]] = {}
    for point in result["points"]:
        by_cell.setdefault((point["lr"], point["l2_lr"]), []).append(point)
    rows = []
    for (lr, l2_lr), points in sorted(by_cell.items()):
        kept = [p["c"] for p in points if p["excluded"] is None and p["c"] is not None]
        rows.append(
            {
                "lr": lr,
                "l2_lr": l2_lr,
                "l2": points[0]["l2"],
                "c_median": float(np.median(kept)) if kept else None,
                "kept": len(kept),
                "runs": len(points),
            }
        )
    return rows


def plot_heatmap(rows: list[dict], path: str, title: str) -> None:
    """The median c of each cell: left on the (λη, η) grid, numbers in the cells; right on
    λ×η axes (the paper's), where cells of one λη lie on a diagonal."""
    from matplotlib import colors

    from l2reg.files import pyplot, save_figure

    plt = pyplot()
    lrs = sorted({r["lr"] for r in rows})
    l2_lrs = sorted({r["l2_lr"] for r in rows})
    grid = np.full((len(lrs), len(l2_lrs)), np.nan)
    for r in rows:
        if r["c_median"] is not None:
            grid[lrs.index(r["lr"]), l2_lrs.index(r["l2_lr"])] = r["c_median"]
    finite = grid[np.isfinite(grid)]
    norm = colors.LogNorm(*(finite.min(), finite.max())) if finite.size else None
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5.2))
    figure.subplots_adjust(wspace=0.3)
    image = left.imshow(grid, origin="lower", aspect="auto", cmap="viridis", norm=norm)
    for r in rows:
        i, j = lrs.index(r["lr"]), l2_lrs.index(r["l2_lr"])
        text = "–" if r["c_median"] is None else f"{r['c_median']:.2g}"
        left.text(
            j,
            i,
            f"{text}\n{r['kept']}/{r['runs']}",
            ha="center",
            va="center",
            fontsize=7,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.7, "linewidth": 0},
        )
    left.set_xticks(range(len(l2_lrs)), [f"{v:.2g}" for v in l2_lrs], rotation=45)
    left.set_yticks(range(len(lrs)), [f"{v:g}" for v in lrs])
    left.set(xlabel="λη", ylabel="η (learning rate)")
    left.set_title("median c = t*·λη over kept runs (kept/runs under each)", fontsize=9)
    shown = [r for r in rows if r["c_median"] is not None]
    right.scatter(
        [r["l2"] for r in shown],
        [r["lr"] for r in shown],
        c=[r["c_median"] for r in shown],
        cmap="viridis",
        norm=norm,
        marker="s",
        s=120,
    )
    for l2_lr in l2_lrs:
        eta = np.array([min(lrs), max(lrs)])
        right.plot(l2_lr / eta, eta, color="grey", linewidth=0.5, linestyle=":")
    right.set(xscale="log", yscale="log", xlabel="λ", ylabel="η (learning rate)")
    right.set_title("the same cells on λ×η axes; dotted: constant λη", fontsize=9)
    figure.colorbar(image, ax=[left, right], label="median c")
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)


def write(folder: str, results: dict, pooled: dict, points: list, rows: list, title: str) -> None:
    """results.json and both plots, all replaced together or none (`l2reg.files.write_all`)."""
    from l2reg import files
    from l2reg.reproduction import relation1

    def render(staging: str) -> None:
        relation1.plot(pooled, points, os.path.join(staging, "relation1.png"))
        plot_heatmap(rows, os.path.join(staging, "c_heatmap.png"), title)

    outputs = files.rendered(folder, render)
    outputs[os.path.join(folder, "results.json")] = json.dumps(results, indent=1, allow_nan=False)
    files.write_all(outputs)


def _fit_text(analysis: dict) -> str:
    fit = analysis["fit"]
    if fit["slope"] is None:
        return "no slope (fewer than two distinct λη kept)"
    low, high = fit["slope_interval"] or (math.nan, math.nan)
    grid = analysis["analysis_grid"]
    return (
        f"slope {fit['slope']:.3f} [{low:.3f}, {high:.3f}] from {fit['runs']} runs; "
        f"analysis grid {grid['min']:.3f} … {grid['max']:.3f} "
        f"({grid['in_goal']} of {len(grid['cells'])} cells in the goal)"
    )


def main() -> None:
    args = _arguments()
    import jax

    from experiments.configs import reproduce_default
    from l2reg import files, versions
    from l2reg.reproduction import draw_config, parts, relation1, stats
    from l2reg.training import recipe, sweep

    config = reproduce_default.calibration()
    momentum = recipe.effective_momentum(config)
    try:
        grid = parts.TStarGrid(
            config=config, lrs=args.lrs, l2_lrs=args.l2_lrs, run_length=args.run_length
        )
        pairs = parts.t_star_runs(grid, range(args.seeds), momentum)
        runs = [run for _, run in pairs]
        for draw in range(args.draws):
            sweep.validate(draw_config(config, draw), runs)
        files.check_folder(args.out, "--out")
    except ValueError as error:
        raise SystemExit(f"relation1_grid: {error}") from None
    label_noise = config.data_options.get("label_noise", 0.0)
    steps = sum(run.steps for run in runs)
    print(
        f"{len(runs)} runs per draw ({args.seeds} seeds × {len(args.lrs)} η × "
        f"{len(args.l2_lrs)} λη), {steps:,} member-steps, {args.draws} draw(s); {jax.devices()}"
    )
    points, seconds = [], []
    start = time.perf_counter()
    for draw in range(args.draws):
        began = time.perf_counter()
        curves = sweep.run(
            draw_config(config, draw),
            runs,
            evals_per_decade=args.evals_per_decade,
            bucket_size=args.bucket_size,
            progress=f"draw {draw}",
        )
        seconds.append(time.perf_counter() - began)
        points += [
            relation1.Point.of_run(stats.Replica(draw, run.seed), l2_lr, run, curve, momentum)
            for (l2_lr, run), curve in zip(pairs, curves, strict=True)
        ]
        pooled = relation1.analyse(points, run_length=args.run_length, label_noise=label_noise)
        by_lr = {
            lr: relation1.analyse(
                [p for p in points if p.lr == lr],
                run_length=args.run_length,
                label_noise=label_noise,
            )
            for lr in args.lrs
        }
        rows = cells(pooled)
        results = {
            "draws_done": draw + 1,
            "seeds": args.seeds,
            "lrs": list(args.lrs),
            "l2_lrs": list(args.l2_lrs),
            "run_length": args.run_length,
            "evals_per_decade": args.evals_per_decade,
            "bucket_size": args.bucket_size,
            "member_steps_per_draw": steps,
            "draw_seconds": seconds,
            "elapsed_seconds": time.perf_counter() - start,
            "devices": str(jax.devices()),
            "matmul_precision": jax.config.jax_default_matmul_precision,
            "environment": versions.record(),
            "relation_1": pooled,
            "by_lr": {str(lr): result for lr, result in by_lr.items()},
            "cells": rows,
        }
        title = (
            f"Relation 1's c on the λ×η grid: {draw + 1} draw(s) × {args.seeds} seeds, "
            f"digits NTK MLP, MSE, 20% label noise"
        )
        write(args.out, stats.without_nan(results), pooled, points, rows, title)
        print(f"draw {draw}: {seconds[-1]:.0f} s; pooled over {draw + 1} draw(s):")
        print(f"  all η: {_fit_text(pooled)}; median c {pooled['c']['median']:.3g}")
        for lr, result in by_lr.items():
            median = result["c"]["median"]
            print(
                f"  η = {lr:g}: {_fit_text(result)}; median c "
                + ("–" if median is None else f"{median:.3g}")
            )
        medians = [r["c_median"] for r in rows if r["c_median"] is not None]
        if medians:
            print(
                f"  cells' median c: {min(medians):.3g} … {max(medians):.3g} "
                f"({max(medians) / min(medians):.1f}×) over {len(medians)} of {len(rows)} cells"
            )
    print(
        f"wrote {args.out}/results.json, relation1.png, c_heatmap.png in "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
