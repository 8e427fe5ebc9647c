"""Relation 1, t* ≈ c/(λη), measured by a protocol fixed before any number is seen.

The runs of `parts.TStarGrid` (λη over decades, several learning rates, each run
`run_length/(λη)` steps, on every replica) arrive as `Point`s; `analyse` reads and fits them
by the rules below (`RULES` prints them), `plot` draws every replica's t* against λη next to
the slope over a grid of analysis choices, and `section` writes the report's part.

- **Selection split.** t* is read on validation accuracy when the runs have a validation split
  (a finite `validation_accuracy`), on test accuracy otherwise, so that the curve t* is read
  from is not the one the figures are reported on whenever it can be.
- **Exclusions** come from what the fit does not measure: (a) a run that cannot fit its
  training labels (its highest training accuracy more than `FIT_MARGIN` below 1 − the
  label-noise fraction, what fitting the clean labels alone gives) sits in the collapsed
  regime the paper leaves out; (b) a run whose smoothed
  argmax is its last evaluation has no observed peak; (c) a run without a finite selection
  accuracy has no t*.
- **Verdict.** `relations.fit_t_star` pooled over every replica's kept runs: the slope with its
  95% interval, met when within `GOAL`; the same fit per replica gives an interval over
  replicas.
- **Analysis grid.** The slope for every combination of the fit margin, the smoothing and
  the clear-peak rule, shown next to the verdict (never chosen from), so that a verdict that
  holds only for one choice shows as such.
- **c** = t*·λη of the kept runs, for comparison with a probe's.
- **Relation 2's T ∝ 1/(λη) half** from the same runs: test accuracy at each run's end improves
  as λη falls and saturates.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as scipy_stats

from l2reg import checks, relations
from l2reg.files import pyplot, save_figure
from l2reg.reproduction import stats
from l2reg.reproduction.stats import Replica
from l2reg.training.rundir import Curves

__all__ = [
    "CANNOT_FIT",
    "CLEAR_PEAK",
    "CLEAR_PEAK_RULES",
    "FIT_MARGIN",
    "FIT_MARGINS",
    "GOAL",
    "NO_VALUE",
    "PEAK_AT_END",
    "RULES",
    "SATURATION",
    "SMOOTHING",
    "SMOOTHINGS",
    "Point",
    "analyse",
    "fit_threshold",
    "headline",
    "highest_training_accuracy",
    "label_noise",
    "plot",
    "section",
    "selection_split",
    "training_fit",
]

# The verdict: the pooled slope of log t* against log(λη) within this range (the paper: −1).
GOAL = (-1.1, -0.9)
# The primary analysis: rule (a)'s margin in training accuracy (0–1), the smoothing of t* in
# decades of (1 + step) (`relations.t_star`'s), and whether a clear peak is required.
FIT_MARGIN = 0.1
SMOOTHING = 0.1
CLEAR_PEAK = False
# The analysis grid shown next to the verdict; None: no training-fit rule. Rule (b) in every cell.
FIT_MARGINS = (0.05, 0.1, 0.2, None)
SMOOTHINGS = (0.05, 0.1, 0.2)
CLEAR_PEAK_RULES = (False, True)
# Relation 2's saturation: the mean accuracy at the smallest λη within this of the best mean.
SATURATION = 0.005

# Why a run is left out of the fit (a `Point`'s `excluded` in the result), in the order checked.
NO_VALUE = "(c) no finite selection accuracy"
CANNOT_FIT = "(a) cannot fit its training labels"
PEAK_AT_END = "(b) t* at its last evaluation"
REASONS = (CANNOT_FIT, PEAK_AT_END, NO_VALUE)

# Two descriptions of one run's λη, λ·η_eff and the grid's value, may differ by rounding only.
_L2_LR_RTOL = 1e-6


def _grid_text(values) -> str:
    return "{" + ", ".join("none" if v is None else f"{v:g}" for v in values) + "}"


RULES = "\n".join(
    (
        "**Relation 1's rules** (fixed before any number was seen):",
        "- **t*** is the step of the highest smoothed selection accuracy (a Gaussian kernel of "
        f"{SMOOTHING:g} decades in log(1 + step), `relations.peak_shape`), read on validation "
        "accuracy when the runs have a validation split and on test accuracy otherwise; the "
        "split used is named with the result. η is the effective η/(1−μ) throughout.",
        "- **Exclusions**, from what the fit does not measure: (a) a run whose highest "
        "training accuracy (the mean between evaluations) stays more than "
        f"{FIT_MARGIN * 100:g} points below 1 − the label-noise fraction (the accuracy of a "
        "model that fits every clean training label and none of the flipped ones) cannot fit "
        "its training labels; (b) a run whose t* is its last evaluation has no observed peak and "
        "is never fitted; (c) a run without a finite selection accuracy has no t*.",
        "- **Verdict.** log t* = log c + slope·log(λη) by least squares over the kept runs of "
        "every replica, with the slope's 95% Student-t interval (n − 2 degrees of freedom); "
        f"met when the slope lies in [{GOAL[0]:g}, {GOAL[1]:g}]. The same fit per replica "
        "gives the mean slope over replicas with its 95% interval (ddof = 1).",
        "- **Analysis grid**, shown next to the verdict and never chosen from: training-fit "
        f"margin ∈ {_grid_text(FIT_MARGINS)} (none: no rule (a)) × smoothing ∈ "
        f"{_grid_text(SMOOTHINGS)} decades × a clear peak (t* before 80% of the run, followed by "
        "a fall of at least 0.5 points: `Peak.is_clear`) required or not; rule (b) in every "
        "cell. Reported: the slope's minimum, median and maximum, and the share of the "
        f"{len(FIT_MARGINS) * len(SMOOTHINGS) * len(CLEAR_PEAK_RULES)} cells within the goal "
        "(a cell with fewer than two distinct λη counts as outside it).",
        "- **c** = t*·λη of each kept run: its median, and its mean with a 95% interval.",
        "- **Relation 2, T ∝ 1/(λη)**: each run's test accuracy at its end (after "
        "run_length/(λη) steps), the mean over replicas per η and λη. Met when, for every η, "
        f"the mean at the smallest λη is within {SATURATION * 100:g} points of the best mean "
        "(saturation) and the Spearman correlation of the mean with λη, averaged over η, is "
        "≤ 0 (accuracy improves as λη falls).",
    )
)


class Point(NamedTuple):
    """One run of relation 1's grid.

    Attributes:
      replica: the (data draw, seed) it ran on.
      l2: λ, > 0.
      lr: the SGD learning rate η, > 0.
      effective_lr: η/(1−μ) under momentum μ, the η of λη and of c.
      l2_lr: the grid's λη, exactly as in the grid: runs are grouped by this value, never by a
        recomputed λ·η (which can differ in its last bits from one η to another); it must
        equal l2 × effective_lr up to rounding.
      curve: the run's `Curves`, ending at its last step run_length/(λη); its
        `validation_accuracy`, when it has one, is the selection accuracy.
    """

    replica: Replica
    l2: float
    lr: float
    effective_lr: float
    l2_lr: float
    curve: Curves

    @classmethod
    def of_run(cls, replica: Replica, l2_lr: float, run: Any, curve: Curves, momentum: float):
        """The point of `run` (a `sweep.Run` of the grid's λη `l2_lr`, from
        `parts.t_star_runs`) trained on `replica` with momentum μ to `curve`."""
        effective_lr = float(relations.effective_lr(run.lr, momentum))
        return cls(replica, run.l2, run.lr, effective_lr, l2_lr, curve)


def _number(value: Any) -> float | None:
    """`value` as a float, None when not finite (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def selection_split(points: Sequence[Point]) -> str:
    """'validation' when any run has a finite validation accuracy, else 'test': one split for
    every run (a run without validation values then has none, rule (c))."""
    for point in points:
        if np.any(np.isfinite(point.curve.validation_accuracy)):
            return "validation"
    return "test"


def _selection_accuracy(curve: Curves, split: str) -> np.ndarray:
    values = curve.test_accuracy if split == "test" else curve.validation_accuracy
    return np.asarray(values, dtype=float)


def _check_points(points: Any, run_length: Any) -> list[Point]:
    checks.number("run_length", run_length, lambda x: math.isfinite(x) and x > 0, "finite and > 0")
    if isinstance(points, str | bytes) or not isinstance(points, Sequence) or not points:
        raise ValueError(f"points must be a non-empty list of relation1.Point, got {points!r:.80}")
    seen = {}
    for index, point in enumerate(points):
        if not isinstance(point, Point):
            raise ValueError(f"points[{index}] must be a relation1.Point, got {point!r:.80}")
        replica = point.replica
        if not (
            isinstance(replica, tuple)
            and len(replica) == 2
            and all(map(checks.is_integer, replica))
        ):
            raise ValueError(
                f"points[{index}].replica must be a stats.Replica(draw, seed), got {replica!r}"
            )
        for name in ("l2", "lr", "effective_lr", "l2_lr"):
            checks.number(
                f"points[{index}].{name}",
                getattr(point, name),
                lambda x: math.isfinite(x) and x > 0,
                "finite and > 0",
            )
        product = point.l2 * point.effective_lr
        if abs(product / point.l2_lr - 1) > _L2_LR_RTOL:
            raise ValueError(
                f"points[{index}]: l2 × effective_lr = {product!r} differs from l2_lr = "
                f"{point.l2_lr!r}; effective_lr must be η/(1−μ), the η of the grid's λη"
            )
        steps = np.asarray(point.curve.steps)
        if steps.ndim != 1 or steps.size == 0 or not steps[0] > 0:
            raise ValueError(
                f"points[{index}].curve.steps must be 1-D, non-empty and start after step 0, "
                f"got {_shown(steps)}"
            )
        for name in ("train_accuracy", "test_accuracy"):
            shape = np.shape(getattr(point.curve, name))
            if shape != steps.shape:
                raise ValueError(
                    f"points[{index}].curve.{name} must have the shape of its steps "
                    f"{steps.shape}, got {shape}"
                )
        key = (tuple(replica), point.lr, point.l2_lr)
        if key in seen:
            raise ValueError(
                f"points[{seen[key]}] and points[{index}] are the same run (replica "
                f"{tuple(replica)}, lr {point.lr!r}, l2_lr {point.l2_lr!r}): one run each"
            )
        seen[key] = index
    return list(points)


def _shown(array: np.ndarray) -> str:
    """An array in a one-line message: itself when short, else its dtype and shape."""
    return (
        repr(array) if array.ndim == 1 and array.size <= 4 else f"a {checks.describe_array(array)}"
    )


def _peaks(points: list[Point], split: str, smoothing: float) -> list[relations.Peak | None]:
    """Each run's peak of its selection accuracy; None for a run without a finite value."""
    peaks = []
    for point in points:
        accuracy = _selection_accuracy(point.curve, split)
        finite = np.any(np.isfinite(accuracy))
        peaks.append(
            relations.peak_shape(point.curve.steps, accuracy, smoothing=smoothing)
            if finite
            else None
        )
    return peaks


def highest_training_accuracy(curve: Curves) -> float:
    """The run's highest finite training accuracy (−inf for a run without one)."""
    accuracy = np.asarray(curve.train_accuracy, dtype=float)
    return float(np.max(accuracy[np.isfinite(accuracy)], initial=-np.inf))


def fit_threshold(label_noise: float, margin: float = FIT_MARGIN) -> float:
    """Rule (a)'s bound on a run's highest training accuracy: (1 − label_noise) − `margin`. A
    run that fits every clean label and none of the flipped ones has a training accuracy of
    1 − label_noise; one that also memorizes them, more."""
    return 1.0 - label_noise - margin


def label_noise(config) -> float:
    """The fraction of `config`'s training labels flipped (`data_options.label_noise`; 0 when
    unset), which rule (a)'s bound depends on."""
    return float((config.get("data_options") or {}).get("label_noise", 0.0))


def training_fit(curve: Curves, label_noise: float) -> tuple[float | None, float, bool]:
    """Rule (a) on one run: its highest training accuracy (None without a finite one), the bound
    `fit_threshold(label_noise)`, and whether it fits the clean share of its training labels
    (reaches the bound)."""
    highest = highest_training_accuracy(curve)
    threshold = fit_threshold(label_noise)
    if not math.isfinite(highest):
        return None, threshold, False
    return highest, threshold, highest >= threshold


def _highest_training_accuracy(points: list[Point]) -> np.ndarray:
    """Each run's highest finite training accuracy (−inf for a run without one)."""
    return np.array([highest_training_accuracy(point.curve) for point in points])


def _fits_training(points: list[Point], label_noise: float, margin: float | None) -> np.ndarray:
    """Rule (a): whether each run fits the clean share of its training labels, its highest
    training accuracy at least `fit_threshold(label_noise, margin)` (every run with margin
    None; never a run without a finite value)."""
    if margin is None:
        return np.ones(len(points), dtype=bool)
    highest = _highest_training_accuracy(points)
    return np.isfinite(highest) & (highest >= fit_threshold(label_noise, margin))


def _reasons(
    points: list[Point], peaks: list[relations.Peak | None], fits: np.ndarray
) -> list[str | None]:
    """Why each run is left out (rules (c), (a), (b), the first that applies), or None."""
    reasons = []
    for point, peak, fit in zip(points, peaks, fits, strict=True):
        if peak is None:
            reasons.append(NO_VALUE)
        elif not fit:
            reasons.append(CANNOT_FIT)
        elif peak.t_star >= float(point.curve.steps[-1]):
            reasons.append(PEAK_AT_END)
        else:
            reasons.append(None)
    return reasons


def _fit(points: list[Point], peaks, mask: np.ndarray) -> relations.TStarFit | None:
    """The power-law fit of the runs in `mask`; None with fewer than two distinct λη (told
    apart by the grid's values)."""
    l2_lr = np.array([p.l2_lr for p in points])
    if np.unique(l2_lr[mask]).size < 2:
        return None
    return relations.fit_t_star(
        [p.l2 for p in points],
        [p.effective_lr for p in points],
        [np.nan if peak is None else peak.t_star for peak in peaks],
        used=mask,
    )


def _fit_summary(points: list[Point], fit: relations.TStarFit | None, mask: np.ndarray) -> dict:
    runs = int(mask.sum())
    l2_lr = np.array([p.l2_lr for p in points])[mask]
    summary = {
        "slope": None,
        "slope_stderr": None,
        "slope_interval": None,
        "c": None,
        "runs": runs,
        "l2_lr_values": int(np.unique(l2_lr).size),
        "fitted_l2_lr_range": [float(l2_lr.min()), float(l2_lr.max())] if runs else None,
    }
    if fit is not None:
        interval = stats.slope_interval(fit.slope, fit.slope_stderr, runs - 2)
        summary.update(
            slope=_number(fit.slope),
            slope_stderr=_number(fit.slope_stderr),
            slope_interval=None if interval is None else [_number(v) for v in interval],
            c=_number(fit.c),
        )
    return summary


def _in_goal(slope: float | None) -> bool:
    return slope is not None and GOAL[0] <= slope <= GOAL[1]


def _analysis_grid(points: list[Point], label_noise: float, peaks_by_smoothing: dict) -> dict:
    """The slope in every cell of FIT_MARGINS × SMOOTHINGS × CLEAR_PEAK_RULES, rule (b) and (c)
    in each, and the summary over the cells."""
    cells = []
    for margin in FIT_MARGINS:
        fits = _fits_training(points, label_noise, margin)
        for smoothing in SMOOTHINGS:
            peaks = peaks_by_smoothing[smoothing]
            kept = np.array([r is None for r in _reasons(points, peaks, fits)])
            clear = np.array([peak is not None and peak.is_clear() for peak in peaks])
            for clear_peak in CLEAR_PEAK_RULES:
                mask = kept & clear if clear_peak else kept
                summary = _fit_summary(points, _fit(points, peaks, mask), mask)
                cells.append(
                    {
                        "fit_margin": margin,
                        "smoothing": smoothing,
                        "clear_peak": clear_peak,
                        "slope": summary["slope"],
                        "slope_stderr": summary["slope_stderr"],
                        "runs": summary["runs"],
                    }
                )
    slopes = [cell["slope"] for cell in cells if cell["slope"] is not None]
    in_goal = sum(_in_goal(cell["slope"]) for cell in cells)
    return {
        "cells": cells,
        "cells_with_slope": len(slopes),
        "min": float(min(slopes)) if slopes else None,
        "median": float(np.median(slopes)) if slopes else None,
        "max": float(max(slopes)) if slopes else None,
        "in_goal": int(in_goal),
        "share_in_goal": in_goal / len(cells),
    }


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's correlation, NaN with fewer than two values or a constant one."""
    finite = np.isfinite(y)
    if finite.sum() < 2 or np.ptp(y[finite]) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(scipy_stats.spearmanr(x[finite], y[finite]).statistic)


def _scaled_budget(points: list[Point], run_length: float) -> dict:
    """Relation 2's T ∝ 1/(λη) half: test accuracy at each run's end, per η and λη."""
    rows, by_lr = [], []
    for lr in sorted({p.lr for p in points}):
        mine = [p for p in points if p.lr == lr]
        l2_lrs = np.array(sorted({p.l2_lr for p in mine}))
        means = []
        for l2_lr in l2_lrs:
            runs = [p for p in mine if p.l2_lr == l2_lr]
            accuracy = stats.interval([p.curve.test_accuracy[-1] for p in runs])
            rows.append(
                {
                    "lr": lr,
                    "effective_lr": runs[0].effective_lr,
                    "l2_lr": float(l2_lr),
                    "target_steps": run_length / l2_lr,
                    "steps": sorted({_number(p.curve.steps[-1]) for p in runs}),
                    "replicas": [list(p.replica) for p in runs],
                    "test_accuracy": accuracy,
                }
            )
            means.append(np.nan if accuracy["mean"] is None else accuracy["mean"])
        means = np.array(means)
        finite = np.isfinite(means)
        gap = float(means[finite].max() - means[0]) if finite[0] else math.nan
        by_lr.append(
            {
                "lr": lr,
                "effective_lr": mine[0].effective_lr,
                "saturation_gap": _number(gap),
                "spearman": _number(_spearman(l2_lrs, means)),
            }
        )
    gaps = [row["saturation_gap"] for row in by_lr]
    worst_gap = None if None in gaps else max(gaps)
    correlations = [row["spearman"] for row in by_lr if row["spearman"] is not None]
    spearman = float(np.mean(correlations)) if correlations else None
    return {
        "rows": rows,
        "by_lr": by_lr,
        "saturation_gap": worst_gap,
        "spearman": spearman,
        "saturated": worst_gap is not None and worst_gap <= SATURATION,
        "improves_as_l2_lr_falls": spearman is not None and spearman <= 0,
        "met": bool(
            worst_gap is not None
            and worst_gap <= SATURATION
            and spearman is not None
            and spearman <= 0
        ),
    }


def analyse(points: Sequence[Point], *, run_length: float, label_noise: float = 0.0) -> dict:
    """Relation 1 by `RULES`: t* of every run, exclusions, the pooled and per-replica fits,
    the analysis grid, c, and relation 2's T ∝ 1/(λη) half.

    Args:
      points: every run of the grid, each replica's runs together or not (order is kept).
      run_length: each run's length in units of 1/(λη) steps, > 0 (the grid's).
      label_noise: the fraction of the training labels flipped, in [0, 1) (rule (a)'s
        threshold is 1 − label_noise − FIT_MARGIN).

    Returns:
      A JSON-ready dict (non-finite numbers as None): 'selection_split' ('validation' or
      'test'), 'run_length', 'rules' (the constants used), 'replicas' ([draw, seed] in order
      of appearance), 'l2_lr_decades', 'points' (one per run: replica, l2, lr, effective_lr,
      l2_lr, steps, the `relations.Peak` fields at SMOOTHING, clear_peak,
      highest_train_accuracy, final_test_accuracy, c = t*·λη, excluded: None or a reason of
      `REASONS`), 'excluded' (runs per reason), 'fit' (slope, slope_stderr, slope_interval,
      c, runs, l2_lr_values, fitted_l2_lr_range), 'per_replica' ('fits' per replica and
      'slope': `stats.interval` over replicas), 'goal', 'met', 'analysis_grid' ('cells' each
      with fit_margin, smoothing, clear_peak, slope, slope_stderr, runs; cells_with_slope,
      min, median, max, in_goal, share_in_goal), 'c' (`stats.interval` of the kept runs' c
      with its 'median') and 'scaled_budget' ('rows' per η and λη with the replicas' final
      test accuracy, 'by_lr' with saturation_gap and spearman, the worst 'saturation_gap',
      the mean 'spearman', 'saturated', 'improves_as_l2_lr_falls', 'met').

    Raises:
      ValueError: points is empty, or a point is malformed (a non-positive rate, l2 ×
        effective_lr unlike l2_lr, curves of unequal lengths, a run given twice), or
        run_length is not > 0; before anything is computed.
    """
    points = _check_points(points, run_length)
    checks.number("label_noise", label_noise, lambda x: 0 <= x < 1, "in [0, 1)")
    split = selection_split(points)
    replicas = list(dict.fromkeys(Replica(*p.replica) for p in points))
    replica_of = np.array([replicas.index(Replica(*p.replica)) for p in points])
    peaks_by_smoothing = {s: _peaks(points, split, s) for s in {SMOOTHING, *SMOOTHINGS}}
    peaks = peaks_by_smoothing[SMOOTHING]
    fits = _fits_training(points, label_noise, FIT_MARGIN)
    reasons = _reasons(points, peaks, fits)
    kept = np.array([reason is None for reason in reasons])
    if CLEAR_PEAK:
        kept &= np.array([peak is not None and peak.is_clear() for peak in peaks])

    fit = _fit_summary(points, _fit(points, peaks, kept), kept)
    per_replica = []
    for index, replica in enumerate(replicas):
        mask = kept & (replica_of == index)
        per_replica.append(
            {"replica": list(replica), **_fit_summary(points, _fit(points, peaks, mask), mask)}
        )
    c = [
        relations.c_from(peak.t_star, p.l2, p.effective_lr)
        for p, peak, use in zip(points, peaks, kept, strict=True)
        if use
    ]
    highest_train = _highest_training_accuracy(points)
    records = []
    for point, peak, reason, train in zip(points, peaks, reasons, highest_train, strict=True):
        shape = {field: None for field in relations.Peak._fields}
        if peak is not None:
            shape = {field: _number(value) for field, value in peak._asdict().items()}
        records.append(
            {
                "replica": list(point.replica),
                "l2": float(point.l2),
                "lr": float(point.lr),
                "effective_lr": float(point.effective_lr),
                "l2_lr": float(point.l2_lr),
                "steps": _number(point.curve.steps[-1]),
                **shape,
                "clear_peak": peak is not None and bool(peak.is_clear()),
                "highest_train_accuracy": _number(train),
                "final_test_accuracy": _number(point.curve.test_accuracy[-1]),
                "c": None
                if peak is None
                else _number(relations.c_from(peak.t_star, point.l2, point.effective_lr)),
                "excluded": reason,
            }
        )
    l2_lrs = [p.l2_lr for p in points]
    return {
        "selection_split": split,
        "run_length": float(run_length),
        "rules": {
            "goal": list(GOAL),
            "fit_margin": FIT_MARGIN,
            "label_noise": float(label_noise),
            "smoothing": SMOOTHING,
            "clear_peak": CLEAR_PEAK,
            "fit_margins": list(FIT_MARGINS),
            "smoothings": list(SMOOTHINGS),
            "clear_peak_rules": list(CLEAR_PEAK_RULES),
            "saturation": SATURATION,
        },
        "replicas": [list(r) for r in replicas],
        "l2_lr_decades": float(np.log10(max(l2_lrs) / min(l2_lrs))),
        "points": records,
        "excluded": {reason: reasons.count(reason) for reason in REASONS},
        "fit": fit,
        "per_replica": {
            "fits": per_replica,
            "slope": stats.interval(
                [np.nan if f["slope"] is None else f["slope"] for f in per_replica]
            ),
        },
        "goal": list(GOAL),
        "met": _in_goal(fit["slope"]),
        "analysis_grid": _analysis_grid(points, label_noise, peaks_by_smoothing),
        "c": {**stats.interval(c), "median": float(np.median(c)) if c else None},
        "scaled_budget": _scaled_budget(points, float(run_length)),
    }


def _slope_text(fit: dict) -> str:
    if fit["slope"] is None:
        return "undefined (fewer than two distinct λη kept)"
    interval = fit["slope_interval"]
    within = "" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    return f"{fit['slope']:.2f}{within}"


def headline(result: dict) -> str:
    """One line for the report's summary: the pooled slope with its 95% interval, the
    per-replica interval, and the analysis grid's range and share within the goal."""
    grid = result["analysis_grid"]
    spread = (
        f"grid {grid['min']:.2f} … {grid['max']:.2f}, {grid['share_in_goal']:.0%} of cells in goal"
        if grid["min"] is not None
        else "no grid cell has a slope"
    )
    return (
        f"slope {_slope_text(result['fit'])} ({result['fit']['runs']} runs, "
        f"{result['selection_split']}); per replica "
        f"{stats.text(result['per_replica']['slope'], digits=2)}; {spread}"
    )


def _met(flag: bool) -> str:
    return "**met**" if flag else "**missed**"


def _cell_text(cell: dict) -> str:
    if cell["slope"] is None:
        return f"— ({cell['runs']})"
    text = f"{cell['slope']:.2f} ({cell['runs']})"
    return f"**{text}**" if _in_goal(cell["slope"]) else text


def section(result: dict, *, rules: bool = True) -> str:
    """Relation 1's part of report.md: `RULES` (unless `rules` is False, for a report that
    prints them elsewhere), then the verdict with the slope and its interval, the per-replica
    interval, the analysis grid, c and relation 2's T ∝ 1/(λη) half, each goal met or missed."""
    fit, grid = result["fit"], result["analysis_grid"]
    points = result["points"]
    n_replicas = len(result["replicas"])
    excluded = ", ".join(f"{reason}: {count}" for reason, count in result["excluded"].items())
    lines = [RULES, ""] if rules else []
    c_fit = f"c = {fit['c']:.3g}" if fit["c"] is not None else "c undefined"
    stderr = f", standard error {fit['slope_stderr']:.3f}" if fit["slope_stderr"] else ""
    lines += [
        f"t* read on **{result['selection_split']}** accuracy; {len(points)} runs over "
        f"{n_replicas} replicas, λη over {result['l2_lr_decades']:.1f} decades; "
        f"{fit['runs']} kept. Excluded: {excluded}.",
        "",
        f"**Verdict.** Pooled slope {_slope_text(fit)}"
        + (f" (95% interval{stderr})" if fit["slope_interval"] else "")
        + f" from {fit['runs']} runs at {fit['l2_lr_values']} values of λη, {c_fit}; goal "
        f"[{GOAL[0]:g}, {GOAL[1]:g}]: {_met(result['met'])}.",
        "",
        f"Per replica: slope {stats.text(result['per_replica']['slope'], digits=2)} (mean "
        f"[95% interval] over {n_replicas} replicas, ddof = 1; "
        f"{result['per_replica']['slope']['missing']} without a slope).",
        "",
        "**Analysis grid** (slope (runs kept); bold: within the goal):",
        "",
        "| fit margin | clear peak | " + " | ".join(f"smoothing {s:g}" for s in SMOOTHINGS) + " |",
        "|---|---|" + "---|" * len(SMOOTHINGS),
    ]
    cells = {(c["fit_margin"], c["smoothing"], c["clear_peak"]): c for c in grid["cells"]}
    for margin in FIT_MARGINS:
        for clear_peak in CLEAR_PEAK_RULES:
            lines.append(
                f"| {'none' if margin is None else f'{margin:g}'} | "
                f"{'required' if clear_peak else 'not required'} | "
                + " | ".join(_cell_text(cells[margin, s, clear_peak]) for s in SMOOTHINGS)
                + " |"
            )
    total = len(grid["cells"])
    lines += [
        "",
        f"Over the grid's {total} cells: slope {grid['min']:.2f} … {grid['max']:.2f} (median "
        f"{grid['median']:.2f}); {grid['in_goal']} of {total} ({grid['share_in_goal']:.0%}) "
        "within the goal."
        if grid["min"] is not None
        else f"No cell of the grid's {total} has two distinct λη kept.",
        "",
        "**c = t*·λη** of the kept runs: median "
        + (f"{result['c']['median']:.3g}" if result["c"]["median"] is not None else "—")
        + f", mean {stats.text(result['c'], digits=3)}.",
        "",
    ]
    lines += _runs_by_l2_lr(points)
    lines += _scaled_budget_lines(result["scaled_budget"])
    return "\n".join(lines)


def _runs_by_l2_lr(points: list[dict]) -> list[str]:
    lines = [
        "Runs kept and excluded per λη (all replicas and η):",
        "",
        "| λη | kept | " + " | ".join(REASONS) + " |",
        "|---|---|" + "---|" * len(REASONS),
    ]
    for l2_lr in sorted({p["l2_lr"] for p in points}):
        mine = [p["excluded"] for p in points if p["l2_lr"] == l2_lr]
        lines.append(
            f"| {l2_lr:g} | {mine.count(None)} | "
            + " | ".join(str(mine.count(reason)) for reason in REASONS)
            + " |"
        )
    return [*lines, ""]


def _format(value: float | None, text: str, *, scale: float = 1.0) -> str:
    return "undefined" if value is None else text.format(value * scale)


def _scaled_budget_lines(scaled: dict) -> list[str]:
    lrs = [row["lr"] for row in scaled["by_lr"]]
    by_key = {(row["lr"], row["l2_lr"]): row for row in scaled["rows"]}
    lines = [
        "**Relation 2, T ∝ 1/(λη)**: test accuracy at each run's end, T = run_length/(λη) steps "
        "(points, mean [95% interval] over replicas):",
        "",
        "| λη | T (steps) | " + " | ".join(f"η = {lr:g}" for lr in lrs) + " |",
        "|---|---|" + "---|" * len(lrs),
    ]
    for l2_lr in sorted({row["l2_lr"] for row in scaled["rows"]}):
        target = next(row["target_steps"] for row in scaled["rows"] if row["l2_lr"] == l2_lr)
        lines.append(
            f"| {l2_lr:g} | {target:.0f} | "
            + " | ".join(
                stats.text(by_key[lr, l2_lr]["test_accuracy"], scale=100)
                if (lr, l2_lr) in by_key
                else "—"
                for lr in lrs
            )
            + " |"
        )

    lines += [
        "",
        "; ".join(
            f"η = {row['lr']:g}: the smallest λη "
            + _format(row["saturation_gap"], "{:.1f}", scale=100)
            + " points below the best mean, Spearman "
            + _format(row["spearman"], "{:+.2f}")
            for row in scaled["by_lr"]
        )
        + ".",
        "",
        f"Saturation (every η within {SATURATION * 100:g} points): "
        f"{'yes' if scaled['saturated'] else 'no'}; mean Spearman over η "
        + _format(scaled["spearman"], "{:+.2f}")
        + f" (≤ 0: improves as λη falls): {'yes' if scaled['improves_as_l2_lr_falls'] else 'no'}."
        f" {_met(scaled['met'])}.",
        "",
    ]
    return lines


def plot(result: dict, points: Sequence[Point], path: str) -> None:
    """Writes a PNG of relation 1 to `path`: t* against λη on log–log axes for every replica
    (excluded runs hollow, by reason; the pooled fit and c/(λη) at the median c), and the
    analysis grid's slopes (± one standard error) with the goal shaded.

    Args:
      result: `analyse`'s result for `points`.
      points: the runs it was computed from (the same list, in the same order).
      path: the PNG file to write.
    """
    records = result["points"]
    if len(points) != len(records) or any(
        p.l2_lr != r["l2_lr"] or list(p.replica) != r["replica"]
        for p, r in zip(points, records, strict=False)
    ):
        raise ValueError(
            f"points must be the {len(records)} runs the result was computed from, in order, "
            f"got {len(points)} runs"
        )
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    replicas = [tuple(r) for r in result["replicas"]]
    markers = {None: "o", CANNOT_FIT: "s", PEAK_AT_END: "^"}
    labelled = set()
    for index, replica in enumerate(replicas):
        color = f"C{index % 10}"
        for reason, marker in markers.items():
            mine = [
                r
                for r in records
                if tuple(r["replica"]) == replica and r["excluded"] == reason and r["t_star"]
            ]
            if not mine:
                continue
            label = None
            if reason is None and len(replicas) <= 10:
                label = f"replica (draw {replica[0]}, seed {replica[1]})"
            left.scatter(
                [r["l2_lr"] for r in mine],
                [r["t_star"] for r in mine],
                marker=marker,
                s=30,
                facecolors=color if reason is None else "none",
                edgecolors=color,
                label=label,
            )
            labelled.add(reason)
    for reason in (CANNOT_FIT, PEAK_AT_END):
        if reason in labelled:
            left.scatter(
                [], [], marker=markers[reason], facecolors="none", edgecolors="k", label=reason
            )
    fit = result["fit"]
    if fit["slope"] is not None:
        x = np.geomspace(*fit["fitted_l2_lr_range"], 50)
        left.plot(x, fit["c"] * x ** fit["slope"], "k-", label=f"fit: slope {_slope_text(fit)}")
    if result["c"]["median"] is not None:
        x = np.geomspace(min(r["l2_lr"] for r in records), max(r["l2_lr"] for r in records), 50)
        left.plot(
            x,
            result["c"]["median"] / x,
            color="grey",
            linestyle=":",
            label=f"c/(λη), median c = {result['c']['median']:.3g}",
        )
    no_value = result["excluded"][NO_VALUE]
    left.set(
        xscale="log",
        yscale="log",
        xlabel="λη (η effective)",
        ylabel=f"t* (steps, on {result['selection_split']} accuracy)",
    )
    left.set_title(
        "t* against λη; hollow: excluded"
        + (f"; not drawn: {no_value} without a selection accuracy" if no_value else ""),
        fontsize=9,
    )
    left.legend(fontsize=6.5)

    grid = result["analysis_grid"]
    right.axhspan(*GOAL, color="C2", alpha=0.15, label=f"goal [{GOAL[0]:g}, {GOAL[1]:g}]")
    right.axhline(-1.0, color="C2", linewidth=0.8)
    width = len(SMOOTHINGS) * len(CLEAR_PEAK_RULES) + 1
    centres = []
    for m, margin in enumerate(FIT_MARGINS):
        centres.append(m * width + (width - 2) / 2)
        for s, smoothing in enumerate(SMOOTHINGS):
            for k, clear_peak in enumerate(CLEAR_PEAK_RULES):
                cell = next(
                    c
                    for c in grid["cells"]
                    if (c["fit_margin"], c["smoothing"], c["clear_peak"])
                    == (margin, smoothing, clear_peak)
                )
                if cell["slope"] is None:
                    continue
                primary = (margin, smoothing, clear_peak) == (FIT_MARGIN, SMOOTHING, CLEAR_PEAK)
                right.errorbar(
                    m * width + s * len(CLEAR_PEAK_RULES) + k,
                    cell["slope"],
                    yerr=cell["slope_stderr"] or 0.0,
                    color=f"C{s}",
                    marker="D" if clear_peak else "o",
                    markersize=9 if primary else 5,
                    markeredgecolor="k" if primary else f"C{s}",
                    linestyle="none",
                )
    for s, smoothing in enumerate(SMOOTHINGS):
        right.plot([], [], "o", color=f"C{s}", label=f"smoothing {smoothing:g} decades")
    right.plot([], [], "o", color="grey", label="clear peak not required")
    right.plot([], [], "D", color="grey", label="clear peak required")
    right.plot(
        [], [], "o", color="w", markeredgecolor="k", markersize=9, label="the verdict's cell"
    )
    right.set_xticks(
        centres, ["no fit rule" if m is None else f"fit margin {m:g}" for m in FIT_MARGINS]
    )
    right.set_ylabel("slope of log t* against log λη (± 1 s.e.)")
    right.set_title(
        f"Analysis grid: {grid['in_goal']} of {len(grid['cells'])} cells within the goal",
        fontsize=9,
    )
    right.legend(fontsize=6.5)
    figure.suptitle(
        f"Relation 1: t* ∝ (λη)^slope, {len(replicas)} replicas (all replicas shown)",
        fontsize=10,
    )
    save_figure(figure, path)
