"""Tests for l2reg.relations: t*, its power-law fit, and the λ_opt prediction."""

import re

import numpy as np
import pytest
from scipy import stats

from l2reg import relations


def synthetic_curve(t_peak, steps, rng, noise=0.003):
    """A test-accuracy curve that rises, peaks at t_peak and declines, with noise.

    In log-time it is a bump of width ~0.5 decades around log10(t_peak), so its top
    is flat-ish like real curves and its raw argmax wanders with the noise.
    """
    distance = np.log10(1 + steps) - np.log10(1 + t_peak)
    clean = 0.9 - 0.3 * distance**2
    return clean + noise * rng.standard_normal(steps.shape)


def test_t_star_recovers_known_peak_from_noisy_curve():
    rng = np.random.default_rng(0)
    steps = np.unique(np.geomspace(1, 1e6, 400).astype(int))
    for t_peak in [300, 5_000, 80_000]:
        estimate = relations.t_star(steps, synthetic_curve(t_peak, steps, rng), smoothing=0.1)
        assert abs(np.log10(estimate.step / t_peak)) < 0.08, (t_peak, estimate)
        assert estimate.low <= estimate.step <= estimate.high
        # Within 0.005 of a max of 0.3·d² below the top: |d| ≲ 0.13 decades each side.
        assert 0.1 < np.log10(estimate.high / estimate.low) < 0.4, estimate
        assert estimate.peak_accuracy == pytest.approx(0.9, abs=0.005)


def test_t_star_smoothing_beats_raw_argmax():
    rng = np.random.default_rng(1)
    steps = np.unique(np.geomspace(1, 1e6, 400).astype(int))
    raw_errors, smooth_errors = [], []
    for _ in range(20):
        curve = synthetic_curve(5_000, steps, rng, noise=0.01)
        raw_errors.append(abs(np.log10(steps[np.argmax(curve)] / 5_000)))
        smooth_errors.append(abs(np.log10(relations.t_star(steps, curve).step / 5_000)))
    assert np.mean(smooth_errors) < 0.5 * np.mean(raw_errors)


def test_t_star_interval_is_contiguous_and_unsmoothed_nan_ends_it():
    steps = np.array([0, 1, 2, 3, 4, 5, 6], dtype=float)
    accuracy = np.array([0.1, 0.5, 0.9, np.nan, 0.895, 0.5, 0.9])
    estimate = relations.t_star(steps, accuracy, smoothing=0.0, tolerance=0.01)
    # Without smoothing the NaN at step 3 stays NaN, is never the peak, and ends the
    # interval, so 0.895 at step 4 is left out; the late 0.9 at step 6 is not connected.
    assert estimate == relations.TStar(step=2.0, low=2.0, high=2.0, peak_accuracy=0.9)


def test_t_star_tolerance_sets_the_interval():
    steps = np.arange(7.0)
    accuracy = np.array([0.1, 0.5, 0.88, 0.9, 0.88, 0.5, 0.1])
    narrow = relations.t_star(steps, accuracy, smoothing=0.0, tolerance=0.01)
    wide = relations.t_star(steps, accuracy, smoothing=0.0, tolerance=0.05)
    assert (narrow.low, narrow.high) == (3.0, 3.0)
    assert (wide.low, wide.high) == (2.0, 4.0)


def test_t_star_without_smoothing_ignores_infinite_accuracy():
    # Documented: non-finite values are ignored, +inf as much as NaN.
    estimate = relations.t_star([1, 10, 100, 1000], [0.5, np.inf, 0.8, 0.7], smoothing=0.0)
    assert estimate == relations.TStar(step=100.0, low=100.0, high=100.0, peak_accuracy=0.8)


def test_smooth_curve_gives_nan_entries_no_weight():
    # Positions log10(1 + step) = 0, 1, 2, 3 and a kernel of 1 decade: weights exp(−d²/2).
    steps = np.array([0.0, 9.0, 99.0, 999.0])
    values = np.array([0.2, np.nan, 0.8, np.nan])
    near, far = np.exp(-0.5), np.exp(-2.0)  # d = 1 and d = 2
    expected = [
        (0.2 + far * 0.8) / (1 + far),  # d = 0 to 0.2, d = 2 to 0.8
        (near * 0.2 + near * 0.8) / (2 * near),  # the NaN's own slot: both at d = 1
        (far * 0.2 + 0.8) / (far + 1),
        (np.exp(-4.5) * 0.2 + near * 0.8) / (np.exp(-4.5) + near),  # d = 3 and d = 1
    ]
    np.testing.assert_allclose(relations.smooth_curve(steps, values, 1.0), expected, rtol=1e-12)
    assert np.isnan(relations.smooth_curve(steps, np.full(4, np.nan), 1.0)).all()


def test_t_star_at_default_smoothing_ignores_nan():
    steps = np.unique(np.geomspace(1, 1e5, 120).round())
    clean = 0.9 - 0.3 * (np.log10(1 + steps) - np.log10(1 + 1_000)) ** 2
    # NaN evaluations (e.g. lost evals) on the rise and one inside the plateau around the
    # peak, but neither at the smoothed peak nor at the plateau's ends.
    missing = np.zeros(steps.shape, bool)
    missing[[10, 11, 30, 55]] = True
    # Documented: non-finite values get no weight, i.e. the answer of the curve without them.
    expected = relations.t_star(steps[~missing], clean[~missing])
    assert expected.low < steps[55] < expected.step
    assert abs(np.log10((1 + expected.step) / (1 + 1_000))) < 0.05
    estimate = relations.t_star(steps, np.where(missing, np.nan, clean))
    # The same grid steps; the smoothed maximum up to rounding (the weighted sums run over
    # other terms, so their order, hence the last bit, may differ between machines).
    assert (estimate.step, estimate.low, estimate.high) == (
        expected.step,
        expected.low,
        expected.high,
    )
    np.testing.assert_allclose(estimate.peak_accuracy, expected.peak_accuracy, rtol=1e-12)


def test_smooth_curve_leaves_a_constant_unchanged():
    steps = np.geomspace(1, 1000, 50)
    np.testing.assert_allclose(relations.smooth_curve(steps, np.full(50, 0.7), 0.3), 0.7)


def test_peak_shape_tells_a_peak_from_a_rising_curve():
    rng = np.random.default_rng(0)
    steps = np.unique(np.geomspace(1, 10_000, 60).round())
    peaked = relations.peak_shape(steps, synthetic_curve(300, steps, rng))
    assert 200 <= peaked.t_star <= 450 and peaked.is_clear()
    assert peaked.peak_fraction == peaked.t_star / 10_000
    # The bump falls 0.3·(log10 10001 − log10 301)² ≈ 0.70 after its peak; smoothing takes a
    # little off.
    assert 0.6 <= peaked.drop_after_peak <= 0.72
    rising = relations.peak_shape(steps, 0.9 - 0.5 / (1 + steps / 100))
    assert rising.t_star == 10_000 and rising.drop_after_peak == 0 and not rising.is_clear()
    # A peak whose fall is within the noise of a few test examples is not clear either.
    flat = relations.peak_shape(steps, 0.9 - 0.001 * (np.log10(steps) - 2) ** 2)
    assert flat.peak_fraction < 0.8 and not flat.is_clear()
    assert flat.is_clear(min_drop=0.001)


def test_fall_cause_tells_l2_shrinking_the_fit_from_overfitting():
    steps = np.unique(np.geomspace(1, 2000, 60).round())
    # L2's fall (the calibration probe's shape): the training accuracy falls after t* with the
    # held-out one; overfitting (the cross-entropy probe's): it climbs towards fitting every
    # noisy label.
    peak = steps[steps >= 500][0]
    shrinking = np.where(
        steps < peak, 0.74 * steps / (steps + 50), 0.74 - 0.1 * (steps - peak) / 1500
    )
    cause, change = relations.fall_cause(steps, shrinking, peak)
    smoothed = relations.smooth_curve(steps, shrinking, 0.1)
    assert cause == "l2" and change == pytest.approx(smoothed[-1] - smoothed[steps == peak][0])
    assert change < -0.03
    fitting = 0.99 - 0.2 * np.exp(-steps / 300)
    cause, change = relations.fall_cause(steps, fitting, 56.0)
    assert cause == "overfitting" and 0.15 < change < 0.2
    # The threshold: a rise of less than half a point is not overfitting.
    flat = np.full(steps.shape, 0.8)
    flat[steps > 500] += 0.004
    assert relations.fall_cause(steps, flat, 300.0)[0] == "l2"
    assert relations.fall_cause(steps, flat, 300.0, rise=0.003)[0] == "overfitting"
    # No finite training accuracy after t*: no cause.
    missing = np.where(steps >= 300, np.nan, 0.5)
    cause, change = relations.fall_cause(steps, missing, 300.0)
    assert cause is None and np.isnan(change)


@pytest.mark.parametrize(
    "t_star, rise, message",
    [
        (3000.0, 0.005, "t_star_step must be a step within the curve's [1, 2000], got 3000.0"),
        (500.0, -0.1, "rise must be finite and ≥ 0, got -0.1"),
    ],
)
def test_fall_cause_rejects_a_peak_outside_the_curve_and_a_negative_rise(t_star, rise, message):
    steps = np.unique(np.geomspace(1, 2000, 60).round())
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        relations.fall_cause(steps, np.full(steps.shape, 0.5), t_star, rise=rise)


def test_fit_t_star_recovers_c_and_slope():
    rng = np.random.default_rng(2)
    l2 = np.repeat(np.geomspace(1e-5, 1e-2, 7), 3)
    lr = np.tile([0.05, 0.1, 0.2], 7)
    t_star = 0.5 * (l2 * lr) ** -1.0 * np.exp(0.05 * rng.standard_normal(l2.shape))
    fit = relations.fit_t_star(l2, lr, t_star)
    assert fit.slope == pytest.approx(-1.0, abs=3 * fit.slope_stderr + 1e-3)
    assert 0.003 < fit.slope_stderr < 0.05
    reference = stats.linregress(np.log(l2 * lr), np.log(t_star))
    assert fit.slope == pytest.approx(reference.slope, rel=1e-9)
    assert fit.slope_stderr == pytest.approx(reference.stderr, rel=1e-9)
    assert fit.c == pytest.approx(0.5, rel=0.1)
    assert fit.used.all()


def test_fit_t_star_respects_used_and_skips_missing_peaks():
    l2 = np.array([1e-4, 1e-3, 1e-2, 1e-1])
    t_star = np.array([1e4, 1e3, 1e2, np.nan])
    fit = relations.fit_t_star(l2, 1.0, t_star)
    assert fit.used.tolist() == [True, True, True, False]
    assert fit.slope == pytest.approx(-1.0)
    assert fit.c == pytest.approx(1.0)
    partial = relations.fit_t_star(l2, 1.0, t_star, used=[True, True, False, False])
    assert np.isnan(partial.slope_stderr)


def test_l2_opt_refines_between_grid_points():
    l2 = np.geomspace(1e-5, 1e-1, 5)
    accuracy = 0.9 - 0.01 * (np.log10(l2) - np.log10(3e-3)) ** 2  # peak at λ = 3e-3
    assert relations.l2_opt(l2, accuracy) == pytest.approx(3e-3, rel=1e-6)
    assert relations.l2_opt(l2, -accuracy) == l2[0]  # best at the grid's end: no refinement
    edge = np.array([0.1, 0.5, 0.5, 0.4, 0.2])  # flat top: the parabola stays in its bracket
    assert l2[1] <= relations.l2_opt(l2, edge) <= l2[3]


def test_l2_opt_ignores_non_finite_accuracies():
    l2 = np.geomspace(1e-5, 1e-1, 5)
    accuracy = 0.9 - 0.01 * (np.log10(l2) - np.log10(3e-3)) ** 2  # best grid point: l2[3]
    # A failed run next to the best point leaves no parabola to fit: the grid point itself.
    assert relations.l2_opt(l2, np.where(np.arange(5) == 2, np.nan, accuracy)) == l2[3]
    # An infinite accuracy is not the best.
    diverged = np.where(np.arange(5) == 0, np.inf, accuracy)
    assert relations.l2_opt(l2, diverged) == pytest.approx(3e-3, rel=1e-6)


def test_prediction_round_trip():
    c = relations.c_from(t_star=200.0, l2=1e-2, lr=0.5)
    assert c == pytest.approx(1.0)
    assert relations.t_star_from(c, 1e-2, 0.5) == pytest.approx(200.0)
    assert relations.predict_l2(c, lr=0.5, steps=200.0) == pytest.approx(1e-2)
    assert relations.effective_lr(0.1, momentum=0.9) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: relations.t_star([1, 2], [0.5]), "same non-zero length"),
        (lambda: relations.t_star([2, 1], [0.5, 0.6]), "non-decreasing"),
        (
            lambda: relations.t_star([1, 2], [np.nan, np.nan]),
            "accuracy must have a finite value, got none in 2$",
        ),
        (lambda: relations.t_star([1, 2], [0.1, 0.2], smoothing=-1), "smoothing"),
        (lambda: relations.t_star([1, 2], [0.1, 0.2], tolerance=-1), "tolerance"),
        # Arguments that are not real numbers are named too (a bool is not a number).
        (lambda: relations.t_star([1, 2], [0.1, 0.2], tolerance="0.1"), "tolerance must be"),
        (lambda: relations.t_star([1, 2], [0.1, 0.2], tolerance=None), "tolerance must be"),
        (lambda: relations.t_star([1, 2], [0.1, 0.2], tolerance=True), "tolerance must be"),
        (
            lambda: relations.t_star([1, 2], [0.1, 0.2], tolerance=np.full(20, 0.1)),
            r"tolerance must be .*, got a float64\[20\] array$",
        ),
        (lambda: relations.t_star([1, 2], [0.1, 0.2], smoothing=True), "smoothing must be"),
        (lambda: relations.t_star([1, 2], [0.1, 0.2], smoothing=None), "smoothing must be"),
        (lambda: relations.effective_lr(0.1, momentum=None), "momentum must be"),
        (lambda: relations.effective_lr(0.1, momentum="0.9"), "momentum must be"),
        (lambda: relations.effective_lr(0.1, momentum=np.array([0.9, 0.5])), "momentum must be"),
        (
            lambda: relations.fit_t_star([1e-3, 1e-2], [0.1, 0.2, 0.3], [10, 1]),
            r"lr must be a scalar or have the shape of l2 \(2,\), got \(3,\)",
        ),
        (lambda: relations.l2_opt([1e-3, 1e-2], [np.nan, np.inf]), "accuracy must have a finite"),
        (lambda: relations.peak_shape([0, 0], [0.1, 0.2]), "steps must end at a step > 0"),
        (lambda: relations.fit_t_star([1e-3, -1e-3], 1.0, [1, 2]), "l2 must be"),
        (
            lambda: relations.fit_t_star([1e-3, 1e-3], 1.0, [1, 2]),
            "l2 and lr must give at least 2 used runs",
        ),
        (lambda: relations.fit_t_star([1e-3, 1e-2], 1.0, [1, 2, 3]), "shape of l2"),
        (lambda: relations.predict_l2(1.0, 0.0, 100), "lr must be"),
        (lambda: relations.l2_opt([1e-3, 1e-4], [0.5, 0.6]), "increasing"),
        (lambda: relations.effective_lr(0.1, momentum=1.0), "momentum"),
        (lambda: relations.smooth_curve([1, 2], [0.1], 0.1), "steps and values must be 1-D"),
        (lambda: relations.smooth_curve([-1, 2], [0.1, 0.2], 0.1), r"got -1.0 at index \(0,\)$"),
        (lambda: relations.smooth_curve([1, 2], [0.1, 0.2], -0.1), "smoothing must be"),
        (lambda: relations.smooth_curve([1, 2], [0.1, 0.2], np.nan), "smoothing must be"),
        (lambda: relations.smooth_curve([1, 2], [0.1, 0.2], "0.1"), "smoothing must be"),
        (
            lambda: relations.t_star(np.arange(200.0)[::-1], np.ones(200)),
            r"got 198.0 at index \(1,\)$",
        ),
        (
            lambda: relations.fit_t_star(np.geomspace(1e-4, 1e-2, 300), 0.0, np.ones(300)),
            "lr must be finite and > 0, got 0.0$",
        ),
        (
            lambda: relations.fit_t_star([1e-3, 1e-2], 1.0, [10, 1], used=[0, 1]),
            "used must be a boolean mask",
        ),
        (
            lambda: relations.fit_t_star([1e-3, 1e-2, 0.1], 1.0, [10, 1, np.nan], used=[1, 1, 1]),
            "used must be a boolean mask",
        ),
        (
            lambda: relations.fit_t_star(
                [1e-3, 1e-2, 0.1], 1.0, [10, 1, np.nan], used=np.ones(3, bool)
            ),
            r"used must select only runs whose t_star is finite and > 0, got runs \[2\] selected$",
        ),
        (lambda: relations.l2_opt(np.geomspace(1, 1e-3, 300), np.ones(300)), "increasing"),
    ],
)
def test_invalid_arguments_raise_one_line_errors(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


SERIES = [1e-3, 1e-2]  # a valid argument wherever an array of positive numbers is expected


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda bad: relations.t_star(bad, [0.1, 0.2]), "steps"),
        (lambda bad: relations.t_star([1, 2], bad), "accuracy"),
        (lambda bad: relations.peak_shape(bad, [0.1, 0.2]), "steps"),
        (lambda bad: relations.peak_shape([1, 2], bad), "accuracy"),
        (lambda bad: relations.smooth_curve(bad, [0.1, 0.2], 0.1), "steps"),
        (lambda bad: relations.smooth_curve([1, 2], bad, 0.1), "values"),
        (lambda bad: relations.fit_t_star(bad, 1.0, [10, 1]), "l2"),
        (lambda bad: relations.fit_t_star(SERIES, bad, [10, 1]), "lr"),
        (lambda bad: relations.fit_t_star(SERIES, 1.0, bad), "t_star"),
        (lambda bad: relations.l2_opt(bad, [0.1, 0.2]), "l2"),
        (lambda bad: relations.l2_opt(SERIES, bad), "accuracy"),
        (lambda bad: relations.effective_lr(bad), "lr"),
        (lambda bad: relations.c_from(bad, 1e-3, 0.1), "t_star"),
        (lambda bad: relations.c_from(100, bad, 0.1), "l2"),
        (lambda bad: relations.c_from(100, 1e-3, bad), "lr"),
        (lambda bad: relations.t_star_from(bad, 1e-3, 0.1), "c"),
        (lambda bad: relations.predict_l2(bad, 0.1, 100), "c"),
        (lambda bad: relations.predict_l2(1.0, 0.1, bad), "steps"),
    ],
)
@pytest.mark.parametrize("bad", ["abc", [1, "x"], None, [True, False], [[1, 2], [3]]])
def test_arguments_that_are_not_numbers_are_named(call, name, bad):
    with pytest.raises(ValueError, match=f"^{name} must be real numbers .*, got ") as error:
        call(bad)
    assert "\n" not in str(error.value)
