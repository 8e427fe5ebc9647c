"""suggest_l2: the probe runs through the trainer and λ = c/(ηT) follows from its t*."""

import json
import os

import pytest

from experiments import suggest_l2
from experiments.configs import mlp_digits


def small_config():
    config = mlp_digits.get_config()
    config.model_options.widths = (32, 32)
    return config


def test_probe_config_is_fixed_coupled_constant_and_scaled_by_one_over_l2_lr():
    config = small_config()
    config.lr_schedule, config.l2_mode = "cosine", "autol2"
    probe = suggest_l2.probe_config(config, probe_l2=0.05, probe_length=3.0, evals=30)
    lr = suggest_l2.effective_lr(config)
    assert lr == pytest.approx(config.lr / (1 - config.momentum))
    assert (probe.l2_mode, probe.l2, probe.l2_placement) == ("fixed", 0.05, "coupled")
    assert probe.lr_schedule == "constant"
    assert probe.steps == round(3.0 / (0.05 * lr))
    assert probe.eval_every == probe.steps // 30
    assert config.l2_mode == "autol2"  # the caller's config is left alone


@pytest.mark.slow
def test_suggestion_follows_from_the_probe(tmp_path):
    config = small_config()
    # λ = 0.3, η/(1−μ) = 0.01/(1 − 0.9) = 0.1: the probe lasts 3/(0.3·0.1) = 100 steps and,
    # with c of order 1 (relation 1), should peak a third of the way in and then fall.
    record = suggest_l2.suggest(
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
    assert record["suggested_l2"] == stored["suggested_l2"] == pytest.approx(c / (0.1 * 10_000))


@pytest.mark.slow
def test_probe_still_rising_at_its_end_suggests_no_l2(tmp_path):
    # λ = 1e-3: 1/(λη) = 10,000 steps, so a probe of 0.01/(λη) = 100 steps ends long before
    # L2 acts and its test accuracy is still rising from chance.
    record = suggest_l2.suggest(
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


@pytest.mark.parametrize(
    ("budget", "probe_l2", "message"),
    [
        (0, 0.1, "budget_steps must be"),
        (100, -1.0, "probe_l2 must be"),
        (100, 1e-12, r"probe_l2=1e-12 with probe_length=3 gives a probe of 3e\+13 steps, more"),
    ],
)
def test_bad_arguments_are_one_line_errors(budget, probe_l2, message, tmp_path):
    with pytest.raises(ValueError, match=message) as error:
        suggest_l2.suggest(small_config(), str(tmp_path), budget, probe_l2, 3.0, 20)
    assert "\n" not in str(error.value)
    assert not os.listdir(tmp_path)


def test_bad_config_or_workdir_is_a_one_line_error_before_the_probe(tmp_path):
    config = small_config()
    config.lr = 0.0
    with pytest.raises(ValueError, match=r"^config.lr=0.0 is invalid: must be > 0$"):
        suggest_l2.suggest(config, str(tmp_path), 100, 0.1, 3.0, 20)
    assert not os.listdir(tmp_path)
    (tmp_path / "taken").write_text("kept")
    with pytest.raises(ValueError, match=r"^workdir '.*taken' is a file: it must be a folder"):
        suggest_l2.suggest(small_config(), str(tmp_path / "taken"), 100, 0.1, 3.0, 20)
    assert os.listdir(tmp_path) == ["taken"]


@pytest.mark.slow
def test_a_probe_of_other_settings_is_kept_unless_overwrite(tmp_path):
    config = small_config()
    suggest_l2.suggest(config, str(tmp_path), 10_000, 0.3, 3.0, 10)
    first = (tmp_path / "suggestion.json").read_text()
    with pytest.raises(ValueError, match="--overwrite"):
        suggest_l2.suggest(config, str(tmp_path), 10_000, 0.6, 3.0, 10)
    assert (tmp_path / "suggestion.json").read_text() == first
    record = suggest_l2.suggest(config, str(tmp_path), 10_000, 0.6, 3.0, 10, overwrite=True)
    assert record["probe_l2"] == 0.6
