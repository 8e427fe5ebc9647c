"""l2reg.reproduction.probe: suggest_l2's algorithm, the same code as the reproduction's part 3."""

import json
import pathlib
import re

import numpy as np
import pytest

from experiments.configs import mlp_digits
from l2reg import relations, training
from l2reg.reproduction import probe, selection
from l2reg.training import Curves, sweep


def small_config():
    config = mlp_digits.get_config()
    config.model_options.widths = (32, 32)
    return config


def test_effective_lr_is_eta_over_one_minus_momentum_only_through_coupled_momentum():
    config = small_config()
    assert (config.optimizer, config.momentum, config.lr) == ("momentum", 0.9, 0.01)
    assert probe.effective_lr(config) == pytest.approx(0.1)
    config.l2_placement = "decoupled"
    assert probe.effective_lr(config) == pytest.approx(0.01)
    config.l2_placement, config.optimizer = "coupled", "sgd"
    assert probe.effective_lr(config) == pytest.approx(0.01)


def test_probe_run_is_fixed_constant_and_scaled_by_one_over_l2_lr():
    config = small_config()
    config.lr_schedule, config.l2_mode = "cosine", "autol2"
    run = probe.probe_run(config, probe_l2=0.05, probe_length=3.0, seed=7)
    assert run == sweep.Run(0.05, 0.01, 7, round(3.0 / (0.05 * 0.1)), "fixed", "constant")
    assert probe.probe_steps(0.05, 3.0, 0.1) == 600
    assert probe.probe_steps(10.0, 1e-3, 0.1) == 1  # at least one step


def test_probe_config_is_the_probe_run_coupled_and_evaluated_evals_times():
    config = small_config()
    config.lr_schedule, config.l2_mode, config.seed = "cosine", "autol2", 4
    probe_config = probe.probe_config(config, probe_l2=0.05, probe_length=3.0, evals=30)
    expected = probe.probe_run(config, 0.05, 3.0, seed=4).config(config)
    expected.eval_every, expected.checkpoint_every = 600 // 30, 600
    assert probe_config.to_dict() == expected.to_dict()
    assert (probe_config.l2_mode, probe_config.l2, probe_config.lr_schedule) == (
        "fixed",
        0.05,
        "constant",
    )
    training.validate(probe_config)
    assert (config.l2_mode, config.lr_schedule) == ("autol2", "cosine")  # left alone


def test_a_decoupled_configs_probe_is_sized_by_the_coupled_probes_effective_lr():
    config = small_config()
    config.l2_placement = "decoupled"
    probe_config = probe.probe_config(config, probe_l2=0.05, probe_length=3.0, evals=30)
    assert probe_config.l2_placement == "coupled"
    assert probe.effective_lr(probe_config) == pytest.approx(0.1)
    assert probe_config.steps == round(3.0 / (0.05 * 0.1))


@pytest.mark.parametrize(
    ("change", "probe_l2", "probe_length", "evals", "message"),
    [
        ({}, 0.1, 3.0, 5, "evals must be an integer ≥ 10, got 5"),
        ({}, -1.0, 3.0, 20, "probe_l2 must be finite and > 0, got -1.0"),
        ({}, 0.1, float("inf"), 20, "probe_length must be finite and > 0, got inf"),
        (
            {"optimizer": "adam"},
            0.1,
            3.0,
            20,
            "config.optimizer must be 'sgd' or 'momentum' (the relations hold for SGD), got 'adam'",
        ),
        (
            {},
            10.0,
            3.0,
            20,
            "probe_l2=10 times the effective learning rate η/(1−μ)=0.1 is 1 ≥ 1: each step's L2 "
            "term alone would zero or flip the weights; use probe_l2 < 10",
        ),
        (
            {},
            1e-12,
            3.0,
            20,
            "probe_l2=1e-12 with probe_length=3 gives a probe of 3e+13 steps, more than "
            "2147483647: raise probe_l2",
        ),
        (
            {},
            5.0,
            3.0,
            20,
            "probe_l2=5 with probe_length=3 gives a probe of 6 steps, fewer than its evals=20 "
            "evaluations: lower probe_l2, lengthen probe_length or lower evals",
        ),
    ],
)
def test_check_refuses_a_meaningless_probe_in_one_line(
    change, probe_l2, probe_length, evals, message
):
    config = small_config()
    config.update(change)
    with pytest.raises(ValueError, match=rf"^{re.escape(message)}\Z"):
        probe.check(config, probe_l2, probe_length, evals)


def test_check_accepts_a_probe_of_exactly_evals_steps():
    # 3/(0.3·0.1) = 100 steps: room for 100 evaluations, not 101.
    probe.check(small_config(), 0.3, 3.0, 100)
    with pytest.raises(ValueError, match="fewer than its evals=101"):
        probe.check(small_config(), 0.3, 3.0, 101)


def curve(steps, accuracy, train_accuracy=None) -> Curves:
    steps = np.asarray(steps, dtype=float)
    zeros = np.zeros_like(steps)
    train = zeros if train_accuracy is None else np.asarray(train_accuracy, float)
    return Curves(steps, zeros, train, zeros, np.asarray(accuracy, float), zeros, zeros, zeros)


def test_measure_and_suggestion_follow_relations_1_and_3():
    # A curve peaking at t* = 200 of 1000 steps and falling 0.3 after it.
    steps = np.geomspace(1, 1000, 200)
    accuracy = 0.6 + 0.3 * np.exp(-0.5 * (np.log10(steps / 200) / 0.3) ** 2)
    measured = probe.measure(curve(steps, accuracy), probe_l2=0.05, lr=0.1)
    shape = relations.peak_shape(steps, accuracy)
    assert measured["probe"] == shape._asdict()
    assert measured["clear_peak"] is True and measured["hint"] is None
    assert measured["fall"] == "l2" and measured["train_accuracy_rise"] == 0
    assert measured["probe"]["t_star"] == pytest.approx(200, rel=0.05)
    assert measured["c"] == pytest.approx(shape.t_star * 0.05 * 0.1)
    # λ_opt = c/(ηT).
    assert probe.suggestion(measured, lr=0.1, budget_steps=5000) == pytest.approx(
        measured["c"] / (0.1 * 5000)
    )


def test_no_suggestion_from_a_probe_that_falls_by_overfitting():
    steps = np.geomspace(1, 1000, 200)
    accuracy = 0.6 + 0.3 * np.exp(-0.5 * (np.log10(steps / 200) / 0.3) ** 2)
    train = 0.99 - 0.3 * np.exp(-steps / 200)  # fits its training labels ever better
    measured = probe.measure(curve(steps, accuracy, train), probe_l2=0.05, lr=0.1)
    assert measured["clear_peak"] is True and measured["fall"] == "overfitting"
    assert measured["train_accuracy_rise"] == pytest.approx(
        relations.fall_cause(steps, train, measured["probe"]["t_star"])[1]
    )
    assert 0.1 < measured["train_accuracy_rise"] < 0.3
    assert not probe.predicts(measured)
    assert probe.suggestion(measured, lr=0.1, budget_steps=5000) is None
    assert probe.calibrated(measured, 0.05, 0.1, 5000, RECORD) is None
    assert measured["hint"] == probe.overfitting_hint(measured["train_accuracy_rise"])
    assert measured["hint"].endswith("Choose λ with a grid at your budget.")
    # The same accuracy with a training accuracy that falls after t* predicts.
    falling = probe.measure(curve(steps, accuracy, 0.9 - 0.1 * steps / 1000), 0.05, 0.1)
    assert falling["fall"] == "l2" and probe.predicts(falling)


def test_a_probe_that_does_not_fit_its_training_labels_warns():
    # A clear peak whose fall is L2's, in a probe whose training accuracy tops out at 0.65:
    # with 20% label noise relation 1's rule (a) asks for 1 − 0.2 − 0.1 = 0.7.
    steps = np.geomspace(1, 1000, 200)
    accuracy = 0.6 + 0.3 * np.exp(-0.5 * (np.log10(steps / 200) / 0.3) ** 2)
    train = 0.65 - 0.1 * steps / 1000
    measured = probe.measure(curve(steps, accuracy, train), 0.05, 0.1, label_noise=0.2)
    assert measured["clear_peak"] is True and measured["fall"] == "l2"
    assert measured["highest_train_accuracy"] == pytest.approx(train.max())
    assert measured["fit_threshold"] == pytest.approx(0.7)
    assert measured["fits_training_labels"] is False
    assert measured["warning"] == probe.underfitting_warning(train.max(), 0.7)
    assert "(65.0%)" in measured["warning"] and "(70.0%:" in measured["warning"]
    # It warns, and still predicts: the calibration probe lies only a few points above.
    assert probe.predicts(measured) and measured["hint"] is None
    assert probe.suggestion(measured, lr=0.1, budget_steps=5000) == pytest.approx(
        measured["c"] / (0.1 * 5000)
    )
    # Above the bound, no warning; more label noise lowers the bound (40%: 0.5).
    fitting = probe.measure(curve(steps, accuracy, train + 0.06), 0.05, 0.1, label_noise=0.2)
    assert fitting["fits_training_labels"] is True and fitting["warning"] is None
    noisy = probe.measure(curve(steps, accuracy, train), 0.05, 0.1, label_noise=0.4)
    assert noisy["fits_training_labels"] is True and noisy["warning"] is None
    # Without label_noise the rule is not applied; without a training accuracy it cannot fit.
    assert "fits_training_labels" not in probe.measure(curve(steps, accuracy, train), 0.05, 0.1)
    nan = probe.measure(curve(steps, accuracy, np.full_like(steps, np.nan)), 0.05, 0.1, 0.0)
    assert nan["highest_train_accuracy"] is None and nan["fits_training_labels"] is False
    assert "(none)" in nan["warning"]


def test_no_suggestion_without_a_clear_peak():
    steps = np.geomspace(1, 1000, 200)
    rising = 0.1 + 0.8 * steps / 1000  # still rising at the end
    measured = probe.measure(curve(steps, rising), probe_l2=0.05, lr=0.1)
    assert measured["clear_peak"] is False
    assert probe.suggestion(measured, lr=0.1, budget_steps=5000) is None
    assert measured["hint"] == probe.no_peak_hint(relations.Peak(**measured["probe"]), 1.0)
    assert measured["hint"].endswith("Try a larger --probe_l2 or a longer --probe_length.")


def peak(t_star, peak_fraction, drop_after_peak):
    return relations.Peak(
        t_star=t_star,
        low=t_star,
        high=t_star,
        peak_accuracy=0.5,
        final_accuracy=0.5 - drop_after_peak,
        peak_fraction=peak_fraction,
        drop_after_peak=drop_after_peak,
    )


@pytest.mark.parametrize(
    ("shape", "advice"),
    [
        # Best at the first evaluation (step 5) and flat: λ too large to learn anything.
        (peak(5.0, 0.05, 0.0), "Try a smaller --probe_l2."),
        # Best at the end: still rising.
        (peak(95.0, 0.95, 0.0), "Try a larger --probe_l2 or a longer --probe_length."),
        # An early maximum with no fall after it.
        (peak(30.0, 0.3, 0.001), "Try a longer --probe_length (or a larger --probe_l2)."),
    ],
)
def test_hint_without_a_clear_peak_depends_on_where_the_curve_peaked(shape, advice):
    assert not shape.is_clear()
    hint = probe.no_peak_hint(shape, first_step=5.0)
    assert hint.endswith(advice)
    assert "\n" not in hint


def test_search_starts_large_lowers_by_three_and_stays_within_its_steps():
    # η = 0.5, probe_length 3, 60 evaluations: λη starts at 3/60 = 0.05 (60 steps), then 180,
    # 540 and 1620 steps; 2400 in all.
    l2s = probe.search_l2s(0.5, 3.0, 60, max_probe_steps=2_400)
    assert l2s == pytest.approx([0.1, 0.1 / 3, 0.1 / 9, 0.1 / 27])
    assert [probe.probe_steps(l2, 3.0, 0.5) for l2 in l2s] == [60, 180, 540, 1620]
    assert probe.search_l2s(0.5, 3.0, 60, max_probe_steps=2_399) == pytest.approx(l2s[:3])
    assert probe.search_l2s(0.5, 3.0, 60, max_probe_steps=59) == []
    # Few evaluations let the search start at λη = 0.5 itself.
    assert probe.search_l2s(1.0, 6.0, 10, max_probe_steps=12) == pytest.approx([0.5])


def test_plot_marks_t_star_only_for_a_clear_peak(tmp_path, monkeypatch):
    steps = np.arange(1.0, 101.0)
    curve = Curves(steps, *(np.linspace(0.1, 0.9, 100),) * 7)  # still rising at its end
    measured = probe.measure(curve, 0.1, 1.0)
    assert not measured["clear_peak"]
    drawn = []
    monkeypatch.setattr(
        probe.files, "save_figure", lambda figure, path: drawn.append(figure.axes[0])
    )
    probe.plot([(0.3, curve), (0.1, curve)], measured, str(tmp_path / "probe.png"))
    (axis,) = drawn
    labels = axis.get_legend_handles_labels()[1]
    assert labels == ["λ = 0.3", "λ = 0.1", "smoothed"]
    assert axis.get_title().startswith("probe λ = 0.1: no clear peak, so no t*")


RECORD = {
    "preset": "made-up",
    "kappa": 0.4,
    "kappa_range": [0.2, 0.6],
    "setups": [
        {
            "setup": "digits_mse",
            "role": "calibration",
            "budgets": [100, 1000],
            "replicas": 3,
            "prediction_loss": [0.004, -0.01],
            "schedules": {"anytime": [-0.02, None], "autol2": [0.0, 0.003]},
            "relation_3_slope": -1.1,
        }
    ],
}


def test_calibrated_suggestion_scales_relation_3_by_kappa_and_builds_the_schedules():
    measured = {"clear_peak": True, "fall": "l2", "c": 0.9}
    suggested = probe.calibrated(measured, probe_l2=3e-3, lr=0.5, budget_steps=6_000, record=RECORD)
    uncorrected = 0.9 / (0.5 * 6_000)
    assert suggested["uncorrected_l2"] == pytest.approx(uncorrected)
    assert suggested["suggested_l2"] == pytest.approx(0.4 * uncorrected)
    assert suggested["l2_range"] == pytest.approx([0.2 * uncorrected, 0.6 * uncorrected])
    anytime = suggested["schedules"]["anytime"]
    assert anytime == {"l2_mode": "anytime", "l2": 3e-3, "anytime_c": pytest.approx(0.36)}
    autol2 = suggested["schedules"]["autol2"]
    assert autol2["autol2.min_l2"] == pytest.approx(0.4 * uncorrected) and autol2["l2"] == 3e-3
    assert probe.fragment(anytime) == (
        "--config.l2_mode=anytime --config.l2=0.003 --config.anytime_c=0.36"
    )
    assert probe.calibrated({"clear_peak": False, "c": 0.9}, 3e-3, 0.5, 6_000, RECORD) is None
    overfitting = {"clear_peak": True, "fall": "overfitting", "c": 0.9}
    assert probe.calibrated(overfitting, 3e-3, 0.5, 6_000, RECORD) is None


def test_expected_cost_prints_points_lost_per_budget_for_every_setup():
    text = probe.expected_cost(RECORD, "prediction")
    assert "digits_mse (calibration, 3 replicas): T = 100: +0.4, T = 1000: -1.0" in text
    # A schedule's difference from the envelope is a gain: lost points are its negation.
    schedule = probe.expected_cost(RECORD, "anytime")
    assert "T = 100: +2.0, T = 1000: —" in schedule


def test_the_committed_calibration_is_the_record_of_the_committed_default_reproduction():
    results = pathlib.Path(__file__).parents[2] / "experiments/results/reproduce_default"
    committed = json.loads((results / "results.json").read_text())
    assert probe.calibration() == selection.calibration_record(committed)
    assert probe.calibration() == json.loads((results / "calibration.json").read_text())
