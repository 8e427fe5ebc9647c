"""The reproduction's analysis on curves with known answers, through a runner that trains nothing.

In the model world of `WorldRunner`, a run with a fixed λ > 0 peaks at exactly t* = C/(λη)
(accuracy 0.6 + 0.3·exp(−½(log10(λη·t/C)/0.5)²)), λ = 0 creeps up to 0.8, and AutoL2 with a
constant learning rate reaches 95% along 0.95·(1 − exp(−t/100)), its λ falling a hundredfold
(not below `min_l2`) after step 1000, while the step schedule never gets far. Every figure of
the parts and every goal of the report then has a value worked out by hand below.
"""

import os

import numpy as np
import pytest

from l2reg import reproduction, sweep
from l2reg.reproduction import L2Grid, Preset, TStarGrid

C = 5.0  # the world's t*·λ·η: every t* ≥ 50 steps, where steps and 1 + step agree
LR = 0.5


def world_curve(config: sweep.Config) -> sweep.Curves:
    # Evenly spaced in log step, like the sweeps' evaluations but without rounding to whole
    # steps, so that the estimator's smoothing sees no change of density.
    steps = np.geomspace(1, config.num_steps, 400)
    l2 = np.full_like(steps, config.l2)
    if isinstance(config.l2_mode, sweep.AutoL2):
        tau = 100.0 if config.lr_schedule == "constant" else 1e6
        accuracy = 0.95 * (1 - np.exp(-steps / tau))
        l2[steps > 1000] = max(config.l2 / 100, config.l2_mode.min_l2)
    elif config.l2 == 0:
        accuracy = 0.6 + 0.2 * (1 - np.exp(-steps / 200))
    else:
        distance = np.log10(config.l2 * config.lr * steps / C) / 0.5
        accuracy = 0.6 + 0.3 * np.exp(-0.5 * distance**2)
    return sweep.Curves(steps, accuracy, 1 - accuracy, l2, np.ones_like(steps))


class WorldRunner:
    label = "the model world"

    def __init__(self):
        self.calls = []

    def __call__(self, name, configs):
        self.calls.append((name, list(configs)))
        return [world_curve(config) for config in configs]


SETTINGS = Preset(
    t_star=TStarGrid(
        setup=None,
        lrs=(0.5, 1.0, 2.0),
        l2_lrs=tuple(np.geomspace(1e-3, 1e-1, 5).tolist()),
        run_length=6 * C,  # peaks at a sixth of each run
    ),
    l2=L2Grid(
        setup=None,
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
    results = reproduction.reproduce(
        workdir, SETTINGS, name="world", seeds=range(2), t_star_runner=runner, l2_runner=runner
    )
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
