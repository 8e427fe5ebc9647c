"""The reproduction's parts: configurations to train, and their analysis into JSON-ready dicts.

Each part takes its grid, the seeds and a runner (`l2reg.reproduction.runners`), trains
through the runner and returns its results; the analysis is `l2reg.relations` applied to the
curves. The goals are the figures the report checks, each only where its inputs exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from l2reg import relations, sweep
from l2reg.reproduction.runners import Runner

# The goals the report checks.
SLOPE_GOAL = (-1.1, -0.9)
PREDICTION_GOAL = 2.0  # λ_pred within this factor of the grid's best λ
PROBE_COMPUTE_GOAL = 0.1  # the probe costs at most this fraction of the grid
GAIN_GOAL = 0.015  # best λ > 0 beats λ = 0 by this much accuracy
# Part 1 fits the runs whose peak accuracy is within this margin of the grid's best.
COLLAPSE_MARGIN = 0.1


@dataclasses.dataclass(frozen=True)
class TStarGrid:
    """Part 1: runs of `run_length/(λη)` steps over a grid of λη and learning rates."""

    setup: sweep.Setup | None  # None when the preset trains through the trainer
    lrs: tuple[float, ...]
    l2_lrs: tuple[float, ...]  # the products λη
    run_length: float  # in units of 1/(λη)


@dataclasses.dataclass(frozen=True)
class L2Grid:
    """Parts 2–4: a grid of λ (0 included) at fixed learning rates, all of `num_steps`.

    Constant η, so the curve of one run gives its accuracy at every budget T ≤ num_steps.
    """

    setup: sweep.Setup | None  # None when the preset trains through the trainer
    lrs: tuple[float, ...]
    l2s: tuple[float, ...]
    num_steps: int
    budgets: tuple[int, ...]  # fixed budgets T for accuracy vs λ (≤ num_steps)
    scaled_length: float  # the T ∝ 1/(λη) view reads each run at scaled_length/(λη) steps
    probe_l2: float  # part 3: λ of the probe, run at lrs[0]
    probe_length: float  # in units of 1/(λη)
    autol2_l2: float  # part 4: AutoL2's initial λ, run at lrs[0] for num_steps


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean and standard deviation over seeds (NaN entries, e.g. never reached, left out)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    return {
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std()) if finite.size else None,
        "values": [float(v) if np.isfinite(v) else None for v in values],
    }


def peak_of(curve: sweep.Curves) -> relations.Peak:
    """t* of a curve's test accuracy, where it falls in the run and how far it falls after."""
    return relations.peak_shape(curve.steps, curve.test_accuracy)


def t_star_part(grid: TStarGrid, seeds: Sequence[int], run: Runner) -> tuple[dict, list]:
    """Part 1: t* of every run, the power-law fit pooled over seeds and per seed."""
    configs = [
        sweep.Config(l2_lr / lr, lr, seed, max(1, round(grid.run_length / l2_lr)))
        for seed in seeds
        for lr in grid.lrs
        for l2_lr in grid.l2_lrs
    ]
    curves = run("t_star", configs)
    shapes = [peak_of(curve) for curve in curves]
    points = [
        {"l2": c.l2, "lr": c.lr, "seed": c.seed, "num_steps": c.num_steps, **shape._asdict()}
        for c, shape in zip(configs, shapes, strict=True)
    ]
    peaks = np.array([p["peak_accuracy"] for p in points])
    # Runs whose λ is too large to fit the data collapse early and peak far below the
    # others; the paper leaves them out of the fit.
    used = peaks >= peaks.max() - COLLAPSE_MARGIN
    for point, use in zip(points, used, strict=True):
        point["used"] = bool(use)

    def fit(mask):
        if np.count_nonzero(mask) < 2:
            return None
        return relations.fit_t_star(
            [p["l2"] for p in points],
            [p["lr"] for p in points],
            [p["t_star"] for p in points],
            used=mask,
        )

    pooled = fit(used)
    # A check that does not depend on the collapse margin: every run whose curve has a clear
    # peak (early in the run, falling after it), collapsed or not.
    clear = np.array([shape.is_clear() for shape in shapes])
    clear_fit = fit(clear)
    fitted_l2_lr = [p["l2"] * p["lr"] for p in points if p["used"]]
    seed_of = np.array([p["seed"] for p in points])
    per_seed = [fit(used & (seed_of == seed)) for seed in seeds]
    interior = [p for p in points if p["used"] and p["peak_fraction"] < 0.5]
    result = {
        "setup": run.label,
        "slope": pooled.slope if pooled else None,
        "slope_stderr": pooled.slope_stderr if pooled else None,
        "c": pooled.c if pooled else None,
        "points": points,
        "per_seed_slope": spread([f.slope if f else np.nan for f in per_seed]),
        "per_seed_c": spread([f.c if f else np.nan for f in per_seed]),
        "l2_lr_decades": float(np.log10(max(grid.l2_lrs) / min(grid.l2_lrs))),
        "fitted_l2_lr_range": [min(fitted_l2_lr), max(fitted_l2_lr)],
        "clear_peak_fit": {
            "runs": int(clear.sum()),
            "slope": clear_fit.slope if clear_fit else None,
            "slope_stderr": clear_fit.slope_stderr if clear_fit else None,
            "c": clear_fit.c if clear_fit else None,
        },
        "peaks_in_first_half": len(interior),
        "median_drop_after_peak": float(np.median([p["drop_after_peak"] for p in interior]))
        if interior
        else None,
        "goal": list(SLOPE_GOAL),
        "met": bool(pooled and SLOPE_GOAL[0] <= pooled.slope <= SLOPE_GOAL[1]),
    }
    return result, list(zip(configs, curves, strict=True))


def l2_part(grid: L2Grid, seeds: Sequence[int], run: Runner) -> tuple[dict, Any]:
    """Parts 2 and 3: accuracy vs λ at fixed budgets and with T ∝ 1/(λη); the probe's c."""
    lr = grid.lrs[0]
    probe_steps = max(1, round(grid.probe_length / (grid.probe_l2 * lr)))
    configs = [
        sweep.Config(l2, lr_, seed, grid.num_steps)
        for seed in seeds
        for lr_ in grid.lrs
        for l2 in grid.l2s
    ]
    probes = [sweep.Config(grid.probe_l2, lr, seed, probe_steps) for seed in seeds]
    curves = run("l2", configs + probes)
    grid_curves, probe_curves = curves[: len(configs)], curves[len(configs) :]
    by_key = {(c.lr, c.l2, c.seed): curve for c, curve in zip(configs, grid_curves, strict=True)}
    positive = np.array([l2 for l2 in grid.l2s if l2 > 0])

    fixed_budget = []
    for lr_ in grid.lrs:
        for budget in grid.budgets:
            accuracy = np.array(
                [[by_key[lr_, l2, s].accuracy_at(budget) for s in seeds] for l2 in grid.l2s]
            )  # (λ, seed)
            mean = accuracy.mean(axis=1)
            with_l2 = mean[np.asarray(grid.l2s) > 0]
            best = int(np.argmax(with_l2))
            zero = mean[list(grid.l2s).index(0.0)] if 0.0 in grid.l2s else np.nan
            fixed_budget.append(
                {
                    "lr": lr_,
                    "budget_steps": budget,
                    "l2": list(grid.l2s),
                    "accuracy": [spread(row) for row in accuracy],
                    "best_l2": float(positive[best]),
                    "l2_opt": relations.l2_opt(positive, with_l2),
                    "interior_peak": 0 < best < len(positive) - 1,
                    "gain_over_zero_l2": float(with_l2[best] - zero),
                }
            )
    l2_opt_slopes = {}
    for lr_ in grid.lrs:
        rows = [r for r in fixed_budget if r["lr"] == lr_]
        if len(rows) >= 2:
            slope = np.polyfit(
                np.log([r["budget_steps"] for r in rows]), np.log([r["l2_opt"] for r in rows]), 1
            )[0]
            l2_opt_slopes[str(lr_)] = float(slope)
    scaled = [
        {
            "lr": lr_,
            "l2": l2,
            "steps": min(grid.num_steps, grid.scaled_length / (l2 * lr_)),
            "accuracy": spread(
                [by_key[lr_, l2, s].accuracy_at(grid.scaled_length / (l2 * lr_)) for s in seeds]
            ),
        }
        for lr_ in grid.lrs
        for l2 in positive
    ]

    # Part 3: c from the probe, λ_pred = c/(ηT) at the largest budget, vs the grid's best.
    budget = grid.num_steps
    probe_peaks = [peak_of(curve) for curve in probe_curves]
    c = [relations.c_from(p.t_star, grid.probe_l2, lr) for p in probe_peaks]
    predicted = relations.predict_l2(float(np.mean(c)), lr, budget)
    row = next(r for r in fixed_budget if r["lr"] == lr and r["budget_steps"] == budget)
    grid_steps = grid.num_steps * len(grid.l2s)
    ratio = predicted / row["l2_opt"]
    # Relation 3 at every budget, not only the largest: λ_pred(T) = c/(ηT) vs λ_opt(T).
    ratios_by_budget = {
        str(r["budget_steps"]): relations.predict_l2(float(np.mean(c)), lr, r["budget_steps"])
        / r["l2_opt"]
        for r in fixed_budget
        if r["lr"] == lr
    }
    # The probe's t* means something only if its curve peaks inside the run and falls after.
    clear_peak = [p.is_clear() for p in probe_peaks]
    prediction = {
        "setup": run.label,
        "lr": lr,
        "probe_l2": grid.probe_l2,
        "probe_steps": probe_steps,
        "probe": [p._asdict() for p in probe_peaks],
        "probe_has_clear_peak": all(clear_peak),
        "c": spread(c),
        "budget_steps": budget,
        "predicted_l2": float(predicted),
        "grid_best_l2": row["l2_opt"],
        "ratio": float(ratio),
        "ratios_by_budget": ratios_by_budget,
        "compute_fraction": probe_steps / grid_steps,
        # A ratio near 1 from a probe without a peak would be a coincidence, not relation 3.
        "met": bool(
            all(clear_peak)
            and 1 / PREDICTION_GOAL <= ratio <= PREDICTION_GOAL
            and probe_steps / grid_steps <= PROBE_COMPUTE_GOAL
        ),
    }
    result = {
        "setup": run.label,
        "fixed_budget": fixed_budget,
        "l2_opt_vs_budget_slope": l2_opt_slopes,
        "scaled_budget": scaled,
    }
    return {"accuracy_vs_l2": result, "l2_prediction": prediction}, (by_key, probe_curves)


AUTOL2_VARIANTS = {
    "autol2 (defaults)": lambda predicted: (sweep.AutoL2(), "constant"),
    "autol2 (authors: clock η=1, cooldown 0.2)": lambda predicted: (
        sweep.AutoL2(learning_rate=1.0, cooldown=0.2),
        "constant",
    ),
    "autol2 + min_l2 = λ_pred": lambda predicted: (sweep.AutoL2(min_l2=predicted), "constant"),
    "autol2 + step lr schedule": lambda predicted: (sweep.AutoL2(), "step"),
}


def autol2_part(
    grid: L2Grid,
    seeds: Sequence[int],
    run: Runner,
    fixed: dict,
    by_key: dict,
    predicted_l2: float,
) -> tuple[dict, dict]:
    """Part 4: AutoL2 variants vs the best fixed λ and λ = 0 at budget num_steps, lrs[0]."""
    lr, budget = grid.lrs[0], grid.num_steps
    variants = {
        name: make(min(predicted_l2, grid.autol2_l2)) for name, make in AUTOL2_VARIANTS.items()
    }
    configs = [
        sweep.Config(grid.autol2_l2, lr, seed, budget, mode, schedule)
        for mode, schedule in variants.values()
        for seed in seeds
    ]
    curves = run("autol2", configs)
    row = next(r for r in fixed["fixed_budget"] if r["lr"] == lr and r["budget_steps"] == budget)
    best_l2 = row["best_l2"]
    best_accuracy = [by_key[lr, best_l2, s].accuracy_at(budget) for s in seeds]
    target = float(np.mean(best_accuracy))
    summary, curves_by_variant = {}, {}
    for index, name in enumerate(variants):
        mine = curves[index * len(seeds) : (index + 1) * len(seeds)]
        curves_by_variant[name] = mine
        reached = []
        for curve in mine:
            hits = np.nonzero(curve.test_accuracy >= target)[0]
            reached.append(float(curve.steps[hits[0]]) if hits.size else np.nan)
        summary[name] = {
            "accuracy": spread([c.test_accuracy[-1] for c in mine]),
            "final_l2": spread([c.l2[-1] for c in mine]),
            "steps_to_best_fixed_accuracy": spread(reached),
            "met": bool(np.all(np.asarray(reached) <= budget / 2)),
        }
    default = summary["autol2 (defaults)"]
    zero = [by_key[lr, 0.0, s].accuracy_at(budget) for s in seeds] if 0.0 in grid.l2s else []
    results = {
        "autol2": {
            "setup": run.label,
            "lr": lr,
            "budget_steps": budget,
            "l2_init": grid.autol2_l2,
            "accuracy": default["accuracy"],
            "steps_to_best_fixed_accuracy": default["steps_to_best_fixed_accuracy"],
            "met": default["met"],
            "variants": summary,
        },
        "best_fixed": {"l2": best_l2, "lr": lr, "accuracy": spread(best_accuracy)},
        "zero_l2": {"lr": lr, "accuracy": spread(zero)},
    }
    return results, curves_by_variant
