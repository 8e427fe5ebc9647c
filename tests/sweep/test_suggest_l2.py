"""suggest_l2: the probe runs through the trainer and λ = c/(ηT) follows from its t*."""

import json
import os

import pytest

from experiments import suggest_l2
from experiments.configs import mlp_digits
from l2reg import relations


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
    record = suggest_l2.suggest(
        config, str(tmp_path), budget_steps=10_000, probe_l2=0.3, probe_length=3.0, evals=20
    )
    assert os.path.getsize(tmp_path / "probe.png") > 0
    stored = json.loads((tmp_path / "suggestion.json").read_text())
    assert stored["probe_steps"] == record["probe_steps"] == 100
    peak = record["probe"]
    assert 0 < peak["t_star"] <= record["probe_steps"]
    if record["clear_peak"]:
        c = relations.c_from(peak["t_star"], 0.3, suggest_l2.effective_lr(config))
        assert record["c"] == pytest.approx(c)
        assert record["suggested_l2"] == pytest.approx(c / (record["effective_lr"] * 10_000))
    else:
        assert record["c"] is None and record["suggested_l2"] is None


@pytest.mark.parametrize(
    ("budget", "probe_l2", "message"),
    [(0, 0.1, "budget_steps must be"), (100, -1.0, "probe_l2 must be")],
)
def test_bad_arguments_are_one_line_errors(budget, probe_l2, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        suggest_l2.suggest(small_config(), str(tmp_path), budget, probe_l2, 3.0, 20)
    assert not os.listdir(tmp_path)
