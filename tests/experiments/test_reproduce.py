"""The reproduction: the quick preset end to end, its numbers consistent, reruns cached; the
trainer runner; the command line's errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import reproduce_quick
from l2reg import relations, reproduction
from l2reg.reproduction import parts
from l2reg.training import sweep

QUICK = reproduction.Preset.from_config(reproduce_quick.get_config())


def run_quick(workdir):
    return reproduction.reproduce(workdir, QUICK, name="quick", seeds=range(QUICK.seeds))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("reproduce"))
    return workdir, run_quick(workdir)


@pytest.mark.slow
def test_quick_preset_writes_report_plots_and_results(quick):
    workdir, _ = quick
    for name in ("report.md", "results.json", "t_star.png", "collapse.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0
    for name in ("accuracy_vs_l2.png", "autol2.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0
    with open(os.path.join(workdir, "results.json")) as file:
        stored = json.load(file)
    for key, fields in {
        "t_star_fit": ("slope", "slope_stderr", "c", "points"),
        "l2_prediction": (
            "c",
            "budget_steps",
            "predicted_l2",
            "grid_best_l2",
            "ratio",
            "compute_fraction",
        ),
        "autol2": ("accuracy", "steps_to_best_fixed_accuracy"),
        "best_fixed": ("l2", "accuracy"),
        "zero_l2": ("accuracy",),
    }.items():
        assert set(fields) <= set(stored[key]), key
    assert not any(f.startswith(".tmp-") for f in os.listdir(workdir))
    report = open(os.path.join(workdir, "report.md")).read()
    assert "![t* vs λη](t_star.png)" in report
    assert report.count("**met**") + report.count("**missed**") >= 4


@pytest.mark.slow
def test_quick_results_are_consistent(quick):
    _, results = quick
    fit, points = results["t_star_fit"], results["t_star_fit"]["points"]
    used = np.array([p["used"] for p in points])
    refit = relations.fit_t_star(
        [p["l2"] for p in points],
        [p["lr"] for p in points],
        [p["t_star"] for p in points],
        used=used,
    )
    assert refit.slope == pytest.approx(fit["slope"])
    assert refit.c == pytest.approx(fit["c"])
    for p in points:
        assert p["low"] <= p["t_star"] <= p["high"] <= p["num_steps"]
        assert 0.0 <= p["final_accuracy"] <= p["peak_accuracy"] + 0.05 <= 1.05

    prediction = results["l2_prediction"]
    assert prediction["predicted_l2"] == pytest.approx(
        prediction["c"]["mean"] / (prediction["lr"] * prediction["budget_steps"])
    )
    assert prediction["ratio"] == pytest.approx(
        prediction["predicted_l2"] / prediction["grid_best_l2"]
    )
    grid = QUICK.l2
    assert prediction["compute_fraction"] == pytest.approx(
        prediction["probe_steps"] / (grid.num_steps * len(grid.l2s))
    )
    assert results["best_fixed"]["l2"] in grid.l2s and results["best_fixed"]["l2"] > 0
    for row in results["accuracy_vs_l2"]["fixed_budget"]:
        means = [a["mean"] for a in row["accuracy"]]
        positive = [m for l2, m in zip(row["l2"], means, strict=True) if l2 > 0]
        assert row["best_l2"] == [l2 for l2 in row["l2"] if l2 > 0][int(np.argmax(positive))]
    variants = results["autol2"]["variants"]
    assert set(variants) == set(parts.AUTOL2_VARIANTS)
    assert results["autol2"]["accuracy"] == variants["autol2 (defaults)"]["accuracy"]
    # λ only decays, and the floored variant stays at or above its floor.
    for variant in variants.values():
        assert variant["final_l2"]["mean"] <= results["autol2"]["l2_init"]
    floored = variants["autol2 + min_l2 = λ_pred"]["final_l2"]["mean"]
    assert floored >= min(prediction["predicted_l2"], grid.autol2_l2) * (1 - 1e-5)


@pytest.mark.slow
def test_quick_preset_shows_the_relations_that_hold_at_this_scale(quick):
    _, results = quick
    # Relation 1 on its setup (MSE, NTK MLP on digits): t* falls as λη grows.
    assert results["t_star_fit"]["slope"] < -0.3
    # Relation 2 on its setup (batch-norm MLP on mnist1d): some λ > 0 beats λ = 0.
    last = results["accuracy_vs_l2"]["fixed_budget"][-1]
    assert last["gain_over_zero_l2"] > 0


@pytest.mark.slow
def test_rerun_reuses_the_cached_sweeps(quick, monkeypatch):
    workdir, results = quick

    def no_training(*args, **kwargs):
        raise AssertionError("the rerun trained again instead of reusing the cache")

    monkeypatch.setattr(sweep, "run", no_training)
    again = run_quick(workdir)
    assert again["t_star_fit"]["slope"] == results["t_star_fit"]["slope"]
    assert again["autol2"]["accuracy"] == results["autol2"]["accuracy"]


def launch(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "experiments.reproduce", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--preset=huge"], "--preset=huge: value should be one of <quick|default|paper>"),
        (["--preset=quick", "--seeds=0"], "reproduce: seeds must be an integer in [1, 100], got 0"),
        # Not expanded into a list of 10¹¹ seeds (a MemoryError) before being refused.
        (["--seeds=100000000000"], "seeds must be an integer in [1, 100], got 100000000000"),
        (
            ["--config=experiments/configs/reproduce_quick.py", "--config.l2.num_steps=-1"],
            "num_steps must be an integer in [1, 2147483647], got -1",
        ),
        (
            ["--config=experiments/configs/reproduce_quick.py", "--config.t_star.run.lrr=1"],
            "lrr",
        ),
        (["stray"], "unexpected arguments: stray"),
    ],
)
def test_command_line_reports_bad_settings_in_one_line(tmp_path, arguments, message):
    workdir = tmp_path / "report"
    completed = launch(f"--workdir={workdir}", *arguments)
    assert completed.returncode != 0
    assert message in completed.stderr
    assert not workdir.exists()


def test_command_line_refuses_a_workdir_that_is_a_file(tmp_path):
    (tmp_path / "report").write_text("kept")
    completed = launch(f"--workdir={tmp_path / 'report'}")
    assert completed.returncode != 0
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"reproduce: workdir '{tmp_path / 'report'}' is a file: " + (
        "it must be a folder, new or existing"
    )
    assert (tmp_path / "report").read_text() == "kept"


def test_a_reproduction_that_fails_before_its_first_write_leaves_no_workdir(tmp_path):
    class Unprepared:
        momentum = 0.0

        def __call__(self, part, configs, eval_at=()):
            raise FileNotFoundError("data set not prepared")

    workdir = tmp_path / "new"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reproduction.Preset, "runner", lambda *args: Unprepared())
        with pytest.raises(FileNotFoundError, match="not prepared"):
            reproduction.reproduce(str(workdir), QUICK, name="quick", seeds=[0])
    assert not workdir.exists()


def tiny_trainer_runner(workdir):
    from experiments.configs import mlp_digits

    config = mlp_digits.get_config()
    config.model_options.widths = (16, 16)
    config.optimizer = "sgd"
    return reproduction.TrainerRunner(str(workdir), config, "mlp_digits", evals=4)


def test_trainer_runs_are_the_runs_configs_evaluated_evals_times(tmp_path):
    run = tiny_trainer_runner(tmp_path)
    autol2 = sweep.Run(0.2, 0.5, 3, 80, l2_mode="autol2", autol2=(("cooldown", 0.1),))
    config = run.trainer_config(autol2)
    assert (config.l2, config.lr, config.seed, config.steps) == (0.2, 0.5, 3, 80)
    assert config.l2_mode == "autol2" and config.autol2.cooldown == 0.1
    assert config.eval_every == 20 and config.checkpoint_every == 20
    assert run.trainer_config(sweep.Run(1e-3, 0.5, 0, 80, l2_mode="fixed")).l2_mode == "fixed"


@pytest.mark.slow
def test_trainer_runner_trains_through_the_trainer_and_reuses_finished_runs(tmp_path):
    run = tiny_trainer_runner(tmp_path)
    configs = [
        sweep.Run(1e-3, 0.5, 0, 40, l2_mode="fixed"),
        sweep.Run(0.1, 0.5, 0, 40, l2_mode="autol2"),
    ]
    curves = run("t_star", configs)
    for curve in curves:
        np.testing.assert_array_equal(curve.steps, [10, 20, 30, 40])
        assert np.all((curve.test_accuracy >= 0) & (curve.test_accuracy <= 1))
    np.testing.assert_allclose(curves[0].l2, 1e-3, rtol=1e-6)
    assert len([path for path in (tmp_path / "runs").iterdir() if path.is_dir()]) == 2
    again = run("t_star", configs)
    np.testing.assert_array_equal(again[1].test_accuracy, curves[1].test_accuracy)
    assert len([path for path in (tmp_path / "runs").iterdir() if path.is_dir()]) == 2
