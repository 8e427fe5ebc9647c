r"""Suggests λ for a training budget from cheap large-λ probe runs (the paper's recipe).

  python -m experiments.suggest_l2 --config=experiments/configs/mlp_digits_noisy.py \
      --budget_steps=30000 --workdir=/tmp/suggest [--probe_l2=3e-3] [--max_probe_steps=N]

Trains the config at a large fixed λ (coupled L2, constant learning rate) for
`probe_length/(λη)` steps through the trainer (it resumes from its checkpoints when rerun),
measures c = t*·λη from the probe's peak and suggests λ_opt = c/(η·T); η is the config's
effective learning rate η/(1−μ).

Without `--probe_l2` the tool chooses the probe's λ: it starts large (λη = 0.5, or as large
as `--evals` evaluations allow) and lowers λ by 3 until a probe shows a clear peak, printing
each λ it tried and what the probe showed, all the probes within `--max_probe_steps` steps
(default: 10% of `--budget_steps`). Writes `workdir/suggestion.json` and `workdir/probe.png`;
without a clear peak it says so, suggests no λ and says what to change. The algorithm is
`l2reg.reproduction.probe.suggest`, the same code as the reproduction's part 3; this file only
parses flags. Other libraries' INFO logging is hidden unless `--verbosity` is given.
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
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Discard a probe of other settings already in --workdir."
)
flags.mark_flags_as_required(["config", "workdir", "budget_steps"])


def main(argv) -> None:
    if len(argv) > 1:
        _launch.fail("suggest_l2", f"unexpected arguments: {' '.join(argv[1:])}")
    _launch.quiet_logging()
    from l2reg import training
    from l2reg.reproduction import probe

    try:
        record = probe.suggest(
            _CONFIG.value,
            _WORKDIR.value,
            _BUDGET.value,
            _PROBE_L2.value,
            _PROBE_LENGTH.value,
            _EVALS.value,
            max_probe_steps=_MAX_PROBE_STEPS.value,
            overwrite=_OVERWRITE.value,
        )
    except (ValueError, TypeError, OSError, training.NonFiniteLossError) as error:
        _launch.fail("suggest_l2", error)
    peak = record["probe"]
    cost = f"probe cost {100 * record['compute_fraction']:.1f}% of the budget"
    if record["clear_peak"]:
        print(
            f"Probe λ = {record['probe_l2']:.3g}, η = {record['effective_lr']:g}: t* = "
            f"{peak['t_star']:.0f} steps (peak {peak['peak_accuracy']:.3f}), c = "
            f"{record['c']:.3g}.\nSuggested λ for {record['budget_steps']} steps: "
            f"{record['suggested_l2']:.3g}  ({cost})."
        )
    else:
        print(
            f"The probe's test accuracy has no clear peak (maximum at {peak['t_star']:.0f} of "
            f"{record['probe_steps']} steps, falling {peak['drop_after_peak']:.3f} after it), "
            f"so relation 1 gives no t* here and no λ is suggested ({cost}). {record['hint']} "
            "See probe.png."
        )
    logging.info("wrote %s", os.path.join(_WORKDIR.value, "suggestion.json"))


if __name__ == "__main__":
    app.run(main, flags_parser=_launch.flags_parser("suggest_l2"))
