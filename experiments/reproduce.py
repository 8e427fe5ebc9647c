r"""Reproduces the paper's relations and measures λ selection on small setups: report, plots.

  python -m experiments.reproduce --workdir=/tmp/reproduce [--preset=default] [--seeds=2]
  python -m experiments.reproduce --workdir=/tmp/r --config=experiments/configs/reproduce_quick.py \
      [--config.draws=2 --config.setups.digits_mse.lr=0.5 ...]

Two parts, `l2reg.reproduction`: relation 1 (t* ∝ 1/(λη)) on the calibration setup, and λ
selection on every setup (relation 3's predicted λ, relation 2, and L2 schedules against the
envelope of the best fixed λ at each budget), over data draws × seeds with a validation split,
by a protocol stated in the report before its results. A preset is a config file,
`experiments/configs/reproduce_{preset}.py`; this file only parses flags.

The calibration setup is a bias-free NTK MLP with MSE on digits with 20% of the training
labels flipped (`mlp_digits_noisy`), where relation 1 shows as a peak and L2 helps; the
held-out setups (a batch-norm MLP with cross-entropy on mnist1d; in the study preset also a
standard MLP with cross-entropy and momentum on digits) are never used for a choice. The
workdir receives `report.md`, PNG plots and `results.json`, all or none; each runner call's
curves are cached in `workdir/cache/` under a hash of its settings and of the library's
training code (the trainer's runs likewise in `workdir/runs/`), so a rerun of the same code
reuses finished parts.

The terminal shows each runner call (its runs and member-steps, an estimate of the time left)
and its progress bar; other libraries' INFO logging is hidden unless `--verbosity` is given.

Presets: `quick` (about a minute, used by the tests), `default` (≤ 10 minutes on 2 CPU
cores, 3 data draws × 1 seed), `study` (3 draws × 5 seeds, a second held-out setup, longer
budgets: about an hour) and `paper` (WRN-28-10 on CIFAR-10, every run through the trainer,
for an accelerator).
"""

import importlib
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import _launch

PRESET_NAMES = ("quick", "default", "study", "cooldown", "start", "regimes", "paper")

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for report.md, plots, results.json, cache.")
_PRESET = flags.DEFINE_enum(
    "preset", "default", PRESET_NAMES, "experiments/configs/reproduce_{preset}.py, unless --config."
)
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A preset config file (experiments/configs/reproduce_*.py); overrides --preset."
)
_SEEDS = flags.DEFINE_integer(
    "seeds", None, "Seeds per data draw (default: the preset's; draws: --config.draws)."
)
flags.mark_flag_as_required("workdir")


def preset_config(preset: str):
    """The ConfigDict of a named preset."""
    return importlib.import_module(f"experiments.configs.reproduce_{preset}").get_config()


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        _launch.fail("reproduce", f"unexpected arguments: {' '.join(argv[1:])}")
    given = _launch.config_file("reproduce", _CONFIG)
    _launch.quiet_logging()
    from l2reg import data, files, reproduction
    from l2reg.training import loop

    config = given if given is not None else preset_config(_PRESET.value)
    name = _PRESET.value if given is None else flags.FLAGS["config"].config_filename
    try:
        if _SEEDS.value is not None:
            config.seeds = _SEEDS.value
        preset = reproduction.Preset.from_config(config)
        files.check_folder(_WORKDIR.value)
        results = reproduction.reproduce(_WORKDIR.value, preset, name=name)
    except loop.StoppedEarly as error:
        _launch.stopped("reproduce", error)
    except (ValueError, TypeError, data.DatasetNotPreparedError) as error:
        _launch.fail("reproduce", error)
    logging.info("wrote %s/report.md in %.0f s", _WORKDIR.value, results["elapsed_seconds"])


if __name__ == "__main__":
    app.run(main, flags_parser=_launch.flags_parser("reproduce"))
