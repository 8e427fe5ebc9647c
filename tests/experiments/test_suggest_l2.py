"""experiments.suggest_l2: the probe runs through the trainer and λ = c/(ηT) follows from its t*."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from experiments.configs import mlp_digits, mlp_digits_noisy
from l2reg.reproduction import probe

ROOT = pathlib.Path(__file__).resolve().parents[2]


def small_config():
    config = mlp_digits.get_config()
    config.model_options.widths = (32, 32)
    return config


@pytest.mark.slow
def test_suggestion_follows_from_the_probe(tmp_path):
    config = small_config()
    # λ = 0.3, η/(1−μ) = 0.01/(1 − 0.9) = 0.1: the probe lasts 3/(0.3·0.1) = 100 steps and,
    # with c of order 1 (relation 1), should peak a third of the way in and then fall.
    record = probe.suggest(
        config, str(tmp_path), budget_steps=10_000, probe_l2=0.3, probe_length=3.0, evals=20
    )
    assert os.path.getsize(tmp_path / "probe.png") > 0
    stored = json.loads((tmp_path / "suggestion.json").read_text())
    assert stored["probe_steps"] == record["probe_steps"] == 100
    assert record["effective_lr"] == pytest.approx(0.1)
    assert record["clear_peak"] is True and stored["clear_peak"] is True
    t_star = record["probe"]["t_star"]
    # Evaluations every 100 // 20 = 5 steps: t* is one of them, before the last one (step 100).
    assert t_star % 5 == 0 and 5 <= t_star <= 95
    c = t_star * 0.3 * 0.1
    assert record["c"] == pytest.approx(c)
    # Relation 3's λ, corrected by the committed calibration's κ, within its range.
    calibration = probe.calibration()
    kappa, (low, high) = calibration["kappa"], calibration["kappa_range"]
    uncorrected = c / (0.1 * 10_000)
    assert record["uncorrected_l2"] == pytest.approx(uncorrected)
    assert record["suggested_l2"] == stored["suggested_l2"] == pytest.approx(kappa * uncorrected)
    assert record["l2_range"] == pytest.approx([low * uncorrected, high * uncorrected])
    # The schedules as trainer fields, from the probe's λ and c.
    anytime = record["schedules"]["anytime"]
    assert anytime == pytest.approx({"l2_mode": "anytime", "l2": 0.3, "anytime_c": kappa * c})
    assert probe.fragment(anytime).startswith("--config.l2_mode=anytime --config.l2=0.3 ")
    # The probe peaks near half its labels, far below relation 1's fit bound without label
    # noise (90%): the suggestion stands, with a warning.
    assert stored["fit_threshold"] == pytest.approx(0.9)
    assert stored["highest_train_accuracy"] < 0.9
    assert stored["fits_training_labels"] is False
    assert stored["warning"] == probe.underfitting_warning(stored["highest_train_accuracy"], 0.9)


@pytest.mark.slow
def test_the_command_line_prints_the_suggestion_and_the_underfitting_warning(tmp_path):
    # The probe of test_suggestion_follows_from_the_probe, through the command line.
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.suggest_l2",
            "--config=experiments/configs/mlp_digits.py",
            "--config.model_options.widths=(32, 32)",
            "--budget_steps=10000",
            "--probe_l2=0.3",
            "--evals=20",
            f"--workdir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    record = json.loads((tmp_path / "suggestion.json").read_text())
    lines = completed.stdout.splitlines()
    assert f"Suggested λ for 10000 steps: {record['suggested_l2']:.3g}," in completed.stdout
    assert lines[-1] == f"Warning: {record['warning']}"


@pytest.mark.slow
def test_probe_still_rising_at_its_end_suggests_no_l2(tmp_path):
    # λ = 1e-3: 1/(λη) = 10,000 steps, so a probe of 0.01/(λη) = 100 steps ends long before
    # L2 acts and its test accuracy is still rising from chance.
    record = probe.suggest(
        small_config(),
        str(tmp_path),
        budget_steps=10_000,
        probe_l2=1e-3,
        probe_length=0.01,
        evals=20,
    )
    stored = json.loads((tmp_path / "suggestion.json").read_text())
    assert record["probe_steps"] == 100
    assert record["clear_peak"] is False and stored["clear_peak"] is False
    assert record["c"] is None and record["suggested_l2"] is None
    assert stored["c"] is None and stored["suggested_l2"] is None
    # Why: the maximum is late in the run (at or after 80% of it, `Peak.is_clear`).
    peak = record["probe"]
    assert peak["peak_fraction"] == pytest.approx(peak["t_star"] / 100)
    assert peak["peak_fraction"] >= 0.8
    assert record["hint"] == stored["hint"]
    assert record["hint"].endswith("Try a larger --probe_l2 or a longer --probe_length.")


@pytest.mark.parametrize(
    ("budget", "probe_l2", "probe_length", "evals", "message"),
    [
        (0, 0.1, 3.0, 20, "budget_steps must be"),
        (100, -1.0, 3.0, 20, "probe_l2 must be"),
        (
            100,
            1e-12,
            3.0,
            20,
            "probe_l2=1e-12 with probe_length=3 gives a probe of 3e+13 steps, more",
        ),
        # η/(1−μ) = 0.1: from λ = 10 on, the L2 step alone zeroes or flips the weights.
        (
            100,
            10.0,
            3.0,
            20,
            "probe_l2=10 times the effective learning rate η/(1−μ)=0.1 is 1 ≥ 1: each step's L2 "
            "term alone would zero or flip the weights; use probe_l2 < 10",
        ),
        (
            100,
            25.0,
            3.0,
            20,
            "probe_l2=25 times the effective learning rate η/(1−μ)=0.1 is 2.5 ≥ 1",
        ),
        # 3/(5·0.1) = 6 steps cannot hold 20 evaluations.
        (
            100,
            5.0,
            3.0,
            20,
            "probe_l2=5 with probe_length=3 gives a probe of 6 steps, fewer than its evals=20 "
            "evaluations: lower probe_l2, lengthen probe_length or lower evals",
        ),
        (100, 0.3, 0.01, 20, "gives a probe of 1 steps, fewer than its evals=20 evaluations"),
        (
            100,
            0.1,
            3.0,
            5,
            "evals must be an integer ≥ 10, got 5",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors(
    budget, probe_l2, probe_length, evals, message, tmp_path
):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        probe.suggest(small_config(), str(tmp_path), budget, probe_l2, probe_length, evals)
    assert "\n" not in str(error.value)
    assert not os.listdir(tmp_path)


def test_bad_config_or_workdir_is_a_one_line_error_before_the_probe(tmp_path):
    config = small_config()
    config.lr = 0.0
    with pytest.raises(ValueError, match=r"^config\.lr must be finite and > 0, got 0\.0$"):
        probe.suggest(config, str(tmp_path), 100, 0.1, 3.0, 20)
    assert not os.listdir(tmp_path)
    (tmp_path / "taken").write_text("kept")
    with pytest.raises(ValueError, match=r"^workdir '.*taken' is a file: it must be a folder"):
        probe.suggest(small_config(), str(tmp_path / "taken"), 100, 0.1, 3.0, 20)
    assert os.listdir(tmp_path) == ["taken"]


@pytest.mark.slow
def test_a_probe_of_other_settings_is_kept_unless_overwrite(tmp_path):
    config = small_config()
    probe.suggest(config, str(tmp_path), 10_000, 0.3, 3.0, 10)
    first = (tmp_path / "suggestion.json").read_text()
    with pytest.raises(ValueError, match="--overwrite"):
        probe.suggest(config, str(tmp_path), 10_000, 0.6, 3.0, 10)
    assert (tmp_path / "suggestion.json").read_text() == first
    record = probe.suggest(config, str(tmp_path), 10_000, 0.6, 3.0, 10, overwrite=True)
    assert record["probe_l2"] == 0.6


def noisy_config():
    """The default reproduction's setup (η = 0.5, where a probe at λ = 3e-3 peaks), narrower."""
    config = mlp_digits_noisy.get_config()
    config.model_options.widths = (64, 64)
    return config


@pytest.mark.slow
def test_without_probe_l2_the_search_lowers_l2_until_a_clear_peak(tmp_path):
    record = probe.suggest(noisy_config(), str(tmp_path), budget_steps=30_000)
    tried = record["tried"]
    # λη from 0.05 (3/evals: 60 steps) down by 3 until the probe peaks; every λ before the
    # last one showed no clear peak, and together they stay within 10% of the budget.
    assert [t["probe_l2"] for t in tried] == pytest.approx([0.1 / 3**k for k in range(len(tried))])
    assert [t["clear_peak"] for t in tried] == [False] * (len(tried) - 1) + [True]
    assert record["probe_l2_searched"] is True and record["probe_l2"] == tried[-1]["probe_l2"]
    assert sum(t["probe_steps"] for t in tried) <= 3_000
    assert record["compute_fraction"] == pytest.approx(
        sum(t["probe_steps"] for t in tried) / 30_000
    )
    # The clear peak is relation 1's: c = t*·λη of order 1, and λ = c/(ηT).
    assert 0.3 < record["c"] < 3
    # λ = κ·c/(ηT), κ from the committed calibration.
    kappa = probe.calibration()["kappa"]
    assert record["suggested_l2"] == pytest.approx(kappa * record["c"] / (0.5 * 30_000))
    stored = json.loads((tmp_path / "suggestion.json").read_text())
    assert stored["tried"] == tried
    assert os.path.getsize(tmp_path / "probe.png") > 0


@pytest.mark.slow
def test_a_search_out_of_budget_suggests_nothing_and_says_what_to_raise(tmp_path):
    # 10% of 2000 steps holds the first probe (60 steps) only, too large a λ to learn.
    record = probe.suggest(noisy_config(), str(tmp_path), budget_steps=2_000)
    assert [t["probe_steps"] for t in record["tried"]] == [60]
    assert record["clear_peak"] is False and record["suggested_l2"] is None
    assert record["hint"] == (
        "No probe showed a clear peak within max_probe_steps=200 (λ = 0.1 tried); the next "
        "probe, at λ = 0.0333, would take 180 steps more: raise --max_probe_steps (or "
        "--budget_steps), or give --probe_l2."
    )


def test_a_search_budget_below_its_first_probe_is_a_one_line_error(tmp_path):
    message = (
        "max_probe_steps must be ≥ 60 (the first probe of the search, λ = 0.1), got 59: raise "
        "--max_probe_steps or --budget_steps, or give --probe_l2"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        probe.suggest(noisy_config(), str(tmp_path), budget_steps=2_000, max_probe_steps=59)
    assert not os.listdir(tmp_path)
