r"""Suggests λ for a training budget from one cheap large-λ probe run, calibrated by measurement.

  python -m experiments.suggest_l2 --config=experiments/configs/mlp_digits_noisy.py \
      --budget_steps=30000 --workdir=/tmp/suggest [--probe_l2=3e-3] [--schedule=anytime]

Trains the config at a large fixed λ (coupled L2, constant learning rate) for
`probe_length/(λη)` steps through the trainer (it resumes from its checkpoints when rerun) and
measures c = t*·λη from the probe's peak (on validation accuracy when the config has a
validation split). Relation 3 says λ_opt = c/(ηT); the default reproduction
(`python -m experiments.reproduce`) measured λ_opt·η·T = κ·c with κ fitted on its calibration
setup (digits, bias-free NTK MLP, MSE, 20% label noise), so the tool prints
κ·c/(ηT) with the range that κ's spread over that setup's replicas and budgets gives, and what
the corrected λ cost against a grid search on every setup it was measured on: the calibration
setup and the held-out ones (a batch-norm MLP with cross-entropy on mnist1d, where relation 3
does not hold, and a standard MLP with cross-entropy and momentum on digits; the `regimes`
preset measured five more, experiments/results/reproduce_regimes/report.md). η is the config's
effective learning rate η/(1−μ). With `--schedule`, it also prints an L2 schedule built on the
probe as trainer flags: `anytime` (λ(t) = κc/(η(t + t0)) from the probe's λ, `l2reg.anytime_l2`)
or `autol2` (AutoL2 from the probe's λ with the corrected λ as its floor).

Without `--probe_l2` the tool chooses the probe's λ: it starts large (λη = 0.5, or as large
as `--evals` evaluations allow) and lowers λ by 3 until a probe shows a clear peak, printing
each λ it tried and what the probe showed, all the probes within `--max_probe_steps` steps
(default: 10% of `--budget_steps`). Writes `workdir/suggestion.json` (`suggested_l2` is the
corrected λ) and `workdir/probe.png`; without a clear peak it says so, suggests no λ and says
what to change. Nor does it suggest one when the probe's training accuracy rises after t*
(`l2reg.relations.fall_cause`: the network overfits its labels there rather than being shrunk
by L2, as on the cross-entropy MLP, whose λ_opt grows with the budget): it says so and points
to a grid search. When the probe's highest training accuracy is below relation 1's fit bound
(1 − the config's label noise − 10 points), it still prints λ but warns that the network does
not fit its labels, a regime the relations do not describe (`mnist1d_mse_ntk`'s probes reach
24% against 70%; the calibration setup's 73–75%). The algorithm is
`l2reg.reproduction.probe.suggest`, the same probe and measurement as the reproduction's; this
file only parses flags. Other libraries' INFO logging is hidden unless `--verbosity` is given.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import _launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Trainer config file (experiments/configs/*.py).", lock_config=False
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the probe runs and the suggestion.")
_BUDGET = flags.DEFINE_integer("budget_steps", None, "Training budget T, in steps.")
_PROBE_L2 = flags.DEFINE_float(
    "probe_l2",
    None,
    "λ of a single probe run (large: it peaks early; the authors' for WRN-28-10 on CIFAR-10 "
    "is 0.02). Unset: searched from large to small.",
)
_MAX_PROBE_STEPS = flags.DEFINE_integer(
    "max_probe_steps",
    None,
    "Without --probe_l2: the search's steps in all probes (default: 10% of --budget_steps).",
)
_PROBE_LENGTH = flags.DEFINE_float(
    "probe_length", 3.0, "Probe length in units of 1/(λη); t* ≈ c/(λη) must fall well inside."
)
_EVALS = flags.DEFINE_integer(
    "evals", 60, "Test evaluations per probe (≥ 10; a probe needs as many steps)."
)
_SCHEDULE = flags.DEFINE_enum(
    "schedule",
    "none",
    ("none", "anytime", "autol2"),
    "Also print an L2 schedule from the probe as trainer flags: anytime or autol2.",
)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Discard a probe of other settings already in --workdir."
)
flags.mark_flags_as_required(["config", "workdir", "budget_steps"])


def main(argv) -> None:
    if len(argv) > 1:
        _launch.fail("suggest_l2", f"unexpected arguments: {' '.join(argv[1:])}")
    config = _launch.config_file("suggest_l2", _CONFIG)
    _launch.quiet_logging()
    from l2reg import training
    from l2reg.reproduction import probe
    from l2reg.training import loop

    try:
        record = probe.suggest(
            config,
            _WORKDIR.value,
            _BUDGET.value,
            _PROBE_L2.value,
            _PROBE_LENGTH.value,
            _EVALS.value,
            max_probe_steps=_MAX_PROBE_STEPS.value,
            overwrite=_OVERWRITE.value,
        )
    except loop.StoppedEarly as error:
        _launch.stopped("suggest_l2", error)
    except (ValueError, TypeError, OSError, training.NonFiniteLossError) as error:
        _launch.fail("suggest_l2", error)
    peak = record["probe"]
    cost = f"probe cost {100 * record['compute_fraction']:.1f}% of the budget"
    if record["suggested_l2"] is not None:
        low, high = record["l2_range"]
        print(
            f"Probe λ = {record['probe_l2']:.3g}, η = {record['effective_lr']:g}: t* = "
            f"{peak['t_star']:.0f} steps on {record['split']} accuracy (peak "
            f"{peak['peak_accuracy']:.3f}), c = {record['c']:.3g}  ({cost}).\n"
            f"Suggested λ for {record['budget_steps']} steps: {record['suggested_l2']:.3g}, "
            f"range {low:.3g}–{high:.3g} (κ·c/(ηT) with κ = {record['kappa']:.3g} "
            f"[{record['calibration']['kappa_range'][0]:.2g}, "
            f"{record['calibration']['kappa_range'][1]:.2g}]; relation 3 alone: "
            f"{record['uncorrected_l2']:.3g})."
        )
        print(probe.expected_cost(record["calibration"], "prediction"))
        if _SCHEDULE.value != "none":
            fields = record["schedules"][_SCHEDULE.value]
            print(f"Schedule ({_SCHEDULE.value}): {probe.fragment(fields)}")
            print(probe.expected_cost(record["calibration"], _SCHEDULE.value))
    elif record["clear_peak"]:
        print(
            f"Probe λ = {record['probe_l2']:.3g}, η = {record['effective_lr']:g}: t* = "
            f"{peak['t_star']:.0f} steps on {record['split']} accuracy (peak "
            f"{peak['peak_accuracy']:.3f}), so no λ is suggested ({cost}). {record['hint']} "
            "See probe.png."
        )
    else:
        print(
            f"The probe's {record['split']} accuracy has no clear peak (maximum at "
            f"{peak['t_star']:.0f} of {record['probe_steps']} steps, falling "
            f"{peak['drop_after_peak']:.3f} after it), so relation 1 gives no t* here and no λ "
            f"is suggested ({cost}). {record['hint']} See probe.png."
        )
    if record["warning"]:
        print(f"Warning: {record['warning']}")
    logging.info("wrote %s", os.path.join(_WORKDIR.value, "suggestion.json"))


if __name__ == "__main__":
    app.run(main, flags_parser=_launch.flags_parser("suggest_l2"))
