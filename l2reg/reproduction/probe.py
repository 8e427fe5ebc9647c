"""Predicting λ for a budget from one cheap large-λ probe run (the paper's relation 3).

Relation 1 says test accuracy peaks at t* ≈ c/(λη), so a run at a large λ peaks early: one run
at `probe_l2` (fixed, coupled L2, constant learning rate) for `probe_length/(λη)` steps
measures c = t*·λ·η, and relation 3 turns it into λ_opt = c/(η·T) for a budget of T steps. η is
the effective learning rate η/(1−μ) under momentum μ. `suggest` runs the probe through the
trainer (`experiments/suggest_l2.py` is its command line); the reproduction's part 3 runs the
same probe (`probe_run`) in a sweep and reads it with the same `measure`.

A probe's λ must suit the network: too large and it cannot learn before L2 shrinks it, too small
and t* lies beyond a cheap probe. Without a given λ, `suggest` searches for one (`search_l2s`):
from a large λη down by a factor 3 at a time, until a probe shows a clear peak, all the probes
together within a compute budget (by default 10% of the training budget T).
"""

import json
import math
import os
import pathlib

import ml_collections
import numpy as np
from absl import logging

from l2reg import checks, files, relations
from l2reg.reproduction import relation1
from l2reg.training import recipe
from l2reg.training.rundir import Curves
from l2reg.training.sweep import Run

# The fewest test evaluations of a probe whose curve can show a peak and a fall after it.
MIN_EVALS = 10
# A probe's evaluations by default, evenly spaced over it.
EVALS = 60
# The search for a probe λ: the largest λη it starts from (the first probe is shorter when
# `evals` allows it: `search_l2s`), the factor it lowers λ by after a probe without a clear
# peak, and the fraction of the budget T its probes may take in all by default.
SEARCH_START_L2_LR = 0.5
SEARCH_FACTOR = 3.0
SEARCH_COMPUTE_FRACTION = 0.1


def effective_lr(config: ml_collections.ConfigDict) -> float:
    """η/(1−μ) of `config` when λ goes through momentum μ, η otherwise (the η of the relations)."""
    return relations.effective_lr(config.lr, recipe.effective_momentum(config))


def probe_lr(config: ml_collections.ConfigDict) -> float:
    """The effective η of `config`'s probe, which adds L2 to the loss (coupled) whatever the
    config's own placement: η/(1−μ) under momentum μ."""
    coupled = config.copy_and_resolve_references()
    coupled.l2_placement = "coupled"
    return effective_lr(coupled)


def probe_steps(probe_l2: float, probe_length: float, lr: float) -> int:
    """The probe's length in steps, probe_length/(λη) rounded (at least 1); η effective."""
    return max(1, round(probe_length / (probe_l2 * lr)))


def check(config: ml_collections.ConfigDict, probe_l2: float, probe_length: float, evals: int):
    """Raises a one-line ValueError unless the probe is meaningful before it runs: SGD (the
    relations' optimizer), λ·η/(1−μ) < 1 (at 1 or more each step's L2 term alone zeroes or flips
    the weights), and at least `evals` ≥ MIN_EVALS steps long, so that each evaluation falls on
    its own step and the curve can show a peak and a fall after it."""
    checks.integer("evals", evals, minimum=MIN_EVALS)
    for name, value in (("probe_l2", probe_l2), ("probe_length", probe_length)):
        checks.number(name, value, lambda x: math.isfinite(x) and x > 0, "finite and > 0")
    if config.optimizer == "adam":
        raise ValueError(
            "config.optimizer must be 'sgd' or 'momentum' (the relations hold for SGD), got 'adam'"
        )
    lr = probe_lr(config)
    if probe_l2 * lr >= 1:
        raise ValueError(
            f"probe_l2={probe_l2:g} times the effective learning rate η/(1−μ)={lr:g} is "
            f"{probe_l2 * lr:g} ≥ 1: each step's L2 term alone would zero or flip the weights; "
            f"use probe_l2 < {1 / lr:g}"
        )
    steps = probe_length / (probe_l2 * lr)
    if steps > checks.INT32_MAX:
        raise ValueError(
            f"probe_l2={probe_l2:g} with probe_length={probe_length:g} gives a probe of "
            f"{steps:.3g} steps, more than {checks.INT32_MAX}: raise probe_l2"
        )
    if probe_steps(probe_l2, probe_length, lr) < evals:
        raise ValueError(
            f"probe_l2={probe_l2:g} with probe_length={probe_length:g} gives a probe of "
            f"{probe_steps(probe_l2, probe_length, lr)} steps, fewer than its evals={evals} "
            "evaluations: lower probe_l2, lengthen probe_length or lower evals"
        )


def probe_run(config: ml_collections.ConfigDict, probe_l2: float, probe_length: float, seed: int):
    """The probe as a run of `config`: fixed λ = probe_l2, constant η, probe_length/(λη) steps
    (η the effective η/(1−μ) of coupled L2, which the probe's must be: `probe_config`)."""
    steps = probe_steps(probe_l2, probe_length, probe_lr(config))
    return Run(probe_l2, config.lr, seed, steps, l2_mode="fixed", lr_schedule="constant")


def probe_config(
    config: ml_collections.ConfigDict, probe_l2: float, probe_length: float, evals: int
) -> ml_collections.ConfigDict:
    """The trainer config of the probe (`probe_run`, coupled L2), evaluated `evals` times."""
    probe = probe_run(config, probe_l2, probe_length, config.seed).config(config)
    probe.l2_placement = "coupled"  # the relations' L2 is added to the loss
    probe.eval_every = max(1, probe.steps // evals)
    probe.checkpoint_every = probe.steps
    return probe


def selection_accuracy(curve: Curves) -> tuple[np.ndarray, str]:
    """The accuracy choices are made on: validation when the run has a validation split,
    test otherwise; and which one it was."""
    if np.any(np.isfinite(curve.validation_accuracy)):
        return np.asarray(curve.validation_accuracy), "validation"
    return np.asarray(curve.test_accuracy), "test"


def measure(curve: Curves, probe_l2: float, lr: float, label_noise: float | None = None) -> dict:
    """What a probe's curve says, read on its validation accuracy when it has a validation
    split (`selection_accuracy`, named as 'split'): its peak (`relations.Peak` as a dict),
    whether it is clear, with a clear one why it falls (`relations.fall_cause`: 'fall' is 'l2'
    or 'overfitting', 'train_accuracy_rise' the training accuracy's change after t*), c = t*·λη
    (meaningful only with a clear peak: without one t* only echoes the run length) and, when
    it cannot predict λ (`predicts`), what to change or do instead (`hint`). `lr` is the
    effective η.

    With the training labels' `label_noise` fraction it also applies relation 1's rule (a) to
    the probe: 'fits_training_labels' is whether its highest training accuracy
    ('highest_train_accuracy') reaches `relation1.fit_threshold(label_noise)`
    ('fit_threshold'), and 'warning' (`underfitting_warning`) says what it means when it does
    not. It warns rather than withholds λ: on the calibration setup the probe's highest
    training accuracy (73–75%) lies only 3–5 points above the bound.
    """
    accuracy, split = selection_accuracy(curve)
    shape = relations.peak_shape(curve.steps, accuracy)
    clear = bool(shape.is_clear())
    fall, rise = (
        relations.fall_cause(curve.steps, curve.train_accuracy, shape.t_star)
        if clear
        else (None, None)
    )
    fit = {}
    if label_noise is not None:
        highest, threshold, fits = relation1.training_fit(curve, label_noise)
        fit = {
            "highest_train_accuracy": highest,
            "fit_threshold": threshold,
            "fits_training_labels": fits,
            "warning": None if fits else underfitting_warning(highest, threshold),
        }
    hint = None
    if not clear:
        hint = no_peak_hint(shape, float(curve.steps[0]))
    elif fall == "overfitting":
        hint = overfitting_hint(rise)
    return {
        "split": split,
        "probe": shape._asdict(),
        "clear_peak": clear,
        "fall": fall,
        "train_accuracy_rise": None if fall is None else rise,
        "c": float(relations.c_from(shape.t_star, probe_l2, lr)),
        **fit,
        "hint": hint,
    }


def predicts(measured: dict) -> bool:
    """Whether a probe's `measure`ment can predict λ: a clear peak whose fall is L2's
    (`relations.fall_cause`), the fall relation 1 describes."""
    return measured["clear_peak"] and measured["fall"] == "l2"


def overfitting_hint(rise: float) -> str:
    """Why a probe whose fall is overfitting gives no λ, and what to do instead."""
    return (
        f"Its accuracy fell after its peak while its training accuracy rose by "
        f"{100 * rise:.1f} points: the network fits its training labels' noise there, it is "
        "not shrunk by L2, so relation 3 does not apply. On the one such setup measured "
        "(mlp_digits_ce) λ_opt grew with the budget and the prediction lost 7-9 points. "
        "Choose λ with a grid at your budget."
    )


def underfitting_warning(highest: float | None, threshold: float) -> str:
    """What a probe below relation 1's fit bound means for the λ it gives."""
    return (
        f"The probe's highest training accuracy ({_percent(highest)}) is below relation 1's "
        f"fit bound ({_percent(threshold)}: 1 − label noise − {100 * relation1.FIT_MARGIN:g} "
        "points), so the network does not fit its training labels here, a regime the "
        "relations do not describe. On the one such setup measured (mnist1d_mse_ntk, whose "
        "probes reached 24% and whose λ = 0 runs also underfit) the suggested λ lost up to 1.5 "
        "points against a grid search. Check that a λ = 0 run fits its training labels, or "
        "choose λ with a grid at your budget."
    )


def suggestion(measured: dict, lr: float, budget_steps: int) -> float | None:
    """λ_opt = c/(η·T) for the budget, or None without a clear probe peak whose fall is L2's
    (`predicts`)."""
    if not predicts(measured):
        return None
    return float(relations.predict_l2(measured["c"], lr, budget_steps))


# The calibration `suggest` applies: `selection.calibration_record` of the committed default
# reproduction, whose held-out setups were measured with its κ
# (experiments/results/reproduce_default/calibration.json, copied here).
CALIBRATION_FILE = pathlib.Path(__file__).with_name("calibration.json")


def calibration() -> dict:
    """The committed calibration record: κ, its range, and what the corrected λ and the
    schedules cost on each setup they were measured on."""
    return json.loads(CALIBRATION_FILE.read_text())


def calibrated(measured: dict, probe_l2: float, lr: float, budget_steps: int, record: dict):
    """What the probe and the calibration `record` suggest for a budget of T steps: λ =
    κ·c/(ηT) with its range from κ's, and the schedules as trainer config fields (the anytime
    schedule with c' = κ·c from the probe's λ; AutoL2 from the probe's λ with that λ as its
    floor); None without a clear probe peak."""
    uncorrected = suggestion(measured, lr, budget_steps)
    if uncorrected is None:
        return None
    kappa = record["kappa"]
    low, high = record["kappa_range"]
    return {
        "kappa": kappa,
        "uncorrected_l2": uncorrected,
        "suggested_l2": kappa * uncorrected,
        "l2_range": [low * uncorrected, high * uncorrected],
        "schedules": {
            "anytime": {"l2_mode": "anytime", "l2": probe_l2, "anytime_c": kappa * measured["c"]},
            "autol2": {
                "l2_mode": "autol2",
                "l2": max(probe_l2, kappa * uncorrected),
                "autol2.min_l2": kappa * uncorrected,
            },
        },
        "calibration": record,
    }


def expected_cost(record: dict, what: str) -> str:
    """One line per measured setup: what the corrected λ ('prediction') or a suggested schedule
    ('anytime', 'autol2') lost against a grid search's envelope, in points, at each budget."""
    label = "the suggested λ" if what == "prediction" else f"the {what} schedule"
    lines = [
        f"Measured cost of {label} against a grid search (test accuracy points, mean over"
        f" replicas; from the {record['preset']} preset):"
    ]
    for setup in record["setups"]:
        values = (
            setup["prediction_loss"]
            if what == "prediction"
            else [None if v is None else -v for v in setup["schedules"][what]]
        )
        by_budget = ", ".join(
            f"T = {t}: {'—' if v is None else f'{100 * v:+.1f}'}"
            for t, v in zip(setup["budgets"], values, strict=True)
        )
        lines.append(
            f"  {setup['setup']} ({setup['role']}, {setup['replicas']} replicas): {by_budget}"
        )
    return "\n".join(lines)


def fragment(fields: dict) -> str:
    """Trainer config fields as command-line overrides: '--config.l2_mode=anytime …'."""
    return " ".join(
        f"--config.{name}={value:.4g}" if isinstance(value, float) else f"--config.{name}={value}"
        for name, value in fields.items()
    )


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


def search_l2s(lr: float, probe_length: float, evals: int, max_probe_steps: int) -> list[float]:
    """The probe λ a search tries, in order, as many as fit in `max_probe_steps` in all.

    The first has λη = min(SEARCH_START_L2_LR, probe_length/evals), the largest whose probe
    lasts at least `evals` steps; each next one is SEARCH_FACTOR times smaller (its probe as
    many times longer). `lr` is the effective η of the probe (`probe_lr`).
    """
    l2_lr = min(SEARCH_START_L2_LR, probe_length / evals)
    l2s, total = [], 0
    while True:
        steps = probe_steps(l2_lr / lr, probe_length, lr)
        if total + steps > max_probe_steps or steps > checks.INT32_MAX:
            return l2s
        l2s.append(l2_lr / lr)
        total += steps
        l2_lr /= SEARCH_FACTOR


def suggest(
    config: ml_collections.ConfigDict,
    workdir: str,
    budget_steps: int,
    probe_l2: float | None = None,
    probe_length: float = 3.0,
    evals: int = EVALS,
    *,
    max_probe_steps: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Probes `config` through the trainer and suggests λ for a budget of `budget_steps`.

    With `probe_l2`, one probe at that λ in `workdir/probe`; without, a search (`search_l2s`)
    from a large λ down until a probe shows a clear peak, each in `workdir/probes/{λ}`, within
    `max_probe_steps` steps in all (default: SEARCH_COMPUTE_FRACTION of the budget). Finished
    probes are reused when rerun. Every check runs before the first probe trains.

    Writes `workdir/suggestion.json` (the record returned) and `workdir/probe.png`.

    Returns:
      The record: the config, the effective η, the probe used (probe_l2, probe_steps, its
      `measure`ment: probe, clear_peak, fall, train_accuracy_rise, c (None without a clear
      peak), hint, and relation 1's rule (a) on the probe: highest_train_accuracy,
      fit_threshold (from the config's label noise), fits_training_labels and warning), every
      probe `tried` (λ, steps, clear_peak, t_star, peak_accuracy, outcome), budget_steps,
      suggested_l2 (None unless the probe `predicts`: a clear peak whose fall is L2's) and
      compute_fraction (all probes' steps / T).
    """
    from l2reg import training
    from l2reg.training import loop

    checks.integer("budget_steps", budget_steps)
    checks.integer("max_probe_steps", max_probe_steps, none_ok=True)
    training.validate(config)
    lr = probe_lr(config)
    label_noise = relation1.label_noise(config)
    if probe_l2 is not None:
        l2s = [probe_l2]
    else:
        if max_probe_steps is None:
            max_probe_steps = max(1, round(SEARCH_COMPUTE_FRACTION * budget_steps))
        checks.integer("evals", evals, minimum=MIN_EVALS)
        checks.number(
            "probe_length", probe_length, lambda x: math.isfinite(x) and x > 0, "finite and > 0"
        )
        l2s = search_l2s(lr, probe_length, evals, max_probe_steps)
        if not l2s:
            first = min(SEARCH_START_L2_LR, probe_length / evals) / lr
            raise ValueError(
                f"max_probe_steps must be ≥ {probe_steps(first, probe_length, lr)} (the first "
                f"probe of the search, λ = {first:.3g}), got {max_probe_steps}: raise "
                "--max_probe_steps or --budget_steps, or give --probe_l2"
            )
    for l2 in l2s:
        check(config, l2, probe_length, evals)
    files.check_folder(workdir)
    tried = []
    for l2 in l2s:
        run_config = probe_config(config, l2, probe_length, evals)
        folder = (
            os.path.join(workdir, "probe")
            if probe_l2 is not None
            else os.path.join(workdir, "probes", f"l2={l2:.4g}")
        )
        state = training.train_and_evaluate(run_config, folder, overwrite=overwrite)
        loop.require_finished(state, run_config, folder)
        curve = training.read_curves(folder)
        measured = measure(curve, l2, lr, label_noise)
        peak = measured["probe"]
        outcome = (
            f"clear peak at t* = {peak['t_star']:.0f} (accuracy {peak['peak_accuracy']:.3f}), "
            f"c = {measured['c']:.3g}"
            if measured["clear_peak"]
            else _outcome(relations.Peak(**peak), float(curve.steps[0]))
        )
        if measured["fall"] == "overfitting":
            outcome += (
                f", but an overfitting fall (training accuracy "
                f"+{100 * measured['train_accuracy_rise']:.1f} points after t*)"
            )
        if not measured["fits_training_labels"]:
            outcome += (
                f"; it does not fit its training labels (highest training accuracy "
                f"{_percent(measured['highest_train_accuracy'])} against "
                f"{_percent(measured['fit_threshold'])})"
            )
        tried.append(
            {
                "probe_l2": l2,
                "probe_steps": run_config.steps,
                "clear_peak": measured["clear_peak"],
                "t_star": peak["t_star"],
                "peak_accuracy": peak["peak_accuracy"],
                "outcome": outcome,
                "curve": curve,
            }
        )
        logging.info(
            "probe λ = %.3g (λη = %.3g, %d steps): %s", l2, l2 * lr, run_config.steps, outcome
        )
        if measured["clear_peak"]:
            break
    probe_steps_total = sum(t["probe_steps"] for t in tried)
    if probe_l2 is None and not measured["clear_peak"]:
        measured["hint"] = (
            f"No probe showed a clear peak within max_probe_steps={max_probe_steps} "
            f"({_tried(l2s)}); the next probe, at λ = "
            f"{l2s[-1] / SEARCH_FACTOR:.3g}, would take "
            f"{probe_steps(l2s[-1] / SEARCH_FACTOR, probe_length, lr)} steps more: raise "
            "--max_probe_steps (or --budget_steps), or give --probe_l2."
        )
    record = {
        "config": config.to_dict(),
        "effective_lr": lr,
        "probe_l2": tried[-1]["probe_l2"],
        "probe_l2_searched": probe_l2 is None,
        "probe_steps": tried[-1]["probe_steps"],
        **measured,
        "c": measured["c"] if measured["clear_peak"] else None,
        "tried": [{k: v for k, v in t.items() if k != "curve"} for t in tried],
        "max_probe_steps": max_probe_steps,
        "budget_steps": budget_steps,
        "compute_fraction": probe_steps_total / budget_steps,
        # suggested_l2 (κ·c/(ηT)), uncorrected_l2 (c/(ηT)), l2_range, kappa, schedules and the
        # calibration they come from; suggested_l2 None unless the probe `predicts`.
        **(
            calibrated(measured, tried[-1]["probe_l2"], lr, budget_steps, calibration())
            or {"suggested_l2": None}
        ),
    }
    plot(
        [(t["probe_l2"], t["curve"]) for t in tried],
        measured,
        os.path.join(workdir, "probe.png"),
    )
    files.write_atomic(
        os.path.join(workdir, "suggestion.json"), json.dumps(record, indent=1, default=str)
    )
    return record


def _percent(fraction: float | None) -> str:
    return "none" if fraction is None else f"{100 * fraction:.1f}%"


def _tried(l2s: list[float]) -> str:
    if len(l2s) == 1:
        return f"λ = {l2s[0]:.3g} tried"
    return f"λ from {l2s[0]:.3g} down to {l2s[-1]:.3g} tried"


def _outcome(peak: relations.Peak, first_step: float) -> str:
    """A probe without a clear peak, in a few words, by where it peaked (as `no_peak_hint`)."""
    if peak.t_star <= first_step:
        return "no clear peak: best at its first evaluation (λ too large to learn)"
    if not peak.is_clear(min_drop=0.0):
        return f"no clear peak: still rising at its end (accuracy {peak.final_accuracy:.3f})"
    return f"no clear peak: flat after its maximum at step {peak.t_star:.0f}"


def plot(probes: list[tuple[float, Curves]], measured: dict, path: str) -> None:
    """The probes' test accuracy against step: each (λ, curve) of `probes` in the order
    tried, the last one (whose `measure`ment is `measured`) bold and smoothed, with t* and its
    interval marked only when its peak is clear."""
    plt = files.pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.8))
    for l2, curve in probes[:-1]:
        axis.plot(
            curve.steps, curve.test_accuracy, "-", linewidth=1, alpha=0.6, label=f"λ = {l2:.3g}"
        )
    l2, curve = probes[-1]
    axis.plot(
        curve.steps, curve.test_accuracy, "o-", color="C3", markersize=3, label=f"λ = {l2:.3g}"
    )
    smoothed = relations.smooth_curve(curve.steps, curve.test_accuracy, 0.1)
    axis.plot(curve.steps, smoothed, "k:", label="smoothed")
    peak = measured["probe"]
    if measured["clear_peak"]:
        axis.axvspan(peak["low"], peak["high"], color="C1", alpha=0.2)
        axis.axvline(peak["t_star"], color="C1", label=f"t* = {peak['t_star']:.0f}")
        title = f"probe λ = {l2:.3g}: clear peak at t* = {peak['t_star']:.0f}"
        if measured["fall"] == "overfitting":
            title += ", an overfitting fall: no suggestion"
    else:
        title = f"probe λ = {l2:.3g}: no clear peak, so no t* and no suggestion"
    if not measured.get("fits_training_labels", True):
        title += "; it underfits its training labels"
    if len(probes) > 1:
        title += f" ({len(probes)} probes tried, larger λ first)"
    axis.set_title(title, fontsize=9)
    axis.set(xscale="log", xlabel="step", ylabel="test accuracy")
    axis.legend(fontsize=7)
    files.save_figure(figure, path)
