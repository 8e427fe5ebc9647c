"""Tests of relation 1's protocol on synthetic curves (no training)."""

import json

import numpy as np
import pytest

from l2reg.reproduction import relation1, stats
from l2reg.reproduction.stats import Replica
from l2reg.training.rundir import Curves

C = 0.5  # t* = C/(λη) in the exact grid
RUN_LENGTH = 5.0  # each run lasts RUN_LENGTH/(λη) = 10 t*
LRS = (0.1, 0.2)
MOMENTUM = 0.9
L2_LRS = (1e-4, 1e-3, 1e-2)
REPLICAS = (Replica(0, 0), Replica(0, 1), Replica(1, 0))
BASELINE = 0.5
SPACING = 0.05  # evaluations per 0.05 decade of (1 + step)


def steps_around(peak: float, last: float) -> np.ndarray:
    """Steps uniform in log10(1 + step) from step 1 to `last`, one of them exactly `peak`."""
    ks = np.arange(-400, 400)
    steps = (1.0 + peak) * 10.0 ** (ks * SPACING) - 1.0
    steps[ks == 0] = peak
    steps = steps[(steps >= 1.0) & (steps < last)]
    return np.append(steps, last)


def spike(steps: np.ndarray, peak: float) -> np.ndarray:
    """A flat curve with one higher value at `peak`: its smoothed argmax is `peak`, whatever
    the smoothing (the evaluations are evenly spaced around it)."""
    return np.where(steps == peak, 0.9, BASELINE)


def curves(steps, selection, *, validation=None, train=1.0, final_test=None) -> Curves:
    """Curves with test accuracy `selection` and optionally a validation accuracy; training
    accuracy `train` throughout; the last test accuracy `final_test` when given."""
    n = len(steps)
    test = np.array(selection, dtype=float)
    if final_test is not None:
        test[-1] = final_test
    fields = dict(
        steps=np.asarray(steps, dtype=float),
        train_loss=np.zeros(n),
        train_accuracy=np.full(n, train),
        test_loss=np.zeros(n),
        test_accuracy=test,
        l2=np.zeros(n),
        lr=np.zeros(n),
        weight_norm=np.ones(n),
    )
    validation = np.full(n, np.nan) if validation is None else np.asarray(validation, float)
    fields.update(validation_loss=np.full(n, np.nan), validation_accuracy=validation)
    return Curves(**fields)


def point(replica, lr, l2_lr, curve) -> relation1.Point:
    effective = lr / (1 - MOMENTUM)
    return relation1.Point(replica, l2_lr / effective, lr, effective, l2_lr, curve)


def exact_point(replica, lr, l2_lr, *, t_star=None, validation=False, **kwargs):
    """A run whose selection curve peaks at `t_star` (C/(λη) by default)."""
    t_star = C / l2_lr if t_star is None else t_star
    steps = steps_around(t_star, RUN_LENGTH / l2_lr)
    peaked = spike(steps, t_star)
    if validation:
        return point(
            replica,
            lr,
            l2_lr,
            curves(steps, np.full(len(steps), BASELINE), validation=peaked, **kwargs),
        )
    return point(replica, lr, l2_lr, curves(steps, peaked, **kwargs))


def exact_grid(**kwargs) -> list[relation1.Point]:
    return [exact_point(r, lr, l2_lr, **kwargs) for r in REPLICAS for lr in LRS for l2_lr in L2_LRS]


def fit_figures(result: dict) -> dict:
    """Everything the fits report (not the runs' own records or relation 2)."""
    return {key: result[key] for key in ("fit", "per_replica", "met", "analysis_grid", "c")}


def test_curves_peaking_at_c_over_l2_lr_give_slope_minus_one_in_every_cell():
    result = relation1.analyse(exact_grid(), run_length=RUN_LENGTH)
    assert result["selection_split"] == "test"
    assert result["fit"]["slope"] == pytest.approx(-1.0, abs=1e-6)
    assert result["fit"]["c"] == pytest.approx(C, rel=1e-6)
    assert result["fit"]["runs"] == len(REPLICAS) * len(LRS) * len(L2_LRS)
    assert result["met"] is True
    cells = result["analysis_grid"]["cells"]
    assert len(cells) == 24
    for cell in cells:
        assert cell["slope"] == pytest.approx(-1.0, abs=1e-6), cell
        assert cell["runs"] == result["fit"]["runs"], cell
    assert result["analysis_grid"]["share_in_goal"] == 1.0
    primary = next(
        cell
        for cell in cells
        if (cell["fit_margin"], cell["smoothing"], cell["clear_peak"])
        == (relation1.FIT_MARGIN, relation1.SMOOTHING, relation1.CLEAR_PEAK)
    )
    assert primary["slope"] == result["fit"]["slope"]
    assert all(p["excluded"] is None and p["clear_peak"] for p in result["points"])
    assert result["c"]["median"] == pytest.approx(C, rel=1e-9)
    for fit in result["per_replica"]["fits"]:
        assert fit["slope"] == pytest.approx(-1.0, abs=1e-6)


def test_a_run_peaking_at_its_last_step_is_excluded_and_enters_no_fit():
    grid = exact_grid()
    steps = steps_around(C / 3e-3, RUN_LENGTH / 3e-3)
    rising = curves(steps, np.linspace(0.5, 0.9, len(steps)))
    result = relation1.analyse([*grid, point(REPLICAS[0], LRS[0], 3e-3, rising)], run_length=5)
    record = result["points"][-1]
    assert record["excluded"] == relation1.PEAK_AT_END
    assert record["t_star"] == steps[-1]
    assert result["excluded"][relation1.PEAK_AT_END] == 1
    # Nothing a fit reports changes without it: not the verdict, not any cell of the grid
    # (those without the training-fit rule included), not c.
    assert fit_figures(result) == fit_figures(relation1.analyse(grid, run_length=RUN_LENGTH))


def test_a_run_that_cannot_fit_its_training_data_is_kept_only_without_the_fit_rule():
    # Far off the line (t* three times C/(λη)), with the training accuracy of a collapsed run.
    misfit = exact_point(REPLICAS[1], LRS[0], 3e-3, t_star=3 * C / 3e-3, train=0.5)
    result = relation1.analyse([*exact_grid(), misfit], run_length=RUN_LENGTH)
    assert result["points"][-1]["excluded"] == relation1.CANNOT_FIT
    assert result["points"][-1]["highest_train_accuracy"] == 0.5
    assert result["fit"]["slope"] == pytest.approx(-1.0, abs=1e-6)
    runs = len(REPLICAS) * len(LRS) * len(L2_LRS)
    for cell in result["analysis_grid"]["cells"]:
        if cell["fit_margin"] is None:
            assert cell["runs"] == runs + 1 and abs(cell["slope"] + 1.0) > 1e-3, cell
        else:
            assert cell["runs"] == runs and cell["slope"] == pytest.approx(-1.0, abs=1e-6), cell


def test_the_fit_rule_is_relative_to_the_clean_share_of_the_labels():
    # With 20% of the labels flipped, fitting the clean ones alone gives 0.8: a run at 0.75
    # fits (within the 0.1 margin), while the same run without label noise does not. The
    # threshold does not depend on the other runs: one memorizing run (1.0) changes nothing.
    grid = [
        exact_point(r, lr, l2_lr, train=1.0 if l2_lr == L2_LRS[0] else 0.75)
        for r in REPLICAS[:2]
        for lr in LRS
        for l2_lr in L2_LRS
    ]
    noisy = relation1.analyse(grid, run_length=RUN_LENGTH, label_noise=0.2)
    assert all(p["excluded"] is None for p in noisy["points"])
    clean = relation1.analyse(grid, run_length=RUN_LENGTH)
    assert [p["excluded"] for p in clean["points"]] == [
        None if p.l2_lr == L2_LRS[0] else relation1.CANNOT_FIT for p in grid
    ]
    with pytest.raises(ValueError, match=r"label_noise must be in \[0, 1\), got 1.5"):
        relation1.analyse(grid, run_length=RUN_LENGTH, label_noise=1.5)


def test_validation_accuracy_chooses_t_star_when_present_and_test_otherwise():
    # Validation peaks at C/(λη) (slope −1); test at the evaluation nearest 2/sqrt(λη).
    def run(replica, lr, l2_lr, validation):
        on_validation = C / l2_lr
        steps = steps_around(on_validation, RUN_LENGTH / l2_lr)
        on_test = steps[np.argmin(np.abs(np.log(1 + steps) - np.log(1 + 2 / np.sqrt(l2_lr))))]
        valid = spike(steps, on_validation) if validation else None
        return point(replica, lr, l2_lr, curves(steps, spike(steps, on_test), validation=valid))

    with_validation = [run(r, lr, x, True) for r in REPLICAS for lr in LRS for x in L2_LRS]
    result = relation1.analyse(with_validation, run_length=RUN_LENGTH)
    assert result["selection_split"] == "validation"
    assert result["fit"]["slope"] == pytest.approx(-1.0, abs=1e-6)

    without = [run(r, lr, x, False) for r in REPLICAS for lr in LRS for x in L2_LRS]
    result = relation1.analyse(without, run_length=RUN_LENGTH)
    assert result["selection_split"] == "test"
    test_peaks = [p.curve.steps[p.curve.test_accuracy.argmax()] for p in without]
    expected = np.polyfit(np.log([p.l2_lr for p in without]), np.log(test_peaks), 1)[0]
    assert result["fit"]["slope"] == pytest.approx(expected, abs=1e-6)
    assert result["fit"]["slope"] == pytest.approx(-0.5, abs=0.05)

    # One split for every run: beside runs with validation values, a run without has none.
    extra = run(REPLICAS[0], LRS[0], 3e-3, False)
    result = relation1.analyse([*with_validation, extra], run_length=RUN_LENGTH)
    assert result["selection_split"] == "validation"
    assert result["points"][-1]["excluded"] == relation1.NO_VALUE
    assert result["fit"]["slope"] == pytest.approx(-1.0, abs=1e-6)


def test_per_replica_slopes_are_summarized_with_ddof_1():
    slopes = {REPLICAS[0]: -0.9, REPLICAS[1]: -1.0, REPLICAS[2]: -1.15}
    grid = [
        exact_point(r, lr, l2_lr, t_star=C * l2_lr ** slopes[r])
        for r in REPLICAS
        for lr in LRS
        for l2_lr in L2_LRS
    ]
    result = relation1.analyse(grid, run_length=RUN_LENGTH)
    per_replica = result["per_replica"]
    fitted = [fit["slope"] for fit in per_replica["fits"]]
    assert fitted == pytest.approx([slopes[r] for r in REPLICAS], abs=1e-6)
    expected = stats.interval(fitted)
    for key in ("mean", "low", "high", "std", "n"):
        assert per_replica["slope"][key] == pytest.approx(expected[key], rel=1e-12)
    assert per_replica["slope"]["std"] == pytest.approx(np.std(fitted, ddof=1), rel=1e-12)
    # Every replica at the same λη: the pooled slope is the mean of theirs.
    assert result["fit"]["slope"] == pytest.approx(np.mean(fitted), abs=1e-9)
    low, high = result["fit"]["slope_interval"]
    assert low < result["fit"]["slope"] < high
    assert (low, high) == pytest.approx(
        stats.slope_interval(result["fit"]["slope"], result["fit"]["slope_stderr"], 18 - 2)
    )


def scaled_grid(final: dict[float, float]) -> list[relation1.Point]:
    """The exact grid read on validation, with test accuracy `final[λη]` at each run's end
    (± 0.1 points from replica to replica)."""
    l2_lrs = sorted(final)
    return [
        exact_point(
            r,
            lr,
            l2_lr,
            validation=True,
            final_test=final[l2_lr] + 0.001 * (i - 1),
        )
        for i, r in enumerate(REPLICAS)
        for lr in LRS
        for l2_lr in l2_lrs
    ]


def test_relation_2_half_saturating_as_l2_lr_falls_is_met():
    final = {1e-4: 0.900, 3e-4: 0.902, 1e-3: 0.895, 1e-2: 0.86, 1e-1: 0.70}
    result = relation1.analyse(scaled_grid(final), run_length=RUN_LENGTH)
    scaled = result["scaled_budget"]
    assert scaled["met"] is True and scaled["saturated"] and scaled["improves_as_l2_lr_falls"]
    assert scaled["saturation_gap"] == pytest.approx(0.002, abs=1e-9)
    assert scaled["spearman"] == pytest.approx(-0.9)
    row = next(r for r in scaled["rows"] if r["lr"] == LRS[1] and r["l2_lr"] == 1e-2)
    assert row["target_steps"] == pytest.approx(RUN_LENGTH / 1e-2)
    assert row["steps"] == [pytest.approx(RUN_LENGTH / 1e-2)]
    expected = stats.interval([0.86 - 0.001, 0.86, 0.86 + 0.001])
    for key in ("mean", "low", "high", "std"):
        assert row["test_accuracy"][key] == pytest.approx(expected[key], rel=1e-9)


def test_relation_2_half_missed_when_accuracy_rises_with_l2_lr():
    final = {1e-4: 0.80, 1e-3: 0.85, 1e-2: 0.88, 1e-1: 0.90}
    scaled = relation1.analyse(scaled_grid(final), run_length=RUN_LENGTH)["scaled_budget"]
    assert scaled["met"] is False
    assert scaled["spearman"] == pytest.approx(1.0)
    assert scaled["saturation_gap"] == pytest.approx(0.10)


def test_result_is_strict_json_and_the_report_marks_the_goals(tmp_path):
    steps = steps_around(C / 3e-3, RUN_LENGTH / 3e-3)
    no_value = point(REPLICAS[0], LRS[0], 3e-3, curves(steps, np.full(len(steps), np.nan)))
    rising = point(REPLICAS[1], LRS[0], 3e-3, curves(steps, np.linspace(0.5, 0.9, len(steps))))
    misfit = exact_point(REPLICAS[2], LRS[0], 3e-3, t_star=3 * C / 3e-3, train=0.5)
    points = [*exact_grid(), no_value, rising, misfit]
    result = relation1.analyse(points, run_length=RUN_LENGTH)
    assert result["points"][-3]["excluded"] == relation1.NO_VALUE
    assert result["points"][-3]["t_star"] is None
    json.dumps(result, allow_nan=False)
    text = relation1.section(result)
    assert text.startswith(relation1.RULES)
    assert "Pooled slope -1.00" in text and "**met**" in text
    assert relation1.RULES not in relation1.section(result, rules=False)
    assert relation1.headline(result).startswith("slope -1.00")
    path = tmp_path / "t_star.png"
    relation1.plot(result, points, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="the 21 runs the result was computed from"):
        relation1.plot(result, points[:-1], str(path))


def test_two_runs_per_replica_leave_per_replica_errors_undefined_not_nan():
    points = [exact_point(r, LRS[0], x) for r in REPLICAS for x in L2_LRS[:2]]
    result = relation1.analyse(points, run_length=RUN_LENGTH)
    assert all(fit["slope_stderr"] is None for fit in result["per_replica"]["fits"])
    assert all(fit["slope_interval"] is None for fit in result["per_replica"]["fits"])
    json.dumps(result, allow_nan=False)


def test_malformed_points_are_refused_before_any_work():
    grid = exact_grid()
    with pytest.raises(ValueError, match="non-empty list"):
        relation1.analyse([], run_length=RUN_LENGTH)
    with pytest.raises(ValueError, match="run_length must be finite and > 0"):
        relation1.analyse(grid, run_length=0)
    # SGD η passed as the effective one.
    wrong = grid[0]._replace(effective_lr=grid[0].lr)
    with pytest.raises(ValueError, match=r"points\[0\]: l2 × effective_lr"):
        relation1.analyse([wrong, *grid[1:]], run_length=RUN_LENGTH)
    with pytest.raises(ValueError, match=r"points\[0\] and points\[18\] are the same run"):
        relation1.analyse([*grid, grid[0]], run_length=RUN_LENGTH)
    with pytest.raises(ValueError, match=r"points\[1\] must be a relation1.Point"):
        relation1.analyse([grid[0], tuple(grid[1])], run_length=RUN_LENGTH)
