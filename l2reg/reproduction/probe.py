"""Predicting λ for a budget from one cheap large-λ probe run (the paper's relation 3).

Relation 1 says test accuracy peaks at t* ≈ c/(λη), so a run at a large λ peaks early: one run
at `probe_l2` (fixed, coupled L2, constant learning rate) for `probe_length/(λη)` steps
measures c = t*·λ·η, and relation 3 turns it into λ_opt = c/(η·T) for a budget of T steps. η is
the effective learning rate η/(1−μ) under momentum μ. `experiments/suggest_l2.py` runs the probe
through the trainer; the reproduction's part 3 runs the same probe (`probe_run`) in a sweep and
reads it with the same `measure`.
"""

import math

import ml_collections

from l2reg import checks, relations
from l2reg.training import recipe
from l2reg.training.rundir import Curves
from l2reg.training.sweep import Run

# The fewest test evaluations of a probe whose curve can show a peak and a fall after it.
MIN_EVALS = 10


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


def measure(curve: Curves, probe_l2: float, lr: float) -> dict:
    """What a probe's curve says: its peak (`relations.Peak` as a dict), whether it is clear,
    c = t*·λη (meaningful only with a clear peak: without one t* only echoes the run length)
    and, without one, what to change (`no_peak_hint`). `lr` is the effective η."""
    shape = relations.peak_shape(curve.steps, curve.test_accuracy)
    clear = bool(shape.is_clear())
    return {
        "probe": shape._asdict(),
        "clear_peak": clear,
        "c": float(relations.c_from(shape.t_star, probe_l2, lr)),
        "hint": None if clear else no_peak_hint(shape, float(curve.steps[0])),
    }


def suggestion(measured: dict, lr: float, budget_steps: int) -> float | None:
    """λ_opt = c/(η·T) for the budget, or None without a clear probe peak."""
    if not measured["clear_peak"]:
        return None
    return float(relations.predict_l2(measured["c"], lr, budget_steps))


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


def plot(curve: Curves, measured: dict, path: str) -> None:
    """The probe's test accuracy, smoothed, with t* and its interval marked when clear."""
    from l2reg import files

    plt = files.pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    axis.plot(curve.steps, curve.test_accuracy, "o-", markersize=3, label="probe")
    smoothed = relations.smooth_curve(curve.steps, curve.test_accuracy, 0.1)
    axis.plot(curve.steps, smoothed, "k:", label="smoothed")
    peak = measured["probe"]
    if measured["clear_peak"]:
        axis.axvspan(peak["low"], peak["high"], color="C1", alpha=0.2)
        axis.axvline(peak["t_star"], color="C1", label=f"t* = {peak['t_star']:.0f}")
    else:
        axis.set_title("no clear peak: no t*", fontsize=9)
    axis.set(xscale="log", xlabel="step", ylabel="test accuracy")
    axis.legend(fontsize=8)
    files.save_figure(figure, path)
