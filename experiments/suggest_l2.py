r"""Suggests λ for a training budget from one cheap large-λ probe run (the paper's recipe).

  python -m experiments.suggest_l2 --config=experiments/configs/mlp_digits.py \
      --budget_steps=20000 --workdir=/tmp/suggest --probe_l2=0.2 [--probe_length=3]

Relation 1 says test accuracy peaks at t* ≈ c/(λη), so a run at a large λ peaks early:
training the config once at `--probe_l2` (fixed, coupled L2, constant learning rate) for
`probe_length/(λη)` steps measures c = t*·λ·η, and relation 3 turns it into
λ_opt = c/(η·T) for a budget of T steps. η is the config's effective learning rate
η/(1−μ) under momentum. The probe goes through the trainer (`l2reg.train`), so any trainer
config with SGD or momentum works (not Adam: the relations are stated for SGD), and it
resumes from its checkpoints when rerun.

The default `--probe_l2=0.02` is the authors' probe for WRN-28-10 on CIFAR-10. The probe must
be large for the config at hand: on `mlp_digits` (η/(1−μ) = 0.1) a probe at 0.02 still rises at
the end of its 1,500 steps and no λ is suggested, while at 0.2 it peaks at step 42 (c = 0.84)
and the suggestion for 20,000 steps is λ = 0.00042.

The probe must be meaningful before it runs: λ·η/(1−μ) < 1 (at 1 or more, each step's L2
term alone, θ ← (1 − λη)θ, zeroes or flips the weights), and at least `--evals` steps long,
with `--evals` ≥ 10, so that each evaluation falls on its own step and the curve can show a
peak and a fall after it.

Writes `workdir/suggestion.json` and `workdir/probe.png` (the probe's test accuracy with t*
marked). When the probe's curve has no clear peak (its maximum late in the run, or no fall
after it), t* would only echo the run length: the tool says so, suggests no λ, and says what
to change, which depends on where the curve peaked (`no_peak_hint`).
"""

import json
import os
import sys

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from l2reg import checks, files, relations, sweep, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Trainer config file (experiments/configs/*.py).", lock_config=False
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the probe run and the suggestion.")
_BUDGET = flags.DEFINE_integer("budget_steps", None, "Training budget T, in steps.")
_PROBE_L2 = flags.DEFINE_float("probe_l2", 0.02, "λ of the probe run (large: it peaks early).")
_PROBE_LENGTH = flags.DEFINE_float(
    "probe_length", 3.0, "Probe length in units of 1/(λη); t* ≈ c/(λη) must fall well inside."
)
# The fewest test evaluations of a probe whose curve can show a peak and a fall after it.
MIN_EVALS = 10
_EVALS = flags.DEFINE_integer(
    "evals",
    60,
    f"Test evaluations during the probe (≥ {MIN_EVALS}; the probe needs as many steps).",
)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Discard a probe of other settings already in --workdir."
)
flags.mark_flags_as_required(["config", "workdir", "budget_steps"])


def effective_lr(config) -> float:
    """η/(1−μ) for momentum SGD, η otherwise (the η of the relations)."""
    momentum = config.momentum if config.optimizer == "momentum" else 0.0
    return relations.effective_lr(config.lr, momentum)


def probe_steps(probe_l2: float, probe_length: float, lr: float) -> int:
    """The probe's length in steps, probe_length/(λη) rounded (at least 1); η effective."""
    return max(1, round(probe_length / (probe_l2 * lr)))


def probe_config(config, probe_l2: float, probe_length: float, evals: int):
    """The config of the probe: fixed coupled λ = probe_l2, constant η, probe_length/(λη)."""
    probe = config.copy_and_resolve_references()
    lr = effective_lr(config)
    probe.l2_mode, probe.l2, probe.l2_placement = "fixed", probe_l2, "coupled"
    probe.lr_schedule = "constant"
    probe.steps = probe_steps(probe_l2, probe_length, lr)
    probe.eval_every = max(1, probe.steps // evals)
    probe.checkpoint_every = probe.steps
    return probe


def suggest(
    config,
    workdir: str,
    budget_steps: int,
    probe_l2: float,
    probe_length: float,
    evals: int,
    *,
    overwrite: bool = False,
) -> dict:
    """Runs (or resumes) the probe and returns the suggestion record; writes it and the plot.

    A probe of other settings already in `workdir` is an error, or discarded with `overwrite`.
    """
    if budget_steps is None or budget_steps < 1:
        raise ValueError(f"budget_steps must be a positive number of steps, got {budget_steps}.")
    if evals is None or evals < MIN_EVALS:
        raise ValueError(
            f"evals must be ≥ {MIN_EVALS} (fewer cannot show a peak and a fall after it), "
            f"got {evals}."
        )
    for name, value in (("probe_l2", probe_l2), ("probe_length", probe_length)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be finite and > 0, got {value}.")
    train.validate_config(config, jax.device_count())
    if config.optimizer == "adam":
        raise ValueError("The relations hold for SGD (optimizer 'sgd' or 'momentum'), not 'adam'.")
    lr = effective_lr(config)
    if probe_l2 * lr >= 1:
        raise ValueError(
            f"probe_l2={probe_l2:g} times the effective learning rate η/(1−μ)={lr:g} is "
            f"{probe_l2 * lr:g} ≥ 1: each step's L2 term alone would zero or flip the weights; "
            f"use probe_l2 < {1 / lr:g}."
        )
    steps = probe_length / (probe_l2 * lr)
    if steps > checks.INT32_MAX:
        raise ValueError(
            f"probe_l2={probe_l2:g} with probe_length={probe_length:g} gives a probe of "
            f"{steps:.3g} steps, more than {checks.INT32_MAX}: raise probe_l2."
        )
    if probe_steps(probe_l2, probe_length, lr) < evals:
        raise ValueError(
            f"probe_l2={probe_l2:g} with probe_length={probe_length:g} gives a probe of "
            f"{probe_steps(probe_l2, probe_length, lr)} steps, fewer than its evals={evals} "
            "evaluations: lower probe_l2, lengthen probe_length or lower evals."
        )
    files.check_folder(workdir)
    probe = probe_config(config, probe_l2, probe_length, evals)
    probe_dir = os.path.join(workdir, "probe")
    train.train_and_evaluate(probe, probe_dir, overwrite=overwrite)
    lines = train.read_metrics(probe_dir)
    curve = sweep.Curves(
        steps=np.array([line["step"] for line in lines]),
        test_accuracy=np.array([line["test_accuracy"] for line in lines]),
        test_loss=np.array([line["test_loss"] for line in lines]),
        l2=np.array([line["l2"] for line in lines]),
        weight_norm=np.array([line["weight_norm"] for line in lines]),
    )
    shape = relations.peak_shape(curve.steps, curve.test_accuracy)
    clear = shape.is_clear()
    c = relations.c_from(shape.t_star, probe_l2, lr)
    peak = shape._asdict()
    record = {
        "config": config.to_dict() if hasattr(config, "to_dict") else dict(config),
        "effective_lr": lr,
        "probe_l2": probe_l2,
        "probe_steps": probe.steps,
        "probe": peak,
        "clear_peak": clear,
        "c": c if clear else None,
        "budget_steps": budget_steps,
        "suggested_l2": relations.predict_l2(c, lr, budget_steps) if clear else None,
        "compute_fraction": probe.steps / budget_steps,
        "hint": None if clear else no_peak_hint(shape, float(curve.steps[0])),
    }
    _plot(curve, peak, os.path.join(workdir, "probe.png"))
    files.write_atomic(
        os.path.join(workdir, "suggestion.json"), json.dumps(record, indent=1, default=str)
    )
    return record


def no_peak_hint(peak: relations.Peak, first_step: float) -> str:
    """What to change when the probe's curve `peak` has no clear peak, by where it peaked.

    Args:
      peak: the probe's `relations.Peak` (not `is_clear()`).
      first_step: the step of the probe's first evaluation.
    """
    if peak.t_star <= first_step:
        return (
            "Its best accuracy is at its first evaluation: the probe's λ is too large for the "
            "network to learn before L2 shrinks it. Try a smaller --probe_l2."
        )
    if not peak.is_clear(min_drop=0.0):  # the maximum lies late in the run
        return (
            "It is still rising at its end: t* ≈ c/(λη) lies beyond the probe. Try a larger "
            "--probe_l2 or a longer --probe_length."
        )
    return (
        "It is flat after its peak: the fall that marks t* has not come within the probe. Try a "
        "longer --probe_length (or a larger --probe_l2)."
    )


def _plot(curve: sweep.Curves, peak: dict, path: str) -> None:
    plt = files.pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    axis.plot(curve.steps, curve.test_accuracy, "o-", markersize=3, label="probe")
    smoothed = relations.smooth_curve(curve.steps, curve.test_accuracy, 0.1)
    axis.plot(curve.steps, smoothed, "k:", label="smoothed")
    axis.axvspan(peak["low"], peak["high"], color="C1", alpha=0.2)
    axis.axvline(peak["t_star"], color="C1", label=f"t* = {peak['t_star']:.0f}")
    axis.set(xscale="log", xlabel="step", ylabel="test accuracy")
    axis.legend(fontsize=8)
    files.save_figure(figure, path)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        record = suggest(
            _CONFIG.value,
            _WORKDIR.value,
            _BUDGET.value,
            _PROBE_L2.value,
            _PROBE_LENGTH.value,
            _EVALS.value,
            overwrite=_OVERWRITE.value,
        )
    except (ValueError, TypeError, train.NonFiniteLossError) as error:
        sys.exit(f"suggest_l2: {' '.join(str(error).split())}")
    peak = record["probe"]
    if record["clear_peak"]:
        print(
            f"Probe λ = {record['probe_l2']:g}, η = {record['effective_lr']:g}: t* = "
            f"{peak['t_star']:.0f} steps (peak {peak['peak_accuracy']:.3f}), c = "
            f"{record['c']:.3g}.\nSuggested λ for {record['budget_steps']} steps: "
            f"{record['suggested_l2']:.3g}  (probe cost {100 * record['compute_fraction']:.1f}% "
            "of the budget)."
        )
    else:
        print(
            f"The probe's test accuracy has no clear peak (maximum at {peak['t_star']:.0f} of "
            f"{record['probe_steps']} steps, falling {peak['drop_after_peak']:.3f} after it), "
            f"so relation 1 gives no t* here and no λ is suggested. {record['hint']} See "
            "probe.png."
        )
    logging.info("Wrote %s", os.path.join(_WORKDIR.value, "suggestion.json"))


if __name__ == "__main__":
    app.run(main)
