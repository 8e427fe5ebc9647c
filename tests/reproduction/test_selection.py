"""Tests of the λ-selection study's runs and analysis, on a synthetic trainer (no training)."""

import json
import math

import jax
import ml_collections
import numpy as np
import pytest

from l2reg.reproduction import selection, stats
from l2reg.training import sweep
from l2reg.training.defaults import default_config
from l2reg.training.rundir import Curves

K = 0.3  # relation 3's constant of the synthetic setup: λ_opt(T) = K/(ηT)
C = 0.9  # relation 1's: the probe peaks at t* = C/(λη)
LR = 0.5


def _setup(**fields) -> selection.Setup:
    config = default_config()
    config.optimizer = "sgd"
    values = {
        "name": "synthetic",
        "role": "calibration",
        "config": config,
        "lr": LR,
        "l2s": (0.0, *np.round(10.0 ** (np.arange(-15, -4) / 3), 12).tolist()),
        "budgets": (150, 500, 1_700, 6_000),
        "probe_l2": 3e-3,
        "probe_length": 3.0,
        "autol2_l2": 3e-3,
        "small_l2": 1e-4,
        **fields,
    }
    return selection.Setup(**values)


def _accuracy(l2: float, steps: np.ndarray) -> np.ndarray:
    """Fixed λ: a bump in log λ centred on K/(ηt), below it λ = 0's 0.85."""
    if l2 == 0:
        return np.full(steps.shape, 0.85)
    return 0.95 - 0.02 * np.log(l2 * LR * steps / K) ** 2


def _curve(steps: np.ndarray, accuracy: np.ndarray, l2: np.ndarray, validation_shift: float):
    fields = {name: np.full(steps.shape, np.nan) for name in Curves._fields}
    fields.update(steps=steps, test_accuracy=accuracy, l2=l2, train_accuracy=accuracy)
    fields["validation_accuracy"] = accuracy + validation_shift
    return Curves(**fields)


def fake_train(calls: list):
    """A trainer of synthetic curves that records every call."""

    def train(name, runs, eval_at):
        calls.append((name, runs, tuple(eval_at)))
        curves = []
        for replica, run in runs:
            steps = sweep.eval_steps(run.steps, 12, eval_at).astype(float)
            shift = 0.001 * replica.seed
            if "probe" in name:  # a peak at C/(λη), falling after it
                accuracy = 0.9 - 0.1 * np.log(steps * run.l2 * LR / C) ** 2
                curves.append(_curve(steps, accuracy, np.full(steps.shape, run.l2), shift))
            elif run.l2_mode == "fixed":
                accuracy = _accuracy(run.l2, steps)
                curves.append(_curve(steps, accuracy, np.full(steps.shape, run.l2), shift))
            else:  # a schedule: 0.5 points under the envelope's 0.95
                accuracy = np.full(steps.shape, 0.945)
                curves.append(_curve(steps, accuracy, np.full(steps.shape, run.l2), shift))
        return curves

    return train


REPLICAS = stats.replicas(2, 2)


def test_study_recovers_relation_3_and_fits_the_correction_on_calibration():
    calls = []
    result, _ = selection.study(_setup(), REPLICAS, fake_train(calls))
    # The grid runs every λ for T_max, evaluated after each budget.
    name, runs, eval_at = calls[0]
    assert name == "synthetic: λ grid"
    assert eval_at == (150, 500, 1_700, 6_000) and len(runs) == 4 * 12
    rows = result["relation_3"]["budgets"]
    for row in rows:
        # λ_opt is refined between thirds of a decade: k within 5% of K at every budget.
        assert row["k"]["mean"] == pytest.approx(K, rel=0.05)
    assert result["relation_3"]["l2_opt_vs_budget_slope"] == pytest.approx(-1, abs=0.05)
    # The probe peaks at C/(λη) (to its evaluation grid), so κ = K/C.
    assert result["probe"]["c"]["mean"] == pytest.approx(C, rel=0.1)
    assert result["correction"]["fitted_here"]
    assert result["correction"]["kappa"] == pytest.approx(K / C, rel=0.12)
    # The envelope is the test accuracy of the λ best on validation: 0.95 − a rounding term.
    assert result["envelope"]["6000"]["mean"] == pytest.approx(0.95, abs=0.002)
    # Schedules sit 0.5 points below it: at the goal's edge, within float rounding.
    schedule = result["schedules"]["by_schedule"]["anytime, c"]
    assert schedule["budgets"][-1]["vs_envelope"]["mean"] == pytest.approx(-0.005, abs=0.002)
    json.dumps(result, allow_nan=False)  # JSON-ready, NaN-free
    assert "### synthetic (calibration)" in selection.section(result)


def test_predicted_and_schedule_runs_use_the_probe_c_and_kappa():
    setup = _setup()
    replicas = REPLICAS[:2]
    c, kappa = [0.8, 1.2], 0.25
    predicted = selection.predicted_runs(setup, replicas, c, kappa)
    assert [run.steps for _, run in predicted[:4]] == list(setup.budgets)
    assert predicted[0][1].l2 == pytest.approx(0.8 / (LR * 150), rel=1e-12)
    assert predicted[4][1].l2 == pytest.approx(kappa * 0.8 / (LR * 150), rel=1e-12)
    runs = selection.schedule_runs(setup, replicas, c, kappa)
    by_name = dict(
        zip(selection.SCHEDULES, [runs[i : i + 2] for i in range(0, len(runs), 2)], strict=True)
    )
    (_, clock), _ = by_name["AutoL2, t*-clock"]
    assert dict(clock.autol2)["cooldown"] == pytest.approx(0.8)
    (_, anytime), _ = by_name["anytime, κ·c"]
    assert anytime.l2_mode == "anytime" and anytime.anytime_c == pytest.approx(kappa * 0.8)
    assert anytime.l2 == setup.probe_l2 and anytime.steps == setup.num_steps
    (_, floor), _ = by_name["AutoL2, min_l2 = κ·λ_pred(T_max)"]
    assert dict(floor.autol2)["min_l2"] == pytest.approx(kappa * 0.8 / (LR * 6_000))


def test_held_out_setups_take_kappa_from_calibration_without_refitting():
    setup = _setup(name="held", role="held-out")
    with pytest.raises(ValueError, match="needs κ from the calibration setup"):
        selection.study(setup, REPLICAS, fake_train([]))
    calls = []
    result, _ = selection.study(setup, REPLICAS, fake_train(calls), kappa=0.5)
    assert result["correction"]["kappa"] == 0.5 and not result["correction"]["fitted_here"]
    assert result["correction"]["kappa_on_this_setup"] == pytest.approx(K / C, rel=0.12)
    assert not result["prediction"]["in_sample"]
    predicted = next(runs for name, runs, _ in calls if "predicted" in name)
    corrected = predicted[4][1]  # replica 0, the corrected run at the first budget
    uncorrected = predicted[0][1]
    assert corrected.l2 == pytest.approx(0.5 * uncorrected.l2, rel=1e-12)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "has space"}, "must be an identifier"),
        ({"role": "test"}, "role must be one of"),
        ({"l2s": (1e-4, 1e-3, 1e-2, 1e-1)}, "strictly increasing finite values from 0"),
        ({"budgets": (500, 150)}, "budgets must be strictly increasing"),
        ({"lr": math.inf}, "lr must be finite and > 0"),
        ({"small_l2": 2e-4}, "small_l2 must be one of the grid"),
        ({"cooldowns": (0.1, -1.0)}, "a cooldown of cooldowns must be finite and > 0"),
        ({"cooldowns": (0.1, 0.1)}, "cooldowns must differ"),
        ({"autol2_starts": (0.0,)}, "a start of autol2_starts must be finite and > 0"),
        ({"autol2_starts": (0.01, 0.01)}, "autol2_starts must differ"),
    ],
)
def test_setup_refuses_bad_fields_in_one_line(fields, message):
    with pytest.raises(ValueError, match=message) as error:
        _setup(**fields)
    assert "\n" not in str(error.value)


def test_selection_accuracy_prefers_validation():
    steps = np.array([1.0, 2.0])
    curve = _curve(steps, np.array([0.5, 0.6]), np.zeros(2), 0.1)
    values, split = selection.selection_accuracy(curve)
    assert split == "validation" and values == pytest.approx([0.6, 0.7])
    no_split = curve._replace(validation_accuracy=np.full(2, np.nan))
    assert selection.selection_accuracy(no_split)[1] == "test"


def test_setup_config_is_a_configdict():
    with pytest.raises(ValueError, match="config must be a ConfigDict"):
        _setup(config={"lr": 1})
    assert isinstance(_setup().base_config(), ml_collections.ConfigDict)


@pytest.mark.parametrize("cooldown", [0.003, 0.1, 1.0])
def test_earliest_decays_are_autol2s_when_training_never_improves(cooldown):
    # A constant loss: no check after the first is a record, so AutoL2 decays as soon as its
    # cooldown allows, which is what the earliest schedule assumes, step by step.
    import jax.numpy as jnp

    import l2reg

    l2, lr, steps = 3e-3, 0.5, 3_000
    transform = l2reg.autol2(l2, lr, cooldown=cooldown)
    params = {"w": jnp.ones(3)}
    state = transform.init(params)
    update = jax.jit(lambda s: transform.update(params, s, params, value=jnp.float32(1.0))[1])
    after = []  # λ in force after each step, as a curve records it
    for _ in range(steps):
        state = update(state)
        after.append(float(state.l2))
    earliest = selection.earliest_decays(
        l2, lr, cooldown, steps, factor=10.0, check_every=10, patience=2
    )
    assert len(earliest) >= 1  # the case is not empty
    expected = l2 / 10.0 ** np.searchsorted(earliest, np.arange(1, steps + 1), side="right")
    np.testing.assert_allclose(after, expected, rtol=1e-6)
    curve = _curve(np.arange(1.0, steps + 1), np.zeros(steps), np.float32(after), 0.0)
    assert selection.waited_for_plateaus(curve, l2, earliest, 10.0) == 0
    # One decay 5 steps late: λ is above the earliest schedule's at those 5 evaluations.
    late = np.array(after, np.float32)
    first = earliest[0]
    late[first - 1 : first + 4] = l2
    assert selection.waited_for_plateaus(curve._replace(l2=late), l2, earliest, 10.0) == 5


def test_a_cooldown_sweep_adds_one_autol2_per_cooldown_and_counts_its_decays(tmp_path):
    setup = _setup(cooldowns=(0.01, 1.0))
    c, kappa = [0.8, 1.2], 0.25
    runs = selection.schedule_runs(setup, REPLICAS[:2], c, kappa)
    names = list(selection.schedules(setup))
    assert names[-2:] == ["AutoL2, cooldown 0.01/(λη)", "AutoL2, cooldown 1/(λη)"]
    assert len(runs) == 2 * len(names)
    assert [dict(run.autol2)["cooldown"] for _, run in runs[-4:]] == [0.01, 0.01, 1.0, 1.0]
    result, curves = selection.study(setup, REPLICAS, fake_train([]))
    selection.plot(result, curves, str(tmp_path / "selection.png"))  # 7 schedules and 2 more
    assert (tmp_path / "selection.png").stat().st_size > 0
    by_schedule = result["schedules"]["by_schedule"]
    # The synthetic schedules keep their λ: no decay, where the cooldown allows several, so λ
    # is above the earliest schedule's at every evaluation after its first decay.
    swept = by_schedule["AutoL2, cooldown 0.01/(λη)"]["decays"]
    assert swept["made"] == [0] * len(REPLICAS)
    assert all(late > 0 for late in swept["late_evaluations"])
    expected = len(
        selection.earliest_decays(3e-3, LR, 0.01, 6_000, factor=10.0, check_every=10, patience=2)
    )
    assert swept["cooldown_bound"] == [expected] * len(REPLICAS) and expected >= 3
    # The floored AutoL2 and the anytime schedules have no decays to count.
    assert "decays" not in by_schedule["AutoL2, min_l2 = κ·λ_pred(T_max)"]
    assert "decays" not in by_schedule["anytime, c"]
    text = selection.section(result)
    late = ", ".join(map(str, swept["late_evaluations"]))
    assert (
        f"| AutoL2, cooldown 0.01/(λη) | 0, 0, 0, 0 | {', '.join([str(expected)] * 4)} | "
        f"{late} | 4 of 4 replicas |"
    ) in text


def test_a_start_sweep_adds_one_released_autol2_per_start_at_that_lambda_eta():
    config = default_config()
    config.optimizer, config.momentum = "momentum", 0.9  # effective η = LR/(1 − 0.9) = 10·LR
    setup = _setup(config=config, cooldowns=(1.0,), autol2_starts=(0.015, 0.15))
    runs = selection.schedule_runs(setup, REPLICAS[:2], [0.8, 1.2], 0.25)
    names = list(selection.schedules(setup))
    assert names[-3:] == [
        "AutoL2, cooldown 1/(λη)",
        "AutoL2 from λη = 0.015",
        "AutoL2 from λη = 0.15",
    ]
    started = [run for _, run in runs[-4:]]
    assert [run.l2 for run in started] == pytest.approx(
        [0.015 / (10 * LR)] * 2 + [0.15 / (10 * LR)] * 2
    )
    assert all(run.l2_mode == "autol2" and not run.autol2 and run.lr == LR for run in started)


def test_decays_made_counts_divisions_by_the_factor():
    steps = np.array([10.0, 100.0, 1000.0])
    curve = _curve(steps, np.zeros(3), np.array([3e-3, 3e-4, 3e-6], np.float32), 0.0)
    assert selection.decays_made(curve, 3e-3, 10.0) == 3
    assert selection.decays_made(curve._replace(l2=np.zeros(3)), 3e-3, 10.0) == -1


def _fallen(falls, slope):
    return {"probe": {"fall": falls}, "relation_3": {"l2_opt_vs_budget_slope": slope}}


@pytest.mark.parametrize(
    "falls, slope, expected",
    [
        (["l2", "l2", "overfitting"], -0.9, {"fall": "l2", "slope": -0.9, "held": True}),
        (["l2", "l2", None], -0.4, {"fall": "l2", "slope": -0.4, "held": False}),
        (["l2", "l2"], selection.FALL_SLOPE_BOUND, {"fall": "l2", "slope": -0.5, "held": True}),
        (["overfitting"] * 3, 0.44, {"fall": "overfitting", "slope": 0.44, "held": True}),
        (["overfitting"] * 3, -0.5, {"fall": "overfitting", "slope": -0.5, "held": False}),
        # No majority: most without a clear peak, or a tie.
        ([None, None, "l2"], -1.0, {"fall": None, "slope": -1.0, "held": None}),
        (["l2", "overfitting"], -1.0, {"fall": None, "slope": -1.0, "held": None}),
        (["l2"] * 3, None, {"fall": "l2", "slope": None, "held": None}),
    ],
)
def test_fall_prediction_takes_the_majority_fall_and_checks_the_slope(falls, slope, expected):
    assert selection.fall_prediction(_fallen(falls, slope)) == expected


def _trained(highest: float) -> Curves:
    steps = np.array([100.0, 200.0, 300.0])
    accuracy = np.array([highest - 0.1, highest, highest - 0.05])
    return _curve(steps, accuracy, np.zeros(3), 0.0)


@pytest.mark.parametrize(
    "label_noise, highest, fits",
    [
        (0.2, [0.83, 0.71], [True, True]),  # bound 1 − 0.2 − 0.1 = 0.7
        (0.2, [0.83, 0.6], [True, False]),  # the second underfits
        (0.0, [0.85, 0.95], [False, True]),  # bound 0.9 without label noise
    ],
)
def test_zero_l2_fit_applies_relation_1s_rule_a_to_the_lambda_0_runs(label_noise, highest, fits):
    setup = _setup()
    setup.config.data_options.label_noise = label_noise
    fit = selection.zero_l2_fit(setup, [_trained(h) for h in highest])
    assert fit["threshold"] == pytest.approx(1 - label_noise - 0.1)
    assert fit["highest_train_accuracy"] == pytest.approx(highest)
    assert fit["fits"] == fits


def test_a_lambda_0_run_without_training_accuracy_does_not_fit():
    curve = _trained(0.9)._replace(train_accuracy=np.full(3, np.nan))
    fit = selection.zero_l2_fit(_setup(), [curve])
    assert fit["highest_train_accuracy"] == [None] and fit["fits"] == [False]


def test_the_report_says_where_lambda_0_does_not_fit_its_training_labels():
    # The synthetic λ = 0 runs reach 0.85 training accuracy, under the bound of 0.9 (no label
    # noise): the section and the summary's note say so; with noise 0.2 (bound 0.7) they fit.
    result, _ = selection.study(_setup(), REPLICAS, fake_train([]))
    assert result["zero_l2_fit"]["fits"] == [False] * len(REPLICAS)
    assert "**λ = 0 does not fit its training labels** in 4 of 4 replicas" in (
        selection.section(result)
    )
    assert selection.unfit_note(result) == " (λ = 0 does not fit its training labels in 4 of 4)"
    noisy = _setup()
    noisy.config.data_options.label_noise = 0.2
    result, _ = selection.study(noisy, REPLICAS, fake_train([]))
    assert result["zero_l2_fit"]["fits"] == [True] * len(REPLICAS)
    assert "**λ = 0** fits its training labels in every replica" in selection.section(result)
    assert selection.unfit_note(result) == ""
