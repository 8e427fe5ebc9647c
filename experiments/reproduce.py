r"""Reproduces the paper's empirical relations on a small data set: report, plots, numbers.

  python -m experiments.reproduce --workdir=/tmp/reproduce [--preset=default] [--seeds=3]

The four parts (t* vs λη, accuracy vs λ, predicting λ_opt, AutoL2) and their analysis are
`l2reg.reproduction`; this file holds the presets, each part's setup chosen by measurement,
and the command line.

A bias-free NTK MLP with MSE on digits shows relation 1 as a peak followed by a collapse,
but there λ = 0 is best; with 20% of the training labels flipped (the test set stays clean)
the same model also gains from L2, so the default preset runs every part on that noisy
variant (the quick preset, a smoke test, pairs the clean variant for part 1 with a
batch-norm MLP with cross-entropy on mnist1d, which shows relation 2, for parts 2–4). The
workdir receives `report.md`, PNG plots and `results.json`; each sweep's curves are cached in
`workdir/cache/` under a hash of its settings and of the library's training code (the
trainer's runs likewise in `workdir/runs/`), so a rerun of the same code reuses finished parts.

Presets: `quick` (about a minute, used by the tests), `default` (≤ 10 minutes on 2 CPU
cores, 3 seeds) and `paper` (WRN-28-10 on CIFAR-10, every run through the trainer
`l2reg.train` in `workdir/runs/`, for an accelerator; `--dataset` then takes any TFDS set).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Sequence

import numpy as np
from absl import app, flags, logging

from l2reg import checks, files, reproduction, sweep
from l2reg.reproduction import L2Grid, Preset, Runner, SweepRunner, TrainerRunner, TStarGrid

EMBEDDED_DATASETS = ("digits", "mnist1d")


def _mse_ntk_mlp(dataset: str, width: int, label_noise: float = 0.0) -> sweep.Setup:
    return sweep.Setup(
        dataset,
        loss="mse",
        label_noise=label_noise,
        model_options=(
            ("parameterization", "ntk"),
            ("use_bias", False),
            ("widths", (width, width)),
        ),
    )


def _batch_norm_mlp(dataset: str, width: int, test_size: int | None) -> sweep.Setup:
    return sweep.Setup(
        dataset,
        data_options=(("test_size", test_size),) if test_size else (),
        loss="cross_entropy",
        model_options=(
            ("use_bias", False),
            ("normalization", "batch"),
            ("widths", (width, width)),
        ),
    )


PRESETS = {
    "quick": Preset(
        t_star=TStarGrid(
            setup=_mse_ntk_mlp("digits", 128),
            lrs=(0.5, 1.0, 2.0),
            l2_lrs=(1e-3, 3e-3, 1e-2),
            run_length=3.0,
        ),
        l2=L2Grid(
            setup=_batch_norm_mlp("mnist1d", 64, None),
            lrs=(0.3,),
            l2s=(0.0, 1e-3, 1e-2, 1e-1),
            num_steps=1500,
            budgets=(300, 1500),
            scaled_length=10.0,
            probe_l2=1e-1,
            probe_length=3.0,
            autol2_l2=1e-1,
        ),
        seeds=1,
        evals_per_decade=8,
    ),
    "default": Preset(
        t_star=TStarGrid(
            setup=_mse_ntk_mlp("digits", 256, label_noise=0.2),
            lrs=(0.5, 1.0, 2.0),
            l2_lrs=tuple(np.geomspace(2e-4, 2e-2, 5).tolist()),
            run_length=3.0,
        ),
        l2=L2Grid(
            setup=_mse_ntk_mlp("digits", 256, label_noise=0.2),
            lrs=(0.5, 2.0),
            l2s=(0.0, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3),
            num_steps=6_000,
            budgets=(600, 2_000, 6_000),
            # Read at 1/(λη), near t*: runs of this setup collapse after their peak.
            scaled_length=1.0,
            probe_l2=3e-3,
            probe_length=3.0,
            autol2_l2=3e-3,
        ),
        seeds=3,
        evals_per_decade=12,
    ),
}
# The paper's setup through the trainer, for an accelerator: WRN-28-10 on CIFAR-10, plain SGD
# without augmentation for the relations (as the authors' λ×η grids), batch 128.
PRESETS["paper"] = Preset(
    t_star=TStarGrid(
        setup=None,
        lrs=(0.05, 0.1, 0.2),
        l2_lrs=tuple(np.geomspace(5e-5, 5e-3, 5).tolist()),
        run_length=2.0,
    ),
    l2=L2Grid(
        setup=None,
        lrs=(0.1,),
        l2s=(0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        num_steps=39_000,  # 100 epochs
        budgets=(3_900, 15_600, 39_000),
        scaled_length=10.0,
        probe_l2=2e-2,  # the authors' probe, L2 = 0.01 in their units
        probe_length=2.0,
        autol2_l2=0.2,  # their Figure 1c start, L2 = 0.1
    ),
    seeds=1,
    trainer_config="wrn28_10_cifar10",
    trainer_overrides=(("optimizer", "sgd"), ("augment", False)),
)
PRESET_NAMES = tuple(PRESETS)


def trainer_base_config(settings: Preset):
    """The preset's trainer config (experiments/configs/{trainer_config}.py) with overrides."""
    module = importlib.import_module(f"experiments.configs.{settings.trainer_config}")
    config = module.get_config()
    for field, value in settings.trainer_overrides:
        config[field] = value
    return config


def with_dataset(preset: Preset, dataset: str | None) -> Preset:
    """The preset with every part on `dataset` (its models and losses unchanged)."""
    if not dataset:
        return preset
    if preset.trainer_config:
        overrides = (*preset.trainer_overrides, ("dataset", dataset))
        return dataclasses.replace(preset, trainer_overrides=overrides)

    def move(setup: sweep.Setup) -> sweep.Setup:
        if setup.dataset == dataset:
            return setup
        options = setup.data_options if dataset == "mnist1d" else ()
        return dataclasses.replace(setup, dataset=dataset, data_options=options)

    return dataclasses.replace(
        preset,
        t_star=dataclasses.replace(preset.t_star, setup=move(preset.t_star.setup)),
        l2=dataclasses.replace(preset.l2, setup=move(preset.l2.setup)),
    )


def validate(dataset: str | None, preset: str, seeds: int | None) -> None:
    """One-line ValueError for a bad flag, raised before any work."""
    import l2reg.data

    if preset not in PRESET_NAMES:
        raise ValueError(f"Unknown preset {preset!r}; expected one of {', '.join(PRESET_NAMES)}.")
    allowed = l2reg.data.NAMES if PRESETS[preset].trainer_config else EMBEDDED_DATASETS
    if dataset and dataset not in allowed:
        raise ValueError(
            f"Unknown dataset {dataset!r} for preset {preset!r}; expected one of "
            f"{', '.join(allowed)}."
        )
    if seeds is not None:
        checks.integer("seeds", seeds, maximum=reproduction.MAX_SEEDS)


def runner(settings: Preset, part: str, workdir: str) -> Runner:
    """How `part` ('t_star' or 'l2') of a preset trains its configurations."""
    if settings.trainer_config:
        return TrainerRunner(
            workdir, trainer_base_config(settings), settings.trainer_config, settings.trainer_evals
        )
    grid = settings.t_star if part == "t_star" else settings.l2
    return SweepRunner(workdir, grid.setup, settings.evals_per_decade)


def reproduce(workdir: str, *, dataset: str | None, preset: str, seeds: int | None) -> dict:
    """Runs the preset's four parts (on `dataset` if given) and writes report.md, the PNG plots
    and results.json in `workdir`; returns the results."""
    validate(dataset, preset, seeds)
    settings = with_dataset(PRESETS[preset], dataset)
    return reproduction.reproduce(
        workdir,
        settings,
        name=preset,
        seeds=range(seeds or settings.seeds),
        t_star_runner=runner(settings, "t_star", workdir),
        l2_runner=runner(settings, "l2", workdir),
    )


def main(argv: Sequence[str]) -> None:
    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        validate(FLAGS.dataset, FLAGS.preset, FLAGS.seeds)
        files.check_folder(FLAGS.workdir)
    except ValueError as error:
        sys.exit(f"reproduce: {error}")
    import l2reg.data

    try:
        results = reproduce(
            FLAGS.workdir, dataset=FLAGS.dataset, preset=FLAGS.preset, seeds=FLAGS.seeds
        )
    except l2reg.data.DatasetNotPreparedError as error:
        sys.exit(f"reproduce: {' '.join(str(error).split())}")
    logging.info("Wrote %s/report.md in %.0f s", FLAGS.workdir, results["elapsed_seconds"])


def define_flags() -> None:
    """The command line's flags (defined only when run as a program, so that other tools
    can import this module's functions)."""
    flags.DEFINE_string("workdir", None, "Folder for report.md, plots, results.json, cache.")
    flags.DEFINE_string(
        "dataset",
        "",
        "Run every part on this data set (digits | mnist1d); by default each part uses its "
        "own labelled setup.",
    )
    flags.DEFINE_string("preset", "default", f"One of {', '.join(PRESET_NAMES)}.")
    flags.DEFINE_integer(
        "seeds", None, f"Number of seeds, 1 to {reproduction.MAX_SEEDS} (default: the preset's)."
    )
    flags.mark_flag_as_required("workdir")


if __name__ == "__main__":
    define_flags()
    app.run(main)
