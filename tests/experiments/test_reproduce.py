"""The reproduction: the quick preset once end to end through the command line, its results.json
consistent with the preset and with report.md, a cached rerun that trains nothing, outputs
written all or none; the trainer runner; the command line's one-line errors."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import reproduce as reproduce_launcher
from experiments.configs import reproduce_quick
from l2reg import files, reproduction
from l2reg.reproduction import selection
from l2reg.training import sweep

QUICK = reproduction.Preset.from_config(reproduce_quick.get_config())
OUTPUTS = (
    "calibration.json",
    "report.md",
    "results.json",
    "t_star.png",
    *(reproduction.plot_name(setup.name) for setup in QUICK.setups),
)


def launch(*arguments, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "experiments.reproduce", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def no_constants(name):
    raise AssertionError(f"results.json holds {name}, which JSON does not allow")


def read_outputs(workdir) -> dict[str, bytes]:
    return {name: (workdir / name).read_bytes() for name in OUTPUTS}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick preset, run once for this module through the command line: its workdir, the
    command's stderr, and its outputs as first written (tests below rewrite them)."""
    workdir = tmp_path_factory.mktemp("reproduce") / "quick"
    completed = launch(f"--workdir={workdir}", "--preset=quick", timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    outputs = read_outputs(workdir)
    results = json.loads(outputs["results.json"], parse_constant=no_constants)
    return workdir, completed.stderr, results, outputs["report.md"].decode()


def rerun(workdir, monkeypatch):
    """The quick preset again, in this process, on `workdir`'s cache: training is refused."""

    def no_training(*args, **kwargs):
        raise AssertionError("the rerun trained again instead of reusing the cache")

    monkeypatch.setattr(sweep, "run", no_training)
    return reproduction.reproduce(str(workdir), QUICK, name="quick")


@pytest.mark.slow
def test_quick_preset_writes_its_outputs_and_nothing_else(quick):
    workdir, stderr, *_ = quick
    assert sorted(os.listdir(workdir)) == sorted([*OUTPUTS, "cache"])
    for name in OUTPUTS:
        assert (workdir / name).stat().st_size > 0
    # The terminal showed every runner call, by part and data draw, and where the report went.
    for name in reproduction._planned(QUICK, QUICK.replicas()):
        assert f"{name}: trained in " in stderr
    assert f"wrote {workdir}/report.md in " in stderr


@pytest.mark.slow
def test_results_json_records_the_preset_it_ran(quick):
    _, _, results, _ = quick
    assert (results["preset"], results["draws"], results["seeds"]) == ("quick", 1, 2)
    # Replicas: every data draw × every seed.
    assert results["replicas"] == [[draw, seed] for draw in range(1) for seed in range(2)]
    assert len(results["replicas"]) == QUICK.draws * QUICK.seeds
    planned = reproduction._planned(QUICK, QUICK.replicas())
    assert [(p["name"], p["member_steps"]) for p in results["parts"]] == list(planned.items())
    assert results["reused_parts"] == [] and results["training_seconds"] > 0
    relation_1 = results["relation_1"]
    assert len(relation_1["points"]) == 2 * len(QUICK.t_star.lrs) * len(QUICK.t_star.l2_lrs)
    assert relation_1["selection_split"] == "validation"
    assert [(s["setup"], s["role"]) for s in results["setups"]] == [
        ("digits_mse", "calibration"),
        ("digits_mse_faster", "held-out"),
    ]
    for setup, result in zip(QUICK.setups, results["setups"], strict=True):
        assert result["budgets"] == list(setup.budgets) and len(result["budgets"]) >= 3
        assert result["l2s"] == list(setup.l2s)
        assert result["selection_split"] == "validation"
        assert list(result["envelope"]) == [str(b) for b in setup.budgets]
        assert set(result["schedules"]["by_schedule"]) == set(selection.SCHEDULES)


@pytest.mark.slow
def test_quick_results_are_consistent(quick):
    _, _, results, _ = quick
    calibration, held_out = results["setups"]
    kappa = calibration["correction"]["kappa"]
    assert calibration["correction"]["fitted_here"]
    assert kappa == calibration["correction"]["kappa_on_this_setup"]
    # The held-out setup takes κ from the calibration setup, unrefitted.
    assert held_out["correction"]["kappa"] == kappa and not held_out["correction"]["fitted_here"]
    assert calibration["prediction"]["in_sample"] and not held_out["prediction"]["in_sample"]
    for setup, result in zip(QUICK.setups, results["setups"], strict=True):
        c = result["probe"]["c"]["values"]
        assert result["probe"]["steps"] == selection.probe_runs(setup, QUICK.replicas())[0][1].steps
        assert result["prediction"]["probe_compute_fraction"] == pytest.approx(
            result["probe"]["steps"] / (len(setup.l2s) * setup.num_steps)
        )
        for row in result["prediction"]["budgets"]:
            # λ_pred(T) = c/(ηT) per replica, and κ times it.
            expected = [value / (result["effective_lr"] * row["budget_steps"]) for value in c]
            assert row["uncorrected"]["l2"]["values"] == pytest.approx(expected)
            assert row["corrected"]["l2"]["values"] == pytest.approx(
                [kappa * value for value in expected]
            )
        for row in result["relation_2"]["budgets"]:
            assert set(row["best_l2_on_validation"]) <= set(setup.l2s[1:])
        for row in result["relation_3"]["budgets"]:
            assert set(row["chosen_l2"]) <= set(setup.l2s)
            k = np.array(row["k"]["values"], dtype=float)
            l2_opt = np.array(row["l2_opt"]["values"], dtype=float)
            np.testing.assert_allclose(k, l2_opt * result["effective_lr"] * row["budget_steps"])


def summary_verdicts(report: str) -> list[tuple[str, bool | None]]:
    """(setup, met) of each row of report.md's summary table (None: no prediction)."""
    lines = report.splitlines()
    start = lines.index("| goal | setup | measured | verdict |") + 2
    verdicts = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        verdicts.append(
            (cells[1], {"**met**": True, "**missed**": False, "no prediction": None}[cells[3]])
        )
    return verdicts


@pytest.mark.slow
def test_report_says_what_results_json_says(quick):
    _, _, results, report = quick
    expected = [("calibration", results["relation_1"]["met"])]
    for setup in results["setups"]:
        name = f"{setup['setup']} ({setup['role']})"
        expected += [(name, setup["relation_2"]["met"]), (name, setup["prediction"]["met"])]
        expected += [(name, selection.fall_prediction(setup)["held"])]
        expected += [(name, s["met"]) for s in setup["schedules"]["by_schedule"].values()]
    assert summary_verdicts(report) == expected
    assert "Replicas: 1 data draws × 2 seeds = 2." in report
    assert "every part trained in this run" in report
    figures = [line.split("(")[-1].rstrip(")") for line in report.splitlines() if line[:2] == "!["]
    assert sorted(figures) == sorted(name for name in OUTPUTS if name.endswith(".png"))


@pytest.mark.slow
def test_a_rerun_reuses_every_call_and_keeps_the_first_training_time(quick, monkeypatch):
    workdir, _, first, _ = quick
    again = rerun(workdir, monkeypatch)
    assert again["reused_parts"] == [p["part"] for p in first["parts"]]
    assert again["training_seconds"] == pytest.approx(first["training_seconds"])
    stored = json.loads((workdir / "results.json").read_text(), parse_constant=no_constants)
    assert stored["relation_1"] == first["relation_1"]
    assert stored["setups"] == first["setups"]
    report = (workdir / "report.md").read_text()
    assert (
        f"Time: training {first['training_seconds']:.0f} s (measured when first trained), this "
        f"run {again['elapsed_seconds']:.0f} s; every part reused from the cache, nothing trained."
    ) in report


def assert_left_as_it_was(workdir, before: dict[str, bytes]) -> None:
    assert read_outputs(workdir) == before
    # Neither the staging folder of the plots nor a temporary file of write_all is left.
    assert sorted(os.listdir(workdir)) == sorted([*OUTPUTS, "cache"])


@pytest.mark.slow
def test_a_failed_write_leaves_the_previous_outputs_as_they_were(quick, monkeypatch):
    workdir, *_ = quick
    before = read_outputs(workdir)
    write = files._write_temporary
    written = []

    def full_disk_on_the_third(path, data):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        written.append(write(path, data))
        return written[-1]

    monkeypatch.setattr(files, "_write_temporary", full_disk_on_the_third)
    with pytest.raises(OSError, match="No space left on device"):
        rerun(workdir, monkeypatch)
    assert len(written) == 2 and not any(os.path.exists(path) for path in written)
    assert_left_as_it_was(workdir, before)


@pytest.mark.slow
def test_a_failed_plot_leaves_the_previous_outputs_as_they_were(quick, monkeypatch):
    workdir, *_ = quick
    before = read_outputs(workdir)
    plot = selection.plot

    def fails_on_the_held_out_setup(result, curves, path):
        if result["role"] == "held-out":
            raise RuntimeError("plot failed")
        plot(result, curves, path)

    monkeypatch.setattr(selection, "plot", fails_on_the_held_out_setup)
    with pytest.raises(RuntimeError, match="plot failed"):
        rerun(workdir, monkeypatch)
    assert_left_as_it_was(workdir, before)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--preset=huge"],
            "--preset=huge: value should be one of "
            "<quick|default|study|cooldown|start|regimes|paper>",
        ),
        (["--preset=quick", "--seeds=0"], "reproduce: seeds must be an integer in [1, 100], got 0"),
        # Not expanded into a list of 10¹¹ seeds before being refused.
        (
            ["--seeds=100000000000"],
            "reproduce: seeds must be an integer in [1, 100], got 100000000000",
        ),
        (
            ["--config=experiments/configs/reproduce_quick.py", "--config.draws=0"],
            "reproduce: draws must be an integer in [1, 100], got 0",
        ),
        (
            ["--config=experiments/configs/reproduce_quick.py", "--config.driver=gpu"],
            "reproduce: driver must be one of ('sweep', 'trainer'), got 'gpu'",
        ),
        (
            [
                "--config=experiments/configs/reproduce_quick.py",
                "--config.setups.digits_mse.lr=-1",
            ],
            "reproduce: setup 'digits_mse': lr must be finite and > 0, got -1.0",
        ),
        (
            [
                "--config=experiments/configs/reproduce_quick.py",
                "--config.setups.digits_mse.role=held-out",
            ],
            "reproduce: setups must hold exactly one 'calibration' setup, got roles "
            "['held-out', 'held-out']",
        ),
        (
            [
                "--config=experiments/configs/reproduce_quick.py",
                "--config.setups.digits_mse_faster.run.data_options.label_noise=1.5",
            ],
            "reproduce: label_noise must be in [0, 1), got 1.5",
        ),
        (
            ["--config=experiments/configs/reproduce_quick.py", "--config.t_star.run.lrr=1"],
            "lrr",
        ),
        (["stray"], "reproduce: unexpected arguments: stray"),
    ],
    ids=[
        "unknown preset",
        "no seeds",
        "1e11 seeds",
        "no draws",
        "unknown driver",
        "negative lr of a setup",
        "no calibration setup",
        "label noise of a held-out setup",
        "unknown config field",
        "stray argument",
    ],
)
def test_command_line_reports_bad_settings_in_one_line(tmp_path, arguments, message):
    workdir = tmp_path / "report"
    completed = launch(f"--workdir={workdir}", *arguments)
    assert completed.returncode != 0
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert message in lines[-1], completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
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
        def __call__(self, name, runs, eval_at=()):
            raise FileNotFoundError("data set not prepared")

    workdir = tmp_path / "new"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reproduction.Preset, "runner", lambda *args: Unprepared())
        with pytest.raises(FileNotFoundError, match="not prepared"):
            reproduction.reproduce(str(workdir), QUICK, name="quick")
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


@pytest.mark.parametrize("name", reproduce_launcher.PRESET_NAMES)
def test_every_preset_is_a_valid_preset(name):
    preset = reproduction.Preset.from_config(reproduce_launcher.preset_config(name))
    assert preset.calibration.role == "calibration"
    assert preset.setups[0] is preset.calibration
