"""The reproduction's figures (PNG) and its Markdown report, from the parts' results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from l2reg.files import pyplot, save_figure
from l2reg.reproduction.parts import (
    COLLAPSE_MARGIN,
    GAIN_GOAL,
    PREDICTION_GOAL,
    PROBE_COMPUTE_GOAL,
)


def plot_t_star(part: dict, runs: list, path: str, collapse_path: str) -> None:
    """t* vs λη (log-log, with the [low, high] interval and the fit) and the collapse."""
    plt = pyplot()
    points = part["points"]
    lrs = sorted({p["lr"] for p in points})
    colors = dict(zip(lrs, plt.cm.viridis(np.linspace(0, 0.85, len(lrs))), strict=True))
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for p in points:
        axis.errorbar(
            p["l2_lr"],
            p["t_star"],
            yerr=[[p["t_star"] - p["low"]], [p["high"] - p["t_star"]]],
            fmt="o" if p["used"] else "x",
            color=colors[p["lr"]],
            alpha=0.8,
            label=f"η = {p['lr']:g}",
        )
    if part["slope"] is not None:
        x = np.geomspace(min(p["l2_lr"] for p in points), max(p["l2_lr"] for p in points), 50)
        axis.plot(
            x,
            part["c"] * x ** part["slope"],
            "k--",
            label=f"fit: slope {part['slope']:.2f} ± {_fmt(part['slope_stderr'], 2)}",
        )
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axis.legend(unique.values(), unique.keys(), fontsize=8)
    axis.set(
        xscale="log", yscale="log", xlabel="λη (η/(1−μ) under momentum μ)", ylabel="t* (steps)"
    )
    axis.set_title("Step of best test accuracy (× = collapsed, not fitted)", fontsize=9)
    save_figure(figure, path)

    figure, axes = plt.subplots(1, len(lrs), figsize=(4 * len(lrs), 3.5), sharey=True)
    axes = np.atleast_1d(axes)
    l2_lrs = sorted({p["l2_lr"] for p in points})
    shades = dict(zip(l2_lrs, plt.cm.plasma(np.linspace(0, 0.9, len(l2_lrs))), strict=True))
    first_seed = min(p["seed"] for p in points)
    for axis, lr in zip(axes, lrs, strict=True):
        for point, (_, curve) in zip(points, runs, strict=True):
            if point["lr"] == lr and point["seed"] == first_seed:
                l2_lr = point["l2_lr"]
                axis.plot(
                    curve.steps * l2_lr,
                    curve.test_accuracy,
                    color=shades[l2_lr],
                    label=f"λη = {l2_lr:.1e}",
                )
        axis.set(xscale="log", xlabel="λ·η·t", title=f"η = {lr:g}")
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(fontsize=7)
    save_figure(figure, collapse_path)


def plot_l2(parts: dict, by_key: dict, seeds: Sequence[int], path: str) -> None:
    """Accuracy vs λ at fixed budgets, and with T ∝ 1/(λη)."""
    plt = pyplot()
    fixed = parts["accuracy_vs_l2"]["fixed_budget"]
    lrs = sorted({r["lr"] for r in fixed})
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for lr in lrs:
        rows = [r for r in fixed if r["lr"] == lr]
        shades = plt.cm.viridis(np.linspace(0, 0.85, len(rows)))
        for row, color in zip(rows, shades, strict=True):
            l2s = np.array(row["l2"])
            mean = _floats([a["mean"] for a in row["accuracy"]])
            std = _floats([a["std"] for a in row["accuracy"]])
            marker = "o" if lr == lrs[0] else "s"
            axes[0].errorbar(
                l2s[l2s > 0],
                mean[l2s > 0],
                yerr=std[l2s > 0],
                color=color,
                marker=marker,
                label=f"η={lr:g}, T={row['budget_steps']}",
            )
            if np.isfinite(mean[0]):  # l2s[0] is λ = 0
                axes[0].axhline(mean[0], color=color, linestyle=":", linewidth=1)
    axes[0].set(xscale="log", xlabel="λ", ylabel="test accuracy")
    axes[0].set_title("Fixed budget T (dotted: λ = 0)", fontsize=9)
    axes[0].legend(fontsize=7)
    scaled = parts["accuracy_vs_l2"]["scaled_budget"]
    for lr in lrs:
        rows = [r for r in scaled if r["lr"] == lr]
        axes[1].errorbar(
            [r["l2"] for r in rows],
            _floats([r["accuracy"]["mean"] for r in rows]),
            yerr=_floats([r["accuracy"]["std"] for r in rows]),
            marker="o",
            label=f"η = {lr:g}",
        )
    axes[1].set(xscale="log", xlabel="λ", ylabel="test accuracy")
    axes[1].set_title("T ∝ 1/(λη) (capped at the run length)", fontsize=9)
    axes[1].legend(fontsize=7)
    save_figure(figure, path)


def plot_autol2(results: dict, curves: dict, by_key: dict, seeds: Sequence[int], path: str):
    """Accuracy and λ over steps for the AutoL2 variants, the best fixed λ and λ = 0."""
    plt = pyplot()
    lr = results["autol2"]["lr"]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    references = {
        f"fixed λ = {results['best_fixed']['l2']:g} (best)": results["best_fixed"]["l2"],
        "λ = 0": 0.0,
    }
    for name, l2 in references.items():
        curve = by_key[lr, l2, seeds[0]]
        top.plot(curve.steps, curve.test_accuracy, "--", label=name)
        bottom.plot(curve.steps, np.maximum(curve.l2, 1e-8), "--", label=name)
    for name, mine in curves.items():
        top.plot(mine[0].steps, mine[0].test_accuracy, label=name)
        bottom.plot(mine[0].steps, np.maximum(mine[0].l2, 1e-8), label=name)
    top.set(xscale="log", ylabel="test accuracy", xlim=(50, None))
    top.legend(fontsize=7)
    bottom.set(xscale="log", yscale="log", xlabel="step", ylabel="λ (λ = 0 drawn at 1e-8)")
    save_figure(figure, path)


def _floats(values: Sequence[float | None]) -> np.ndarray:
    """Values as a float array, None (undefined) as NaN, which matplotlib leaves out."""
    return np.array([np.nan if value is None else value for value in values], dtype=float)


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, dict):
        if value["mean"] is None:
            return "never"
        return f"{value['mean']:.{digits}g} ± {value['std']:.2g}"
    return f"{value:.{digits}g}"


def _steps(reached: dict) -> str:
    """Mean steps over the seeds that got there, and how many did."""
    values = reached["values"]
    hits = [v for v in values if v is not None]
    if not hits:
        return "never"
    return f"{np.mean(hits):.0f} ({len(hits)} of {len(values)} seeds)"


def _points(gain: float | None) -> str:
    """An accuracy difference in percentage points, or n/a where it is undefined."""
    return "n/a" if gain is None else f"{100 * gain:+.1f} points"


def _met(flag: bool) -> str:
    return "**met**" if flag else "**missed**"


def report(results: dict) -> str:
    """The Markdown report: every goal with its measured figure, met or missed."""
    t_star = results["t_star_fit"]
    l2 = results["accuracy_vs_l2"]
    prediction = results["l2_prediction"]
    auto = results["autol2"]
    lines = [
        f"# The paper's relations on {results['preset']} settings",
        "",
        f"Seeds: {results['seeds']}. Time: {results['elapsed_seconds']:.0f} s "
        f"(parts reused from the cache count as 0). JAX devices: {results['devices']}.",
        "",
        "## 1. t* vs λη",
        f"Setup: {t_star['setup']}. Each run lasts {results['settings']['run_length']}/(λη) "
        f"steps; λη spans {t_star['l2_lr_decades']:.1f} decades.",
        "",
        f"Fitted slope (all seeds pooled): {_fmt(t_star['slope'])} ± "
        f"{_fmt(t_star['slope_stderr'], 2)}, c = {_fmt(t_star['c'])}; per seed: "
        f"{_fmt(t_star['per_seed_slope'])}. Goal: slope in {t_star['goal']}: "
        f"{_met(t_star['met'])}. The fitted runs span λη from "
        f"{t_star['fitted_l2_lr_range'][0]:.2g} to {t_star['fitted_l2_lr_range'][1]:.2g} "
        f"({np.log10(t_star['fitted_l2_lr_range'][1] / t_star['fitted_l2_lr_range'][0]):.1f} "
        "decades).",
        f"Fit over the {t_star['clear_peak_fit']['runs']} runs with a clear peak (peak before "
        "80% of the run and a fall of ≥ 0.5 points after it, collapsed or not): slope "
        f"{_fmt(t_star['clear_peak_fit']['slope'])} ± "
        f"{_fmt(t_star['clear_peak_fit']['slope_stderr'], 2)}.",
        f"Runs fitted: {sum(p['used'] for p in t_star['points'])} of {len(t_star['points'])} "
        f"(runs peaking more than {COLLAPSE_MARGIN} below the best are collapsed and "
        "excluded); peaks in the first half of their run: "
        f"{t_star['peaks_in_first_half']}, median fall after the peak "
        f"{_fmt(t_star['median_drop_after_peak'])} (accuracy) — a slope near −1 from peaks at "
        "the end of each run would only echo the run length.",
        "",
        "![t* vs λη](t_star.png)",
        "![collapse](collapse.png)",
        "",
        "| λ | η | seed | t* | [low, high] | t*/run | peak | final | used |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in t_star["points"]:
        lines.append(
            f"| {p['l2']:.3g} | {p['lr']:g} | {p['seed']} | {p['t_star']:.0f} | "
            f"[{p['low']:.0f}, {p['high']:.0f}] | {p['peak_fraction']:.2f} | "
            f"{p['peak_accuracy']:.3f} | {p['final_accuracy']:.3f} | {p['used']} |"
        )
    lines += ["", "## 2. Accuracy vs λ", f"Setup: {l2['setup']}.", ""]
    lines += ["| η | T | best λ | λ_opt (refined) | interior peak | gain over λ = 0 |"]
    lines += ["|---|---|---|---|---|---|"]
    for row in l2["fixed_budget"]:
        lines.append(
            f"| {row['lr']:g} | {row['budget_steps']} | {row['best_l2']:g} | "
            f"{row['l2_opt']:.3g} | {row['interior_peak']} | "
            f"{_points(row['gain_over_zero_l2'])} |"
        )
    best = results["best_fixed"]
    lines += [
        "",
        f"At η = {auto['lr']:g}, T = {auto['budget_steps']}: best fixed λ = "
        f"{best['l2']:g} reaches {_fmt(best['accuracy'])}, "
        f"λ = 0 {_fmt(results['zero_l2']['accuracy'])}: gain "
        f"{_points(best['gain_over_zero_l2'])}. Goal: "
        f"≥ {100 * GAIN_GOAL:.1f} points: {_met(best['met'])}.",
        "Slope of log λ_opt vs log T (relation 3 predicts −1): "
        + ", ".join(f"η = {k}: {v:.2f}" for k, v in l2["l2_opt_vs_budget_slope"].items()),
        "",
        "![accuracy vs λ](accuracy_vs_l2.png)",
        "",
        "## 3. Predicting λ_opt",
        f"Probe: λ = {prediction['probe_l2']:g}, η = {prediction['lr']:g}, "
        f"{prediction['probe_steps']} steps ({100 * prediction['compute_fraction']:.1f}% of "
        f"the grid at this η). c = {_fmt(prediction['c'])}. For T = "
        f"{prediction['budget_steps']}: λ_pred = {prediction['predicted_l2']:.3g}, grid best "
        f"λ_opt = {prediction['grid_best_l2']:.3g}, ratio {prediction['ratio']:.2f}. Goal: "
        f"within ×{PREDICTION_GOAL:g} using ≤ {100 * PROBE_COMPUTE_GOAL:.0f}% of the grid's "
        f"compute: {_met(prediction['met'])}.",
        "λ_pred/λ_opt at each budget T: "
        + ", ".join(f"T = {t}: {r:.2f}" for t, r in prediction["ratios_by_budget"].items())
        + ".",
    ]
    if not prediction["probe_has_clear_peak"]:
        lines.append(
            "The probe's curve has no clear peak (its maximum lies late in the run or the "
            "curve does not fall after it), so its t* and c are not supported by a peak here "
            "and the goal counts as missed whatever the ratio."
        )
    lines += [
        "",
        "## 4. AutoL2",
        f"Setup: {auto['setup']}; η = {auto['lr']:g}, budget {auto['budget_steps']} steps, "
        f"initial λ = {auto['l2_init']:g}. Target: the best fixed λ's accuracy "
        f"{_fmt(results['best_fixed']['accuracy'])}.",
        "",
        "| variant | accuracy at T | final λ | steps to the best fixed λ's accuracy | ≤ T/2 |",
        "|---|---|---|---|---|",
    ]
    for name, variant in auto["variants"].items():
        lines.append(
            f"| {name} | {_fmt(variant['accuracy'])} | {_fmt(variant['final_l2'])} | "
            f"{_steps(variant['steps_to_best_fixed_accuracy'])} | {_met(variant['met'])} |"
        )
    lines += ["", "![AutoL2](autol2.png)", ""]
    return "\n".join(lines)
