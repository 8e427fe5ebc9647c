r"""Suggests λ for a training budget from one cheap large-λ probe run (the paper's recipe).

  python -m experiments.suggest_l2 --config=experiments/configs/mlp_digits_noisy.py \
      --budget_steps=2000 --workdir=/tmp/suggest --probe_l2=3e-3 [--probe_length=3]

Trains the config once at `--probe_l2` (fixed, coupled L2, constant learning rate) for
`probe_length/(λη)` steps through the trainer (it resumes from its checkpoints when rerun),
measures c = t*·λη and suggests λ_opt = c/(η·T); η is the config's effective learning rate
η/(1−μ). The algorithm is `l2reg.reproduction.probe`, the same code as the reproduction's
part 3; this file only parses flags.

The probe must be large for the config at hand: t* ≈ c/(λη) must fall well inside it. The
default `--probe_l2=0.02` is the authors' probe for WRN-28-10 on CIFAR-10; on
`mlp_digits_noisy` (η = 0.5) use about 3e-3. Writes `workdir/suggestion.json` and
`workdir/probe.png`. Without a clear peak the tool says so, suggests no λ and says what to
change.
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Trainer config file (experiments/configs/*.py).", lock_config=False
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the probe run and the suggestion.")
_BUDGET = flags.DEFINE_integer("budget_steps", None, "Training budget T, in steps.")
_PROBE_L2 = flags.DEFINE_float("probe_l2", 0.02, "λ of the probe run (large: it peaks early).")
_PROBE_LENGTH = flags.DEFINE_float(
    "probe_length", 3.0, "Probe length in units of 1/(λη); t* ≈ c/(λη) must fall well inside."
)
_EVALS = flags.DEFINE_integer(
    "evals", 60, "Test evaluations during the probe (≥ 10; the probe needs as many steps)."
)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Discard a probe of other settings already in --workdir."
)
flags.mark_flags_as_required(["config", "workdir", "budget_steps"])


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
    """Runs (or resumes) the probe in `workdir/probe`, writes `suggestion.json` and `probe.png`
    and returns the suggestion record."""
    from l2reg import checks, files, training
    from l2reg.reproduction import probe

    checks.integer("budget_steps", budget_steps)
    training.validate(config)
    probe.check(config, probe_l2, probe_length, evals)
    files.check_folder(workdir)
    run_config = probe.probe_config(config, probe_l2, probe_length, evals)
    probe_dir = os.path.join(workdir, "probe")
    training.train_and_evaluate(run_config, probe_dir, overwrite=overwrite)
    curve = training.read_curves(probe_dir)
    lr = probe.probe_lr(config)
    measured = probe.measure(curve, probe_l2, lr)
    record = {
        "config": config.to_dict(),
        "effective_lr": lr,
        "probe_l2": probe_l2,
        "probe_steps": run_config.steps,
        **measured,
        "c": measured["c"] if measured["clear_peak"] else None,
        "budget_steps": budget_steps,
        "suggested_l2": probe.suggestion(measured, lr, budget_steps),
        "compute_fraction": run_config.steps / budget_steps,
    }
    probe.plot(curve, measured, os.path.join(workdir, "probe.png"))
    files.write_atomic(
        os.path.join(workdir, "suggestion.json"), json.dumps(record, indent=1, default=str)
    )
    return record


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from l2reg import training

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
    except (ValueError, TypeError, OSError, training.NonFiniteLossError) as error:
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
