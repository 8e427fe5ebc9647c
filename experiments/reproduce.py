r"""Reproduces the paper's empirical relations on a small data set: report, plots, numbers.

  python -m experiments.reproduce --workdir=/tmp/reproduce [--preset=default] [--seeds=3]
  python -m experiments.reproduce --workdir=/tmp/r --config=experiments/configs/reproduce_quick.py \
      [--config.l2.num_steps=3000 ...]

The four parts (t* vs λη, accuracy vs λ, predicting λ_opt, AutoL2) and their analysis are
`l2reg.reproduction`; a preset is a config file, `experiments/configs/reproduce_{preset}.py`,
whose grids each name the trainer config of their runs. This file only parses flags.

A bias-free NTK MLP with MSE on digits shows relation 1 as a peak followed by a collapse,
but there λ = 0 is best; with 20% of the training labels flipped (the test set stays clean)
the same model also gains from L2, so the default preset runs every part on that noisy
variant (`mlp_digits_noisy`). The workdir receives `report.md`, PNG plots and `results.json`;
each sweep's curves are cached in `workdir/cache/` under a hash of its settings and of the
library's training code (the trainer's runs likewise in `workdir/runs/`), so a rerun of the
same code reuses finished parts.

The terminal shows each part ("part 1 of 4: t* grid": its runs and member-steps, an estimate
of the time left) and its progress bar; other libraries' INFO logging is hidden unless
`--verbosity` is given.

Presets: `quick` (about a minute, used by the tests), `default` (≤ 10 minutes on 2 CPU
cores, 3 seeds) and `paper` (WRN-28-10 on CIFAR-10, every run through the trainer, for an
accelerator).
"""

import importlib
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import _launch

PRESET_NAMES = ("quick", "default", "paper")

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for report.md, plots, results.json, cache.")
_PRESET = flags.DEFINE_enum(
    "preset", "default", PRESET_NAMES, "experiments/configs/reproduce_{preset}.py, unless --config."
)
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A preset config file (experiments/configs/reproduce_*.py); overrides --preset."
)
_SEEDS = flags.DEFINE_integer("seeds", None, "Number of seeds (default: the preset's).")
flags.mark_flag_as_required("workdir")


def preset_config(preset: str):
    """The ConfigDict of a named preset."""
    return importlib.import_module(f"experiments.configs.reproduce_{preset}").get_config()


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        _launch.fail("reproduce", f"unexpected arguments: {' '.join(argv[1:])}")
    _launch.quiet_logging()
    from l2reg import data, files, reproduction

    config = _CONFIG.value if _CONFIG.value is not None else preset_config(_PRESET.value)
    name = _PRESET.value if _CONFIG.value is None else flags.FLAGS["config"].config_filename
    try:
        if _SEEDS.value is not None:
            config.seeds = _SEEDS.value
        preset = reproduction.Preset.from_config(config)
        files.check_folder(_WORKDIR.value)
        results = reproduction.reproduce(
            _WORKDIR.value, preset, name=name, seeds=range(preset.seeds)
        )
    except (ValueError, TypeError, data.DatasetNotPreparedError) as error:
        _launch.fail("reproduce", error)
    logging.info("wrote %s/report.md in %.0f s", _WORKDIR.value, results["elapsed_seconds"])


if __name__ == "__main__":
    app.run(main, flags_parser=_launch.flags_parser("reproduce"))
