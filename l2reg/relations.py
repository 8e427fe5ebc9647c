"""The paper's empirical relations between L2, learning rate and training time.

With L2 coefficient λ (``l2``) and learning rate η (``lr``, the effective one
η/(1−μ) under momentum μ), overparameterized networks obey, over several decades:

1. the step of best test accuracy is ``t* ≈ c / (λ·η)``, with ``c`` a constant of
   the setup (model, data, batch);
2. at a fixed budget of T steps, accuracy peaks at some ``λ_opt(T)``;
3. hence ``λ_opt(T) ≈ c / (η·T)``: ``c`` measured from one cheap run at a large
   λ predicts the best λ for any budget.

Everything here works on host-side NumPy arrays of measured curves; the same
functions serve the sweeps, the reproduce report, the theory figures and the
notebooks.
"""

import reprlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from l2reg import checks

__all__ = [
    "Peak",
    "TStar",
    "TStarFit",
    "c_from",
    "effective_lr",
    "fall_cause",
    "fit_t_star",
    "l2_opt",
    "peak_shape",
    "predict_l2",
    "smooth_curve",
    "t_star",
    "t_star_from",
]


class TStar(NamedTuple):
    """Where a test-accuracy curve peaks.

    Attributes:
      step: step (SGD updates) of the maximum of the smoothed curve.
      low: first step of the contiguous interval around ``step`` where the
        smoothed curve is within the tolerance of its maximum.
      high: last step of that interval.
      peak_accuracy: the smoothed curve's maximum, in the accuracy's units.
    """

    step: float
    low: float
    high: float
    peak_accuracy: float


class TStarFit(NamedTuple):
    """A power-law fit ``t* = c · (λη)^slope`` (the paper's relation has slope −1).

    Attributes:
      c: the constant, in units of steps × (λη); ``t* = c/(λη)`` when slope = −1.
      slope: d log t* / d log(λη).
      slope_stderr: standard error of the slope (NaN with fewer than 3 points).
      used: boolean mask of the points that entered the fit.
    """

    c: float
    slope: float
    slope_stderr: float
    used: np.ndarray


def _real(name: str, value) -> np.ndarray:
    """`value` as a float64 array, checked to hold real numbers (integers or floats; not
    strings, bools, None or ragged lists); the one-line error names `name`."""
    try:
        array = np.asarray(value)
    except ValueError:  # a ragged list
        array = None
    if array is None or array.dtype.kind not in "iuf":
        shown = (
            f"a {checks.describe_array(value)}"
            if isinstance(value, np.ndarray)
            else reprlib.repr(value)
        )
        raise ValueError(f"{name} must be real numbers (a number or an array of them), got {shown}")
    return array.astype(np.float64)


def _positive(name: str, value) -> np.ndarray:
    array = _real(name, value)
    checks.first_bad_entry(name, array, ~np.isfinite(array) | (array <= 0), "be finite and > 0")
    return array


def _curve(steps, values, smoothing: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """`steps` and the curve `values` as float64 arrays, checked with `smoothing`."""
    steps = _real("steps", steps)
    values = _real(name, values)
    if steps.ndim != 1 or steps.shape != values.shape or steps.size == 0:
        raise ValueError(
            f"steps and {name} must be 1-D of the same non-zero length, "
            f"got shapes {steps.shape} and {values.shape}"
        )
    bad = ~np.isfinite(steps) | (steps < 0) | (np.diff(steps, prepend=steps[:1]) < 0)
    checks.first_bad_entry("steps", steps, bad, "be finite, ≥ 0 and non-decreasing")
    checks.number(
        "smoothing",
        smoothing,
        lambda x: np.isfinite(x) and x >= 0,
        "a finite number of decades ≥ 0",
    )
    return steps, values


def _scalar_or_array(array: np.ndarray):
    return float(array) if array.ndim == 0 else array


def effective_lr(lr, momentum: float = 0.0):
    """Effective learning rate ``lr/(1 − momentum)``, the η of every relation."""
    momentum = checks.number("momentum", momentum, lambda x: 0.0 <= x < 1.0, "a number in [0, 1)")
    return _scalar_or_array(_positive("lr", lr) / (1.0 - momentum))


def smooth_curve(steps, values, smoothing: float) -> np.ndarray:
    """Gaussian kernel smoothing of a curve in log10(1 + step).

    Args:
      steps: shape (n,), non-decreasing steps ≥ 0 (any spacing; log-spaced is typical).
      values: shape (n,), the curve; non-finite entries get no weight.
      smoothing: kernel standard deviation in decades of (1 + step); 0 returns the
        curve unchanged, except that its non-finite entries become NaN.

    Returns:
      Shape (n,): the smoothed curve (a Nadaraya–Watson average), NaN only where
      every value within reach is non-finite.
    """
    steps, values = _curve(steps, values, smoothing, "values")
    finite = np.isfinite(values)
    if smoothing == 0:
        return np.where(finite, values, np.nan)
    position = np.log10(1.0 + steps)
    weights = np.exp(-0.5 * ((position[:, None] - position[None, :]) / smoothing) ** 2)
    weights = weights * finite[None, :]
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(finite, values, 0.0)) / total


def t_star(
    steps: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    *,
    smoothing: float = 0.1,
    tolerance: float = 0.005,
) -> TStar:
    """Robust step of peak test accuracy from a noisy curve.

    Test-accuracy curves are flat near their top, so the raw argmax is noise.
    The curve is smoothed with a Gaussian of width ``smoothing`` decades in
    log10(1 + step) (see `smooth_curve`), and the answer is the smoothed argmax
    together with the contiguous interval around it where the smoothed curve is
    within ``tolerance`` of its maximum.

    Args:
      steps: shape (n,), evaluation steps, non-decreasing and ≥ 0.
      accuracy: shape (n,), test accuracy at those steps (e.g. a fraction in
        [0, 1]; ``tolerance`` is in the same units). Non-finite values are ignored.
      smoothing: kernel width in decades, ≥ 0.
      tolerance: how far below the smoothed maximum still counts as the peak, ≥ 0.

    Returns:
      A `TStar` (step, low, high, peak_accuracy).
    """
    steps, accuracy = _curve(steps, accuracy, smoothing, "accuracy")
    checks.number(
        "tolerance", tolerance, lambda x: np.isfinite(x) and x >= 0, "a finite number ≥ 0"
    )
    if not np.any(np.isfinite(accuracy)):
        raise ValueError(f"accuracy must have a finite value, got none in {accuracy.size}")

    smoothed = smooth_curve(steps, accuracy, smoothing)
    peak = int(np.nanargmax(smoothed))
    near = np.nan_to_num(smoothed, nan=-np.inf) >= smoothed[peak] - tolerance
    low = peak
    while low > 0 and near[low - 1]:
        low -= 1
    high = peak
    while high < len(steps) - 1 and near[high + 1]:
        high += 1
    return TStar(
        step=float(steps[peak]),
        low=float(steps[low]),
        high=float(steps[high]),
        peak_accuracy=float(smoothed[peak]),
    )


class Peak(NamedTuple):
    """A test-accuracy curve's peak (`t_star`) and what the run does after it.

    Attributes:
      t_star, low, high, peak_accuracy: as in `TStar` (step, interval, smoothed maximum).
      final_accuracy: the last measured accuracy (raw).
      peak_fraction: t* as a fraction of the run's last step.
      drop_after_peak: how far the smoothed curve falls below its maximum after t*, in the
        accuracy's units.
    """

    t_star: float
    low: float
    high: float
    peak_accuracy: float
    final_accuracy: float
    peak_fraction: float
    drop_after_peak: float

    def is_clear(self, *, max_fraction: float = 0.8, min_drop: float = 0.005) -> bool:
        """Whether this is a real peak rather than the end of a rising curve: before
        `max_fraction` of the run, followed by a fall of at least `min_drop` (half a point of
        accuracy by default), so that relation 1 can be read from it."""
        return self.peak_fraction < max_fraction and self.drop_after_peak >= min_drop


def peak_shape(
    steps: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    *,
    smoothing: float = 0.1,
    tolerance: float = 0.005,
) -> Peak:
    """`t_star` of a curve, where it falls in the run and how far the curve falls after it.

    Args and errors as in `t_star`; the run's last step must be > 0.
    """
    peak = t_star(steps, accuracy, smoothing=smoothing, tolerance=tolerance)
    steps = _real("steps", steps)
    if steps[-1] <= 0:
        raise ValueError(f"steps must end at a step > 0 (the run's length), got {steps[-1]!r}")
    smoothed = smooth_curve(steps, accuracy, smoothing)
    after = smoothed[steps >= peak.step]
    return Peak(
        t_star=peak.step,
        low=peak.low,
        high=peak.high,
        peak_accuracy=peak.peak_accuracy,
        final_accuracy=float(_real("accuracy", accuracy)[-1]),
        peak_fraction=peak.step / float(steps[-1]),
        drop_after_peak=float(peak.peak_accuracy - np.nanmin(after)),
    )


# The least rise of the training accuracy from t* to the run's end that makes a fall
# overfitting: the clear-peak rule's least fall, half a point of accuracy.
OVERFITTING_RISE = 0.005


def fall_cause(
    steps: Sequence[float] | np.ndarray,
    train_accuracy: Sequence[float] | np.ndarray,
    t_star_step: float,
    *,
    smoothing: float = 0.1,
    rise: float = OVERFITTING_RISE,
) -> tuple[str | None, float]:
    """Why a curve falls after its peak at `t_star_step`, read on the run's training accuracy.

    Relation 1's fall is L2 shrinking the network until it fits its training data less well:
    the training accuracy falls with the held-out one. A network that instead fits its training
    labels better while its held-out accuracy falls is overfitting them (noisy labels fitted one
    by one), a fall whose time is not set by λη and which a larger λ delays rather than hastens.

    Args:
      steps: shape (n,), the evaluation steps (as for `t_star`).
      train_accuracy: shape (n,), the training accuracy at those steps (each a mean over the
        steps since the previous evaluation); non-finite entries get no weight.
      t_star_step: the peak's step, within the steps' range.
      smoothing: the kernel in decades of (1 + step), as for `t_star`.
      rise: the least rise, in accuracy units, that makes the fall overfitting.

    Returns:
      ('overfitting' when the smoothed training accuracy rises by at least `rise` from t* to
      the run's end (its first and last finite values from t* on), 'l2' otherwise, None when
      it is nowhere finite from t* on) and that change (NaN with None).
    """
    steps, train = _curve(steps, train_accuracy, smoothing, "train_accuracy")
    checks.number(
        "t_star_step",
        t_star_step,
        lambda x: steps[0] <= x <= steps[-1],
        f"a step within the curve's [{steps[0]:g}, {steps[-1]:g}]",
    )
    checks.number("rise", rise, lambda x: np.isfinite(x) and x >= 0, "finite and ≥ 0")
    smoothed = smooth_curve(steps, train, smoothing)
    after = (steps >= t_star_step) & np.isfinite(train)
    if not after.any():
        return None, float("nan")
    change = float(smoothed[after][-1] - smoothed[after][0])
    return ("overfitting" if change >= rise else "l2"), change


def fit_t_star(l2, lr, t_star, *, used=None) -> TStarFit:
    """Least-squares fit of ``log t* = log c + slope · log(λη)``.

    Args:
      l2: shape (n,), the L2 coefficient λ of each run, > 0.
      lr: shape (n,) or scalar, the (effective) learning rate η of each run, > 0.
      t_star: shape (n,), the measured step of best accuracy of each run.
      used: optional boolean mask (not indices), shape (n,): which runs enter the fit (exclude
        runs whose λ is too large to fit the data, as the paper does). By default
        every run with a finite, positive t*.

    Returns:
      A `TStarFit`; the paper's relation t* ≈ c/(λη) is ``slope ≈ −1``.
    """
    l2 = _positive("l2", l2)
    lr = _positive("lr", lr)
    if lr.ndim != 0 and lr.shape != l2.shape:
        raise ValueError(f"lr must be a scalar or have the shape of l2 {l2.shape}, got {lr.shape}")
    lr = np.broadcast_to(lr, l2.shape)
    t_star = _real("t_star", t_star)
    if t_star.shape != l2.shape:
        raise ValueError(f"t_star must have the shape of l2 {l2.shape}, got {t_star.shape}")
    valid = np.isfinite(t_star) & (t_star > 0)
    if used is None:
        used = valid
    else:
        used = np.asarray(used)
        if used.dtype != bool or used.shape != l2.shape:
            raise ValueError(
                f"used must be a boolean mask of the shape of l2 {l2.shape}, got {used.dtype} "
                f"of shape {used.shape} (for indices, pass np.isin(np.arange(n), indices))"
            )
        if np.any(used & ~valid):
            raise ValueError(
                "used must select only runs whose t_star is finite and > 0, got runs "
                f"{reprlib.repr(np.flatnonzero(used & ~valid).tolist())} selected"
            )
    x = np.log(l2 * lr)[used]
    y = np.log(t_star)[used]
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError(
            f"l2 and lr must give at least 2 used runs with distinct λη, got {x.size} with "
            f"λη = {reprlib.repr(np.exp(x).tolist())}"
        )
    slope, intercept = np.polyfit(x, y, 1)
    if x.size > 2:
        residuals = y - (intercept + slope * x)
        variance = residuals @ residuals / (x.size - 2)
        slope_stderr = float(np.sqrt(variance / np.sum((x - x.mean()) ** 2)))
    else:
        slope_stderr = float("nan")
    return TStarFit(
        c=float(np.exp(intercept)), slope=float(slope), slope_stderr=slope_stderr, used=used
    )


def l2_opt(l2, accuracy) -> float:
    """The best λ of a grid: the highest accuracy, refined between grid points.

    A parabola in log λ through the best grid point and its two neighbours locates the
    maximum between them (the grid point itself at either end of the grid, where a
    neighbour's accuracy is not finite, or where the parabola does not open downward).

    Args:
      l2: shape (n,), increasing λ > 0 of the grid.
      accuracy: shape (n,), the accuracy each λ reached (at one budget); non-finite
        values (failed runs) are never the best, and at least one must be finite.

    Returns:
      λ_opt, within [l2[best − 1], l2[best + 1]].
    """
    l2 = _positive("l2", l2)
    accuracy = _real("accuracy", accuracy)
    if l2.ndim != 1 or accuracy.shape != l2.shape or np.any(np.diff(l2) <= 0):
        raise ValueError(
            "l2 must be increasing and 1-D with accuracy of its shape, got "
            f"{reprlib.repr(l2.tolist())} and {reprlib.repr(accuracy.tolist())}"
        )
    finite = np.isfinite(accuracy)
    if not np.any(finite):
        raise ValueError(f"accuracy must have a finite value, got none in {accuracy.size}")
    best = int(np.argmax(np.where(finite, accuracy, -np.inf)))
    if best == 0 or best == len(l2) - 1 or not np.all(finite[best - 1 : best + 2]):
        return float(l2[best])
    x = np.log(l2[best - 1 : best + 2])
    curvature, slope, _ = np.polyfit(x, accuracy[best - 1 : best + 2], 2)
    if curvature >= 0:
        return float(l2[best])
    return float(np.exp(np.clip(-slope / (2 * curvature), x[0], x[-1])))


def c_from(t_star, l2, lr):
    """The constant ``c = t*·λ·η`` of one run (relation 1 solved for c)."""
    return _scalar_or_array(_positive("t_star", t_star) * _positive("l2", l2) * _positive("lr", lr))


def t_star_from(c, l2, lr):
    """Predicted step of best accuracy ``t* = c/(λ·η)``, in steps."""
    return _scalar_or_array(_positive("c", c) / (_positive("l2", l2) * _positive("lr", lr)))


def predict_l2(c, lr, steps):
    """Predicted best L2 coefficient for a budget of ``steps`` updates: ``c/(η·T)``."""
    return _scalar_or_array(_positive("c", c) / (_positive("lr", lr) * _positive("steps", steps)))
