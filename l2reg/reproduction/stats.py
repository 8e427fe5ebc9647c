"""Means with 95% intervals over replicas, and paired comparisons, for the reproduction's report.

A replica is one (data draw, seed) pair: a data draw fixes which training labels are flipped
and which examples form the validation split; a seed fixes the initialization and the batch
order. Every figure the report compares is a mean over replicas with a Student-t interval
(standard deviation with ddof = 1); two methods run on the same replicas are compared by their
paired differences, whose interval and two-sided t-test p-value say whether the difference is
more than replica noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95


class Replica(NamedTuple):
    """One repetition of a configuration: the data draw (label noise and validation split)
    and the seed (initialization and batch order)."""

    draw: int
    seed: int


def replicas(draws: int, seeds: int) -> list[Replica]:
    """Every (draw, seed) pair, draws outermost: draw d uses data seed d, seed s seed s."""
    return [Replica(draw, seed) for draw in range(draws) for seed in range(seeds)]


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The mean of `values` with its Student-t interval; non-finite entries (e.g. a run that
    never reached a target) are left out and counted.

    Returns:
      {'mean', 'low', 'high', 'std' (ddof = 1), 'n' (finite values), 'missing', 'values'}:
      mean/low/high are None without a finite value, low/high (and std) also with only one.
    """
    values = np.asarray(values, dtype=float).reshape(-1)
    finite = values[np.isfinite(values)]
    n = int(finite.size)
    mean = float(finite.mean()) if n else None
    if n >= 2:
        std = float(finite.std(ddof=1))
        half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
        low, high = mean - half, mean + half
    else:
        std = low = high = None
    return {
        "mean": mean,
        "low": low,
        "high": high,
        "std": std,
        "n": n,
        "missing": int(values.size - n),
        "values": [float(v) if np.isfinite(v) else None for v in values],
    }


def paired(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> dict:
    """The paired difference a − b over replicas (entry i of each from replica i): its mean,
    interval (`interval`) and the two-sided one-sample t-test p-value of a zero mean (None
    with fewer than two finite pairs, or when every difference is equal)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D of one shape, got {a.shape} and {b.shape}")
    difference = a - b
    result = interval(difference, confidence)
    finite = difference[np.isfinite(difference)]
    p_value = None
    if finite.size >= 2 and np.ptp(finite) > 0:
        p_value = float(scipy_stats.ttest_1samp(finite, 0.0).pvalue)
    return {**result, "p_value": p_value}


def slope_interval(slope: float, stderr: float, dof: int, confidence: float = CONFIDENCE):
    """(low, high) of a least-squares slope from its standard error with `dof` degrees of
    freedom; None where the error is undefined (two points: no degree of freedom)."""
    if dof < 1 or stderr is None or not math.isfinite(stderr):
        return None
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, dof) * stderr)
    return slope - half, slope + half


def text(summary: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    """'mean [low, high]' of an `interval`/`paired` result, each times `scale` (e.g. 100 for
    points of accuracy); '—' where undefined."""
    if not summary or summary.get("mean") is None:
        return "—"
    mean = f"{summary['mean'] * scale:.{digits}f}"
    if summary.get("low") is None:
        return f"{mean} (n = {summary['n']})"
    return f"{mean} [{summary['low'] * scale:.{digits}f}, {summary['high'] * scale:.{digits}f}]"


def without_nan(value: Any) -> Any:
    """`value` with every non-finite float, however deeply nested, replaced by None (JSON has
    no NaN or infinity: strict parsers reject them)."""
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
