"""The reproduction's parts: configurations to train, and their analysis into JSON-ready dicts.

Each part takes its grid, the seeds and a runner (`l2reg.reproduction.runners`), trains
through the runner and returns its results; the analysis is `l2reg.relations` applied to the
curves. The goals are the figures the report checks, each only where its inputs exist.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from l2reg import checks, relations
from l2reg.reproduction import probe
from l2reg.reproduction.runners import Runner
from l2reg.training import sweep
from l2reg.training.rundir import Curves

# The goals the report checks.
SLOPE_GOAL = (-1.1, -0.9)
PREDICTION_GOAL = 2.0  # λ_pred within this factor of the grid's best λ
PROBE_COMPUTE_GOAL = 0.1  # the probe costs at most this fraction of the grid
GAIN_GOAL = 0.015  # best λ > 0 beats λ = 0 by this much accuracy
# Part 1 fits the runs whose peak accuracy is within this margin of the grid's best.
COLLAPSE_MARGIN = 0.1


def _check_positive(name: str, value: Any) -> None:
    checks.number(name, value, lambda x: math.isfinite(x) and x > 0, "finite and > 0")


def _check_rates(name: str, values: Any, *, at_least: int = 1) -> None:
    """`values`: at least `at_least` distinct finite numbers > 0 (learning rates, λη)."""
    values = tuple(values)
    for value in values:
        _check_positive(f"each of {name}", value)
    if len(set(values)) != len(values) or len(values) < at_least:
        raise ValueError(
            f"{name} must hold {at_least} or more distinct values, got {values!r}"
            if at_least > 1
            else f"{name} must hold distinct values (at least one), got {values!r}"
        )


def _check_config(config: Any) -> None:
    if config is not None and not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(f"config must be a trainer ConfigDict or None, got {config!r}")


@dataclasses.dataclass(frozen=True)
class TStarGrid:
    """Part 1: runs of `run_length/(λη)` steps over a grid of λη and learning rates.

    η in λη is the effective learning rate η/(1−μ) under momentum μ (the η of the
    relations), so a run at SGD learning rate `lr` and product λη has λ = λη·(1−μ)/lr.

    Attributes:
      config: the trainer config of the runs (the model, data, loss and optimizer), trained as
        one `l2reg.training.sweep`; None when the preset trains through the trainer.
      lrs: distinct SGD learning rates η, each > 0.
      l2_lrs: the products λη, per step; at least 2 distinct values, each > 0 (the fit of
        t* against λη needs two).
      run_length: each run's length in units of 1/(λη) steps, > 0.
    """

    config: ml_collections.ConfigDict | None = dataclasses.field(repr=False)
    lrs: tuple[float, ...]
    l2_lrs: tuple[float, ...]
    run_length: float

    def __post_init__(self):
        _check_config(self.config)
        _check_rates("lrs", self.lrs)
        _check_rates("l2_lrs", self.l2_lrs, at_least=2)
        _check_positive("run_length", self.run_length)


@dataclasses.dataclass(frozen=True)
class L2Grid:
    """Parts 2–4: a grid of λ (0 included) at fixed learning rates, all of `num_steps`.

    Constant η, so the curve of one run gives its accuracy at every budget T ≤ num_steps; the
    runs are evaluated at each budget. η in λη is the effective η/(1−μ) under momentum μ.

    Attributes:
      config: the trainer config of the runs (the model, data, loss and optimizer), trained as
        one `l2reg.training.sweep`; None when the preset trains through the trainer.
      lrs: distinct SGD learning rates η, each > 0; parts 3 and 4 run at lrs[0].
      l2s: λ of the grid, strictly increasing from 0 (the λ = 0 baseline), with at least
        one λ > 0.
      num_steps: the length of every grid run, in steps.
      budgets: the budgets T, in steps, at which accuracy vs λ is read: strictly increasing
        integers in [1, num_steps], the last one num_steps (parts 3 and 4 compare there).
      scaled_length: the T ∝ 1/(λη) view reads each run at scaled_length/(λη) steps (capped
        at num_steps), > 0.
      probe_l2: part 3: λ of the probe, run at lrs[0], > 0.
      probe_length: the probe's length in units of 1/(λη) steps, > 0.
      autol2_l2: part 4: AutoL2's initial λ, run at lrs[0] for num_steps, > 0.
    """

    config: ml_collections.ConfigDict | None = dataclasses.field(repr=False)
    lrs: tuple[float, ...]
    l2s: tuple[float, ...]
    num_steps: int
    budgets: tuple[int, ...]
    scaled_length: float
    probe_l2: float
    probe_length: float
    autol2_l2: float

    def __post_init__(self):
        _check_config(self.config)
        _check_rates("lrs", self.lrs)
        l2s = tuple(self.l2s)
        for l2 in l2s:
            checks.number("each of l2s", l2, lambda x: 0 <= x < math.inf, "finite and ≥ 0")
        if len(l2s) < 2 or l2s[0] != 0 or np.any(np.diff(l2s) <= 0):
            raise ValueError(
                "l2s must be strictly increasing from 0 (the λ = 0 baseline) with at least "
                f"one λ > 0, got {l2s!r}"
            )
        checks.integer("num_steps", self.num_steps, maximum=checks.INT32_MAX)
        budgets = tuple(self.budgets)
        if not (
            budgets
            and all(checks.is_integer(b) and 1 <= b <= self.num_steps for b in budgets)
            and np.all(np.diff(budgets) > 0)
            and budgets[-1] == self.num_steps
        ):
            raise ValueError(
                f"budgets must be strictly increasing integers in [1, num_steps] ending at "
                f"num_steps={self.num_steps}, got {budgets!r}"
            )
        for name in ("scaled_length", "probe_l2", "probe_length", "autol2_l2"):
            _check_positive(name, getattr(self, name))


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean and standard deviation over seeds (NaN entries, e.g. never reached, left out)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    return {
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std()) if finite.size else None,
        "values": [float(v) if np.isfinite(v) else None for v in values],
    }


def peak_of(curve: Curves) -> relations.Peak:
    """t* of a curve's test accuracy, where it falls in the run and how far it falls after."""
    return relations.peak_shape(curve.steps, curve.test_accuracy)


def t_star_runs(
    grid: TStarGrid, seeds: Sequence[int], momentum: float
) -> list[tuple[float, sweep.Run]]:
    """Part 1's runs as (λη, configuration) pairs: λ = λη/η_eff, run_length/(λη) steps, with
    η_eff = η/(1−momentum)."""
    runs = []
    for seed in seeds:
        for lr in grid.lrs:
            effective = relations.effective_lr(lr, momentum)
            for l2_lr in grid.l2_lrs:
                steps = max(1, round(grid.run_length / l2_lr))
                runs.append((l2_lr, sweep.Run(l2_lr / effective, lr, seed, steps, l2_mode="fixed")))
    return runs


def l2_runs(grid: L2Grid, seeds: Sequence[int]) -> tuple[list[sweep.Run], list[sweep.Run]]:
    """Parts 2 and 3's runs: the λ grid at every η (num_steps each), and one probe per seed
    (λ = probe_l2 at lrs[0] for probe_length/(λη_eff) steps)."""
    configs = [
        sweep.Run(l2, lr, seed, grid.num_steps, l2_mode="fixed")
        for seed in seeds
        for lr in grid.lrs
        for l2 in grid.l2s
    ]
    probe_config = grid.config.copy_and_resolve_references()
    probe_config.lr = grid.lrs[0]
    probes = [
        probe.probe_run(probe_config, grid.probe_l2, grid.probe_length, seed) for seed in seeds
    ]
    return configs, probes


def scaled_steps(grid: L2Grid, momentum: float) -> dict[tuple[float, float], tuple[float, int]]:
    """For each (η, λ > 0) of the grid: T = scaled_length/(λη_eff) in steps, and the step
    the T ∝ 1/(λη) view evaluates, T rounded and capped at num_steps."""
    steps = {}
    for lr in grid.lrs:
        effective = relations.effective_lr(lr, momentum)
        for l2 in grid.l2s[1:]:
            target = grid.scaled_length / (l2 * effective)
            steps[lr, l2] = (target, min(grid.num_steps, max(1, round(target))))
    return steps


def t_star_part(grid: TStarGrid, seeds: Sequence[int], run: Runner) -> tuple[dict, list]:
    """Part 1: t* of every run, the power-law fit pooled over seeds and per seed.

    η is the runner's effective learning rate η/(1−μ) throughout: in λη, and in c = t*·λη.
    """
    runs = t_star_runs(grid, seeds, run.momentum)
    configs = [config for _, config in runs]
    curves = run("t_star", configs)
    shapes = [peak_of(curve) for curve in curves]
    points = [
        {
            "l2": c.l2,
            "lr": c.lr,
            "l2_lr": l2_lr,
            "seed": c.seed,
            "num_steps": c.steps,
            **shape._asdict(),
        }
        for (l2_lr, c), shape in zip(runs, shapes, strict=True)
    ]
    peaks = np.array([p["peak_accuracy"] for p in points])
    # Runs whose λ is too large to fit the data collapse early and peak far below the
    # others; the paper leaves them out of the fit.
    used = peaks >= peaks.max() - COLLAPSE_MARGIN
    for point, use in zip(points, used, strict=True):
        point["used"] = bool(use)
    l2_lrs = np.array([p["l2_lr"] for p in points])
    effective_lrs = [relations.effective_lr(c.lr, run.momentum) for c in configs]

    def fit(mask):
        # A power law needs two distinct λη. They are told apart by the grid's values: λ·η
        # recomputed from λ = λη/η can differ from one η to another by a rounding error.
        if np.unique(l2_lrs[mask]).size < 2:
            return None
        return relations.fit_t_star(
            [p["l2"] for p in points],
            effective_lrs,
            [p["t_star"] for p in points],
            used=mask,
        )

    pooled = fit(used)
    # A check that does not depend on the collapse margin: every run whose curve has a clear
    # peak (early in the run, falling after it), collapsed or not.
    clear = np.array([shape.is_clear() for shape in shapes])
    clear_fit = fit(clear)
    fitted_l2_lr = l2_lrs[used]
    seed_of = np.array([p["seed"] for p in points])
    per_seed = [fit(used & (seed_of == seed)) for seed in seeds]
    interior = [p for p in points if p["used"] and p["peak_fraction"] < 0.5]
    result = {
        "setup": run.label,
        "momentum": run.momentum,
        "slope": pooled.slope if pooled else None,
        "slope_stderr": pooled.slope_stderr if pooled else None,
        "c": pooled.c if pooled else None,
        "points": points,
        "per_seed_slope": spread([f.slope if f else np.nan for f in per_seed]),
        "per_seed_c": spread([f.c if f else np.nan for f in per_seed]),
        "l2_lr_decades": float(np.log10(max(grid.l2_lrs) / min(grid.l2_lrs))),
        "fitted_l2_lr_range": [float(fitted_l2_lr.min()), float(fitted_l2_lr.max())],
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
    """Parts 2 and 3: accuracy vs λ at fixed budgets and with T ∝ 1/(λη); the probe's c.

    Every accuracy at a budget T is read from an evaluation after exactly T steps (the runs
    are evaluated there), and η is the runner's effective η/(1−μ) in λη, c and λ_pred.
    """
    lr = grid.lrs[0]
    effective = relations.effective_lr(lr, run.momentum)
    configs, probes = l2_runs(grid, seeds)
    scaled_at = scaled_steps(grid, run.momentum)
    eval_at = sorted(set(grid.budgets) | {step for _, step in scaled_at.values()})
    grid_curves = run("l2", configs, eval_at=eval_at)
    # Apart from the grid, so that its evaluations at the budgets do not change the probe's
    # sampling, and hence its smoothed t*.
    probe_curves = run("probe", probes)
    by_key = {(c.lr, c.l2, c.seed): curve for c, curve in zip(configs, grid_curves, strict=True)}
    positive = np.array(grid.l2s[1:])  # l2s[0] is 0

    fixed_budget = []
    for lr_ in grid.lrs:
        for budget in grid.budgets:
            accuracy = np.array(
                [
                    [by_key[lr_, l2, s].accuracy_at(budget, exact=True) for s in seeds]
                    for l2 in grid.l2s
                ]
            )  # (λ, seed)
            mean = accuracy.mean(axis=1)
            zero, with_l2 = mean[0], mean[1:]
            best = int(np.argmax(np.where(np.isfinite(with_l2), with_l2, -np.inf)))
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
    scaled = []
    for (lr_, l2), (target, step) in scaled_at.items():
        curves = [by_key[lr_, l2, s] for s in seeds]
        indices = [curve.index_at(step) for curve in curves]
        scaled.append(
            {
                "lr": lr_,
                "l2": l2,
                "target_steps": target,
                # The step read: the target rounded and capped at the run's end, where the
                # runner could evaluate it, else the last evaluation before it.
                "steps": int(curves[0].steps[indices[0]]),
                "accuracy": spread(
                    [curve.test_accuracy[i] for curve, i in zip(curves, indices, strict=True)]
                ),
            }
        )

    # Part 3: c from the probe, λ_pred = c/(ηT) at the largest budget, vs the grid's best.
    budget = grid.num_steps
    probe_steps = probes[0].steps
    measured = [probe.measure(curve, grid.probe_l2, effective) for curve in probe_curves]
    probe_peaks = [relations.Peak(**m["probe"]) for m in measured]
    c = [m["c"] for m in measured]
    predicted = relations.predict_l2(float(np.mean(c)), effective, budget)
    row = next(r for r in fixed_budget if r["lr"] == lr and r["budget_steps"] == budget)
    grid_steps = grid.num_steps * len(grid.l2s)
    ratio = predicted / row["l2_opt"]
    # Relation 3 at every budget, not only the largest: λ_pred(T) = c/(ηT) vs λ_opt(T).
    ratios_by_budget = {
        str(r["budget_steps"]): relations.predict_l2(
            float(np.mean(c)), effective, r["budget_steps"]
        )
        / r["l2_opt"]
        for r in fixed_budget
        if r["lr"] == lr
    }
    # The probe's t* means something only if its curve peaks inside the run and falls after.
    clear_peak = [m["clear_peak"] for m in measured]
    prediction = {
        "setup": run.label,
        "lr": lr,
        "effective_lr": float(effective),
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


# Part 4's AutoL2 variants: (name, the run's fields) from (λ_pred, the effective η). The
# authors' released clock is η = 1 with cooldown 0.2 (0.2/λ steps); on our η_eff clock, with a
# constant schedule, that is cooldown = 0.2·η_eff.
AUTOL2_VARIANTS = {
    "autol2 (defaults)": lambda predicted, effective: {},
    "autol2 (authors: cooldown 0.2/λ steps)": lambda predicted, effective: {
        "autol2": (("cooldown", 0.2 * effective),)
    },
    "autol2 + min_l2 = λ_pred": lambda predicted, effective: {"autol2": (("min_l2", predicted),)},
    "autol2 + step lr schedule": lambda predicted, effective: {"lr_schedule": "step"},
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
    effective = relations.effective_lr(lr, run.momentum)
    variants = {
        name: make(min(predicted_l2, grid.autol2_l2), effective)
        for name, make in AUTOL2_VARIANTS.items()
    }
    configs = [
        sweep.Run(grid.autol2_l2, lr, seed, budget, l2_mode="autol2", **fields)
        for fields in variants.values()
        for seed in seeds
    ]
    curves = run("autol2", configs)
    row = next(r for r in fixed["fixed_budget"] if r["lr"] == lr and r["budget_steps"] == budget)
    best_l2 = row["best_l2"]
    best_accuracy = spread([by_key[lr, best_l2, s].accuracy_at(budget, exact=True) for s in seeds])
    zero_accuracy = spread([by_key[lr, 0.0, s].accuracy_at(budget, exact=True) for s in seeds])
    # Undefined (None, the goal missed) where either side has no finite accuracy.
    gain = (
        best_accuracy["mean"] - zero_accuracy["mean"]
        if best_accuracy["mean"] is not None and zero_accuracy["mean"] is not None
        else None
    )
    # No run reaches an undefined target.
    target = np.nan if best_accuracy["mean"] is None else best_accuracy["mean"]
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
        "best_fixed": {
            "l2": best_l2,
            "lr": lr,
            "accuracy": best_accuracy,
            "gain_over_zero_l2": gain,
            "met": gain is not None and gain >= GAIN_GOAL,
        },
        "zero_l2": {"lr": lr, "accuracy": zero_accuracy},
    }
    return results, curves_by_variant
