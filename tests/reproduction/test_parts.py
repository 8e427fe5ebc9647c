"""The reproduction's analysis on curves with known answers, through a runner that trains nothing.

In the model world of `WorldRunner`, a run with a fixed λ > 0 peaks at exactly t* = C/(λη)
(accuracy 0.6 + 0.3·exp(−½(log10(λη·t/C)/0.5)²)), λ = 0 creeps up to 0.8, and AutoL2 with a
constant learning rate reaches 95% along 0.95·(1 − exp(−t/100)), its λ falling a hundredfold
(not below `min_l2`) after step 1000, while the step schedule never gets far. Every figure of
the parts and every goal of the report then has a value worked out by hand below.
"""

import dataclasses
import json
import os
import re

import numpy as np
import pytest

from l2reg import relations, reproduction, training
from l2reg.reproduction import L2Grid, Preset, TStarGrid, parts
from l2reg.training import sweep
from l2reg.training.rundir import Curves

C = 5.0  # the world's t*·λ·η: every t* ≥ 50 steps, where steps and 1 + step agree
LR = 0.5


def run_config():
    """The grids' trainer config: plain SGD (the runners here train nothing)."""
    config = training.default_config()
    config.optimizer = "sgd"
    return config


def make_curves(steps, accuracy, l2) -> Curves:
    """Curves of a world run: its test accuracy and λ at `steps` (the rest filler)."""
    ones = np.ones_like(steps, dtype=float)
    return Curves(steps, 1 - accuracy, accuracy, 1 - accuracy, accuracy, l2 * ones, ones, ones)


def reproduce_with(runner, workdir, settings, **kwargs):
    """`reproduction.reproduce` with every part trained by `runner`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Preset, "runner", lambda self, part, workdir, name: runner)
        return reproduction.reproduce(workdir, settings, **kwargs)


def world_curve(config: sweep.Run, eval_at=()) -> Curves:
    # Evenly spaced in log step, like the sweeps' evaluations but without rounding to whole
    # steps, so that the estimator's smoothing sees no change of density; and, like a sweep,
    # at the steps of `eval_at` that the run reaches.
    extra = np.asarray(eval_at, dtype=float)
    steps = np.union1d(np.geomspace(1, config.steps, 400), extra[extra <= config.steps])
    l2 = np.full_like(steps, config.l2)
    if config.l2_mode == "autol2":
        tau = 100.0 if config.lr_schedule in (None, "constant") else 1e6
        accuracy = 0.95 * (1 - np.exp(-steps / tau))
        l2[steps > 1000] = max(config.l2 / 100, dict(config.autol2).get("min_l2", 0.0))
    elif config.l2 == 0:
        accuracy = 0.6 + 0.2 * (1 - np.exp(-steps / 200))
    else:
        distance = np.log10(config.l2 * config.lr * steps / C) / 0.5
        accuracy = 0.6 + 0.3 * np.exp(-0.5 * distance**2)
    return make_curves(steps, accuracy, l2)


class WorldRunner:
    label = "the model world"
    momentum = 0.0

    def __init__(self):
        self.calls = []

    def __call__(self, name, configs, eval_at=()):
        self.calls.append((name, list(configs)))
        return [world_curve(config, eval_at) for config in configs]


SETTINGS = Preset(
    t_star=TStarGrid(
        config=run_config(),
        lrs=(0.5, 1.0, 2.0),
        l2_lrs=tuple(np.geomspace(1e-3, 1e-1, 5).tolist()),
        run_length=6 * C,  # peaks at a sixth of each run
    ),
    l2=L2Grid(
        config=run_config(),
        lrs=(LR,),
        l2s=(0.0, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
        num_steps=4000,
        budgets=(1000, 4000),
        scaled_length=C,  # read every run at its own t*
        probe_l2=0.2,  # t* = C/(0.2·0.5) = 50 steps of a 300-step probe
        probe_length=6 * C,
        autol2_l2=0.1,
    ),
    seeds=2,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("world"))
    runner = WorldRunner()
    results = reproduce_with(runner, workdir, SETTINGS, name="world", seeds=range(2))
    return workdir, results, runner


def world_accuracy(l2: float, steps: float) -> float:
    return 0.6 + 0.3 * np.exp(-0.5 * (np.log10(l2 * LR * steps / C) / 0.5) ** 2)


def test_part_one_recovers_the_worlds_power_law(world):
    _, results, runner = world
    fit = results["t_star_fit"]
    # Runs of 6C/(λη) steps peaking at C/(λη): at a sixth of each run, none collapsed.
    assert len(fit["points"]) == 2 * 3 * 5
    for point in fit["points"]:
        assert point["num_steps"] == round(6 * C / (point["l2"] * point["lr"]))
        assert point["t_star"] == pytest.approx(C / (point["l2"] * point["lr"]), rel=0.03)
        assert point["peak_fraction"] == pytest.approx(1 / 6, rel=0.05)
        assert point["used"]
    assert fit["slope"] == pytest.approx(-1.0, abs=0.02)
    assert fit["c"] == pytest.approx(C, rel=0.05)
    assert fit["per_seed_slope"]["values"] == [pytest.approx(fit["slope"])] * 2
    assert fit["clear_peak_fit"]["runs"] == 30
    assert fit["peaks_in_first_half"] == 30
    assert fit["l2_lr_decades"] == pytest.approx(2.0)
    assert fit["met"]
    assert runner.calls[0][0] == "t_star"


def test_part_two_finds_the_best_l2_at_each_budget(world):
    _, results, _ = world
    rows = {row["budget_steps"]: row for row in results["accuracy_vs_l2"]["fixed_budget"]}
    # λ_opt(T) = C/(ηT): 1e-2 at T = 1000 (on the grid), 2.5e-3 at T = 4000 (nearest 3e-3).
    assert rows[1000]["best_l2"] == 1e-2 and rows[4000]["best_l2"] == 3e-3
    assert rows[1000]["l2_opt"] == pytest.approx(1e-2, rel=0.1)
    assert rows[4000]["l2_opt"] == pytest.approx(2.5e-3, rel=0.25)
    assert rows[1000]["interior_peak"] and rows[4000]["interior_peak"]
    zero_at_4000 = 0.6 + 0.2 * (1 - np.exp(-4000 / 200))
    assert rows[4000]["gain_over_zero_l2"] == pytest.approx(
        world_accuracy(3e-3, 4000) - zero_at_4000, abs=1e-3
    )
    slope = results["accuracy_vs_l2"]["l2_opt_vs_budget_slope"][str(LR)]
    assert slope == pytest.approx(-1.0, abs=0.2)
    # Read at its own t* = C/(λη), every run whose t* lies within the 4000 steps is at its peak.
    for entry in results["accuracy_vs_l2"]["scaled_budget"]:
        if C / (entry["l2"] * LR) <= 4000:
            assert entry["accuracy"]["mean"] == pytest.approx(0.9, abs=2e-3)
        else:  # λ = 1e-3: capped at the run's end, before its peak
            assert entry["steps"] == 4000
            assert entry["accuracy"]["mean"] == pytest.approx(world_accuracy(1e-3, 4000), abs=2e-3)


def test_part_three_predicts_from_the_probe(world):
    _, results, _ = world
    prediction = results["l2_prediction"]
    assert prediction["probe_steps"] == 300
    assert prediction["compute_fraction"] == pytest.approx(300 / (4000 * 6))
    assert prediction["probe_has_clear_peak"]
    assert prediction["c"]["mean"] == pytest.approx(C, rel=0.05)
    assert prediction["predicted_l2"] == pytest.approx(C / (LR * 4000), rel=0.05)
    assert 0.75 < prediction["ratio"] < 1.33
    assert prediction["met"]


def test_part_four_counts_steps_to_the_best_fixed_accuracy(world):
    _, results, _ = world
    target = world_accuracy(3e-3, 4000)
    assert results["best_fixed"]["l2"] == 3e-3
    assert results["best_fixed"]["accuracy"]["mean"] == pytest.approx(target, abs=1e-3)
    variants = results["autol2"]["variants"]
    # 0.95·(1 − exp(−t/100)) reaches the target at t = 100·ln(0.95/(0.95 − target)).
    hit = 100 * np.log(0.95 / (0.95 - target))
    for name, variant in variants.items():
        steps = variant["steps_to_best_fixed_accuracy"]
        if "step lr schedule" in name:
            assert steps["values"] == [None, None] and not variant["met"]
        else:
            assert steps["mean"] == pytest.approx(hit, rel=0.02)
            assert variant["met"]
    # The floor is min(λ_pred, the initial λ) = λ_pred ≈ 2.5e-3, above the world's λ/100.
    floored = variants["autol2 + min_l2 = λ_pred"]["final_l2"]["mean"]
    assert floored == pytest.approx(results["l2_prediction"]["predicted_l2"])
    assert variants["autol2 (defaults)"]["final_l2"]["mean"] == pytest.approx(1e-3)


def test_report_marks_each_goal_as_the_world_decides(world):
    workdir, _, _ = world
    with open(os.path.join(workdir, "report.md"), encoding="utf-8") as file:
        report = file.read()
    assert "Goal: slope in [-1.1, -0.9]: **met**" in report
    assert "≥ 1.5 points: **met**" in report
    assert "compute: **met**" in report
    lines = report.splitlines()
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| autol2")}
    assert rows["| autol2 (defaults)"].endswith("| **met** |")
    assert rows["| autol2 + step lr schedule"].endswith("| never | **missed** |")
    for name in ("t_star.png", "collapse.png", "accuracy_vs_l2.png", "autol2.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0


def raises_exactly(message: str):
    """`pytest.raises(ValueError)` matching the whole message, which must thus be one line."""
    return pytest.raises(ValueError, match=rf"^{re.escape(message)}\Z")


def peaked_accuracy(l2_lr, steps, top: float = 0.9) -> np.ndarray:
    """The world's fixed-λ curve: a peak of `top` at t* = C/(λη), half a decade wide."""
    return 0.6 + (top - 0.6) * np.exp(-0.5 * (np.log10(l2_lr * steps / C) / 0.5) ** 2)


class SweepLikeWorld:
    """The model world evaluated where a sweep evaluates: `sweep.eval_steps` (12 a decade,
    rounded to whole steps) and the steps of `eval_at`; η is the effective η/(1−μ)."""

    label = "the model world at a sweep's evaluations"

    def __init__(self, momentum: float = 0.0):
        self.momentum = momentum

    def __call__(self, name, configs, eval_at=()):
        curves = []
        for config in configs:
            steps = sweep.eval_steps(config.steps, 12, eval_at)
            if config.l2 == 0:
                accuracy = 0.6 + 0.2 * (1 - np.exp(-steps / 200))
            else:
                l2_lr = config.l2 * relations.effective_lr(config.lr, self.momentum)
                accuracy = peaked_accuracy(l2_lr, steps)
            curves.append(make_curves(steps, accuracy, config.l2))
        return curves


BUDGET_GRID = L2Grid(
    config=run_config(),
    lrs=(LR,),
    l2s=(0.0, *np.geomspace(1e-4, 1e-1, 31).tolist()),
    num_steps=6000,
    budgets=(600, 2000, 6000),
    scaled_length=C,  # read every run at its own t*
    probe_l2=0.2,
    probe_length=6 * C,
    autol2_l2=0.1,
)


def test_accuracy_at_a_budget_is_read_after_exactly_that_many_steps():
    # The log-spaced evaluations nearest below 600 and 2000 are 562 and 1778 steps: read there,
    # λ_opt(T) = C/(ηT) came out 7% and 12% too large.
    results, _ = parts.l2_part(BUDGET_GRID, [0], SweepLikeWorld())
    rows = results["accuracy_vs_l2"]["fixed_budget"]
    assert [row["budget_steps"] for row in rows] == [600, 2000, 6000]
    for row in rows:
        assert row["l2_opt"] == pytest.approx(C / (LR * row["budget_steps"]), rel=0.03)
    assert results["accuracy_vs_l2"]["l2_opt_vs_budget_slope"][str(LR)] == pytest.approx(
        -1.0, abs=0.02
    )
    # One c for every budget, so λ_pred/λ_opt is the same at each.
    ratios = list(results["l2_prediction"]["ratios_by_budget"].values())
    assert max(ratios) / min(ratios) < 1.03
    # The T ∝ 1/(λη) view reads each run at its own t* = C/(λη), the step it reports.
    for entry in results["accuracy_vs_l2"]["scaled_budget"]:
        target = C / (entry["l2"] * LR)
        assert entry["target_steps"] == pytest.approx(target)
        assert entry["steps"] == min(6000, round(target))
        if target <= 6000:
            assert entry["accuracy"]["mean"] == pytest.approx(0.9, abs=1e-3)


def test_a_budget_that_was_not_evaluated_is_an_error_not_an_earlier_reading():
    class IgnoresEvalAt(SweepLikeWorld):
        def __call__(self, name, configs, eval_at=()):
            return super().__call__(name, configs)

    with raises_exactly(
        "step 600 was not evaluated (the nearest evaluations are at steps 562 and 681); "
        "add it to the evaluations (sweep.run's eval_at)"
    ):
        parts.l2_part(BUDGET_GRID, [0], IgnoresEvalAt())


def test_momentum_enters_through_the_effective_learning_rate():
    # t* = C/(λ·η/(1−μ)) in this world: c = t*·λ·η/(1−μ) = C, as relations.py defines it.
    run = SweepLikeWorld(momentum=0.9)
    grid = TStarGrid(
        config=run_config(), lrs=(0.05, 0.1, 0.2), l2_lrs=(1e-4, 1e-3, 1e-2), run_length=30
    )
    fit, runs = parts.t_star_part(grid, [0], run)
    for point, (config, _) in zip(fit["points"], runs, strict=True):
        assert point["l2"] * relations.effective_lr(point["lr"], 0.9) == pytest.approx(
            point["l2_lr"]
        )
        assert config.steps == round(30 / point["l2_lr"])
    assert fit["slope"] == pytest.approx(-1.0, abs=0.03)
    assert fit["c"] == pytest.approx(C, rel=0.1)
    momentum = run_config()
    momentum.optimizer, momentum.momentum = "momentum", 0.9  # the probe's η/(1−μ) reads it
    results, _ = parts.l2_part(dataclasses.replace(BUDGET_GRID, config=momentum), [0], run)
    prediction = results["l2_prediction"]
    effective = relations.effective_lr(LR, 0.9)
    assert prediction["effective_lr"] == pytest.approx(effective)
    assert prediction["probe_steps"] == round(6 * C / (0.2 * effective))
    assert prediction["c"]["mean"] == pytest.approx(C, rel=0.1)
    for row in results["accuracy_vs_l2"]["fixed_budget"]:
        assert row["l2_opt"] == pytest.approx(C / (effective * row["budget_steps"]), rel=0.03)


class OneLiveL2Lr(SweepLikeWorld):
    """Part 1's runs all peak at 0.6 except those at λη = `live`, which peak at 0.9: only
    they are fitted, and they share one λη."""

    def __init__(self, live: float, momentum: float):
        super().__init__(momentum)
        self.live = live

    def __call__(self, name, configs, eval_at=()):
        if name != "t_star":
            return super().__call__(name, configs, eval_at)
        curves = []
        for config in configs:
            steps = np.geomspace(1, config.steps, 200)
            l2_lr = config.l2 * relations.effective_lr(config.lr, self.momentum)
            accuracy = peaked_accuracy(l2_lr, steps, 0.9 if np.isclose(l2_lr, self.live) else 0.65)
            curves.append(make_curves(steps, accuracy, config.l2))
        return curves


@pytest.mark.parametrize(
    ("lrs", "momentum", "live"),
    [
        ((0.5, 1.0, 2.0), 0.0, 1e-3),
        # λ·η/(1−μ) recomputed from λ = λη(1−μ)/η: 0.1 at two η, 0.1 + 1 ulp at η = 0.3.
        ((0.3, 0.7, 1.1), 0.9, 1e-1),
    ],
)
def test_part_one_with_one_fitted_l2_lr_has_no_fit_and_misses_its_goal(
    lrs, momentum, live, tmp_path
):
    run = OneLiveL2Lr(live, momentum)
    grid = TStarGrid(config=run_config(), lrs=lrs, l2_lrs=(1e-3, 1e-2, 1e-1), run_length=30)
    fit, _ = parts.t_star_part(grid, [0, 1], run)
    assert [p["l2_lr"] for p in fit["points"] if p["used"]] == [live] * 6
    assert fit["slope"] is None and fit["c"] is None and fit["slope_stderr"] is None
    assert fit["per_seed_slope"]["values"] == [None, None]
    assert not fit["met"]
    settings = dataclasses.replace(SETTINGS, t_star=grid)
    reproduce_with(run, str(tmp_path), settings, name="world", seeds=[0, 1])
    report = (tmp_path / "report.md").read_text()
    assert "Fitted slope (all seeds pooled): n/a ± n/a, c = n/a" in report
    assert "Goal: slope in [-1.1, -0.9]: **missed**" in report


class DivergedBaseline(WorldRunner):
    """The model world, except that the λ = 0 runs end with no finite test accuracy."""

    def __call__(self, name, configs, eval_at=()):
        curves = super().__call__(name, configs, eval_at)
        return [
            curve._replace(test_accuracy=np.full_like(curve.test_accuracy, np.nan))
            if config.l2 == 0 and config.l2_mode == "fixed"
            else curve
            for config, curve in zip(configs, curves, strict=True)
        ]


def test_undefined_figures_are_null_in_strict_json_and_n_a_in_the_report(tmp_path):
    # Two runs in part 1: the fit's slope has no standard error. No finite λ = 0 accuracy: no
    # gain over λ = 0, and its goal cannot be met.
    t_star = dataclasses.replace(SETTINGS.t_star, lrs=(LR,), l2_lrs=(1e-2, 1e-1))
    settings = dataclasses.replace(SETTINGS, t_star=t_star)
    run = DivergedBaseline()
    reproduce_with(run, str(tmp_path), settings, name="world", seeds=[0])

    def no_constants(name):
        raise AssertionError(f"results.json holds {name}, which JSON does not allow")

    stored = json.loads((tmp_path / "results.json").read_text(), parse_constant=no_constants)
    assert stored["t_star_fit"]["slope"] == pytest.approx(-1.0, abs=0.02)
    assert stored["t_star_fit"]["slope_stderr"] is None
    assert stored["zero_l2"]["accuracy"]["values"] == [None]
    assert stored["best_fixed"]["gain_over_zero_l2"] is None
    assert not stored["best_fixed"]["met"]
    assert all(row["gain_over_zero_l2"] is None for row in stored["accuracy_vs_l2"]["fixed_budget"])
    report = (tmp_path / "report.md").read_text()
    assert "± n/a, c = " in report
    assert "λ = 0 never: gain n/a. Goal: ≥ 1.5 points: **missed**." in report
    assert "| n/a |" in report


class MustNotTrain:
    label = "a runner that fails if called"
    momentum = 0.0

    def __call__(self, name, configs, eval_at=()):
        raise AssertionError("the reproduction trained before rejecting its settings")


def l2_grid(**changes):
    return lambda: dataclasses.replace(SETTINGS, l2=dataclasses.replace(SETTINGS.l2, **changes))


def t_star_grid(**changes):
    return lambda: dataclasses.replace(
        SETTINGS, t_star=dataclasses.replace(SETTINGS.t_star, **changes)
    )


BUDGETS_MESSAGE = (
    "budgets must be strictly increasing integers in [1, num_steps] ending at num_steps=4000, "
    "got {}"
)
L2S_MESSAGE = (
    "l2s must be strictly increasing from 0 (the λ = 0 baseline) with at least one λ > 0, got {}"
)


@pytest.mark.parametrize(
    ("settings", "seeds", "message"),
    [
        (l2_grid(budgets=(1000, 2000)), [0], BUDGETS_MESSAGE.format((1000, 2000))),
        (l2_grid(budgets=(1000, 4000, 40000)), [0], BUDGETS_MESSAGE.format((1000, 4000, 40000))),
        (l2_grid(budgets=(4000, 1000)), [0], BUDGETS_MESSAGE.format((4000, 1000))),
        (l2_grid(budgets=(1000.0, 4000)), [0], BUDGETS_MESSAGE.format((1000.0, 4000))),
        (l2_grid(budgets=()), [0], BUDGETS_MESSAGE.format(())),
        (l2_grid(l2s=(0.0, 1e-1, 1e-2)), [0], L2S_MESSAGE.format((0.0, 0.1, 0.01))),
        (l2_grid(l2s=(1e-3, 1e-2)), [0], L2S_MESSAGE.format((0.001, 0.01))),
        (l2_grid(l2s=(0.0,)), [0], L2S_MESSAGE.format((0.0,))),
        (l2_grid(l2s=(0.0, float("nan"))), [0], "each of l2s must be finite and ≥ 0, got nan"),
        (l2_grid(num_steps=0), [0], "num_steps must be an integer in [1, 2147483647], got 0"),
        (
            l2_grid(lrs=(0.5, 0.5)),
            [0],
            "lrs must hold distinct values (at least one), got (0.5, 0.5)",
        ),
        (l2_grid(lrs=(-0.5,)), [0], "each of lrs must be finite and > 0, got -0.5"),
        (l2_grid(probe_l2=float("inf")), [0], "probe_l2 must be finite and > 0, got inf"),
        (l2_grid(probe_length=0), [0], "probe_length must be finite and > 0, got 0"),
        (l2_grid(scaled_length=-1.0), [0], "scaled_length must be finite and > 0, got -1.0"),
        (l2_grid(autol2_l2=True), [0], "autol2_l2 must be finite and > 0, got True"),
        (
            t_star_grid(l2_lrs=(1e-2,)),
            [0],
            "l2_lrs must hold 2 or more distinct values, got (0.01,)",
        ),
        (t_star_grid(lrs=()), [0], "lrs must hold distinct values (at least one), got ()"),
        (t_star_grid(run_length=float("nan")), [0], "run_length must be finite and > 0, got nan"),
        (
            lambda: dataclasses.replace(SETTINGS, seeds=100_000_000_000),
            [0],
            "seeds must be an integer in [1, 100], got 100000000000",
        ),
        (
            lambda: dataclasses.replace(SETTINGS, driver="trainer", trainer_evals=3),
            [0],
            "budgets [1000] are not trainer evaluations: with num_steps=4000 and "
            "trainer_evals=3 the trainer evaluates every 1333 steps, so each budget must be a "
            "multiple of 1333",
        ),
        (lambda: SETTINGS, [0, 0], "seeds must be distinct, got [0, 0]"),
        (
            lambda: SETTINGS,
            range(100_000_000_000),
            "the number of seeds must be an integer in [1, 100], got 100000000000",
        ),
        (
            lambda: SETTINGS,
            [2**31],
            "config.seed must be an integer in [-2147483648, 2147483647], got 2147483648 (in "
            f"{sweep.Run(1e-3 / 0.5, 0.5, 2**31, round(6 * C / 1e-3), l2_mode='fixed')})",
        ),
        (
            t_star_grid(run_length=1e12),
            [0],
            "config.steps must be an integer in [1, 2147483647], got 1000000000000000 (in "
            f"{sweep.Run(1e-3 / 0.5, 0.5, 0, 10**15, l2_mode='fixed')})",
        ),
    ],
    ids=[
        "budgets without num_steps",
        "budget beyond num_steps",
        "budgets unsorted",
        "budget not an integer",
        "no budgets",
        "l2s unsorted",
        "l2s without 0",
        "l2s only 0",
        "l2 nan",
        "num_steps 0",
        "lrs repeated",
        "lr negative",
        "probe_l2 inf",
        "probe_length 0",
        "scaled_length negative",
        "autol2_l2 a bool",
        "one l2_lr",
        "no lrs",
        "run_length nan",
        "1e11 seeds in the preset",
        "budget off the trainer's evaluations",
        "seeds repeated",
        "1e11 seeds given",
        "seed beyond int32",
        "run beyond int32 steps",
    ],
)
def test_bad_settings_are_one_line_errors_before_any_training(settings, seeds, message, tmp_path):
    workdir = tmp_path / "new"
    with raises_exactly(message):
        reproduce_with(MustNotTrain(), str(workdir), settings(), name="bad", seeds=seeds)
    assert not workdir.exists()
