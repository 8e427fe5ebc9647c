r"""Reproduces the paper's empirical relations on a small data set: report, plots, numbers.

  python -m experiments.reproduce --workdir=/tmp/reproduce [--preset=default] [--seeds=3]

Four parts, each trained as one vmapped sweep (`l2reg.sweep`) and analysed with
`l2reg.relations`:

1. t* vs λη: a grid over ≥ 2 decades of λη and ≥ 3 learning rates, each run
   `run_length/(λη)` steps; t* by the robust estimator, the fitted power law, and the
   accuracy curves against λ·η·t (they collapse when relation 1 holds).
2. Accuracy vs λ: at fixed budgets T (λ_opt(T) is the peak) and with T ∝ 1/(λη); λ = 0
   for comparison.
3. Predicting λ_opt: c from one cheap large-λ probe run, λ_pred = c/(ηT), against the
   grid's best λ at T.
4. AutoL2 (our defaults, the authors' released settings, a floor at λ_pred, a step
   learning-rate schedule) against the best fixed λ and λ = 0 at the same budget.

Each part names its setup, chosen by measurement: a bias-free NTK MLP with MSE on digits
shows relation 1 as a peak followed by a collapse, but there λ = 0 is best; with 20% of the
training labels flipped (the test set stays clean) the same model also gains from L2, so the
default preset runs every part on that noisy variant (the quick preset, a smoke test, pairs
the clean variant for part 1 with a batch-norm MLP with cross-entropy on mnist1d, which
shows relation 2, for parts 2–4). The workdir receives
`report.md`, PNG plots and `results.json`; each sweep's curves are cached in
`workdir/cache/` under a hash of its settings, so a rerun reuses finished parts.

Presets: `quick` (about a minute, used by the tests), `default` (≤ 10 minutes on 2 CPU
cores, 3 seeds) and `paper` (WRN-28-10 on CIFAR-10, every run through the trainer
`l2reg.train` in `workdir/runs/`, for an accelerator; `--dataset` then takes any TFDS set).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import tqdm
from absl import app, flags, logging

from l2reg import relations, sweep
from l2reg.files import pyplot, save_figure, write_atomic

EMBEDDED_DATASETS = ("digits", "mnist1d")
# A goal is checked only where its inputs exist; these are the targets.
SLOPE_GOAL = (-1.1, -0.9)
PREDICTION_GOAL = 2.0  # λ_pred within this factor of the grid's best λ
PROBE_COMPUTE_GOAL = 0.1  # the probe costs at most this fraction of the grid
GAIN_GOAL = 0.015  # best λ > 0 beats λ = 0 by this much accuracy
# Part 1 fits the runs whose peak accuracy is within this margin of the grid's best.
COLLAPSE_MARGIN = 0.1


@dataclasses.dataclass(frozen=True)
class TStarGrid:
    """Part 1: runs of `run_length/(λη)` steps over a grid of λη and learning rates."""

    setup: sweep.Setup | None  # None when the preset trains through the trainer
    lrs: tuple[float, ...]
    l2_lrs: tuple[float, ...]  # the products λη
    run_length: float  # in units of 1/(λη)


@dataclasses.dataclass(frozen=True)
class L2Grid:
    """Parts 2–4: a grid of λ (0 included) at fixed learning rates, all of `num_steps`.

    Constant η, so the curve of one run gives its accuracy at every budget T ≤ num_steps.
    """

    setup: sweep.Setup | None  # None when the preset trains through the trainer
    lrs: tuple[float, ...]
    l2s: tuple[float, ...]
    num_steps: int
    budgets: tuple[int, ...]  # fixed budgets T for accuracy vs λ (≤ num_steps)
    scaled_length: float  # the T ∝ 1/(λη) view reads each run at scaled_length/(λη) steps
    probe_l2: float  # part 3: λ of the probe, run at lrs[0]
    probe_length: float  # in units of 1/(λη)
    autol2_l2: float  # part 4: AutoL2's initial λ, run at lrs[0] for num_steps


@dataclasses.dataclass(frozen=True)
class Preset:
    """The grids of every part, and how they are trained.

    Attributes:
      t_star, l2: the grids of part 1 and of parts 2–4.
      seeds: seeds per configuration.
      evals_per_decade: log-spaced test evaluations per decade (sweeps).
      trainer_config: None trains the grids' setups with `l2reg.sweep`; a config module of
        `experiments/configs` (e.g. 'wrn28_10_cifar10') trains every run with the trainer.
      trainer_overrides: (field, value) pairs set on that config for every run.
      trainer_evals: test evaluations per trainer run (evenly spaced).
    """

    t_star: TStarGrid
    l2: L2Grid
    seeds: int
    evals_per_decade: int = 12
    trainer_config: str | None = None
    trainer_overrides: tuple[tuple[str, Any], ...] = ()
    trainer_evals: int = 100


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
    import importlib

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
    if seeds is not None and seeds < 1:
        raise ValueError(f"seeds must be ≥ 1, got {seeds}.")


# ---------------------------------------------------------------------------------------------
# I/O at the edges: atomic writes and the sweep cache.


@dataclasses.dataclass(frozen=True)
class SweepRunner:
    """Trains configurations as one vmapped `l2reg.sweep`, caching the curves in
    `workdir/cache/{name}-{hash of the settings}.npz` so that a rerun reuses them."""

    workdir: str
    setup: sweep.Setup
    evals_per_decade: int

    @property
    def label(self) -> str:
        return self.setup.describe()

    def __call__(self, name: str, configs: Sequence[sweep.Config]) -> list[sweep.Curves]:
        settings = repr((self.setup, tuple(configs), self.evals_per_decade)).encode()
        digest = hashlib.sha256(settings).hexdigest()[:16]
        path = os.path.join(self.workdir, "cache", f"{name}-{digest}.npz")
        if os.path.exists(path):
            logging.info("Reusing %s", path)
            with np.load(path) as stored:
                return [
                    sweep.Curves(*(stored[f"{i}/{field}"] for field in sweep.Curves._fields))
                    for i in range(len(configs))
                ]
        logging.info("Training %d configurations for %s", len(configs), name)
        curves = sweep.run(self.setup, configs, evals_per_decade=self.evals_per_decade)
        arrays = {
            f"{i}/{field}": value
            for i, curve in enumerate(curves)
            for field, value in curve._asdict().items()
        }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(path, buffer.getvalue())
        return curves


@dataclasses.dataclass(frozen=True, eq=False)
class TrainerRunner:
    """Trains configurations one after another with the trainer (`l2reg.train`), each in
    `workdir/runs/{name}-{hash of its trainer config}`; the trainer resumes from its
    checkpoints, so a rerun reuses finished runs and continues interrupted ones."""

    workdir: str
    config: Any  # the base trainer ConfigDict
    config_name: str
    evals: int  # test evaluations per run (the trainer evaluates every steps // evals)

    @property
    def label(self) -> str:
        base = self.config
        return (
            f"trainer config {self.config_name}: {base.dataset}, {base.model}, {base.loss}, "
            f"{base.optimizer}, batch {base.batch_size}, augment {base.augment}"
        )

    def trainer_config(self, config: sweep.Config):
        """The base config with the configuration's λ, η, seed, length, L2 mode and schedule."""
        from ml_collections import config_dict

        trainer = self.config.copy_and_resolve_references()
        trainer.l2, trainer.lr, trainer.seed = config.l2, config.lr, config.seed
        trainer.steps = config.num_steps
        trainer.lr_schedule = config.lr_schedule
        trainer.eval_every = max(1, config.num_steps // self.evals)
        trainer.checkpoint_every = max(trainer.eval_every, config.num_steps // 4)
        mode = config.l2_mode
        if isinstance(mode, sweep.FixedL2):
            trainer.l2_mode = "fixed"
            return trainer
        if mode.learning_rate is not None and config.lr_schedule != "constant":
            raise ValueError(
                f"The trainer's AutoL2 clock follows η; a fixed clock η = {mode.learning_rate} "
                f"needs a constant schedule, got {config.lr_schedule!r}."
            )
        momentum = trainer.momentum if trainer.optimizer == "momentum" else 0.0
        clock = relations.effective_lr(config.lr, momentum)
        # cooldown/(λ·clock) steps on the trainer's clock equals ours on a fixed clock.
        cooldown = mode.cooldown * clock / (mode.learning_rate or clock)
        trainer.l2_mode = "autol2"
        trainer.autol2 = config_dict.ConfigDict(
            {
                "decay_factor": mode.decay_factor,
                "cooldown": cooldown,
                "patience": mode.patience,
                "check_every": mode.check_every,
                "min_l2": mode.min_l2,
            }
        )
        return trainer

    def __call__(self, name: str, configs: Sequence[sweep.Config]) -> list[sweep.Curves]:
        from l2reg import train

        curves = []
        for config in tqdm.tqdm(configs, desc=name, unit="run"):
            trainer = self.trainer_config(config)
            digest = hashlib.sha256(trainer.to_json_best_effort().encode()).hexdigest()[:16]
            folder = os.path.join(self.workdir, "runs", f"{name}-{digest}")
            train.train_and_evaluate(trainer, folder)
            lines = train.read_metrics(folder)
            curves.append(
                sweep.Curves(
                    *(np.array([line[field] for line in lines]) for field in _METRIC_FIELDS)
                )
            )
        return curves


# The trainer's metrics.jsonl fields, in the order of sweep.Curves.
_METRIC_FIELDS = ("step", "test_accuracy", "test_loss", "l2", "weight_norm")

Runner = SweepRunner | TrainerRunner


def runner(settings: Preset, part: str, workdir: str) -> Runner:
    """How `part` ('t_star' or 'l2') of a preset trains its configurations."""
    if settings.trainer_config:
        return TrainerRunner(
            workdir, trainer_base_config(settings), settings.trainer_config, settings.trainer_evals
        )
    grid = settings.t_star if part == "t_star" else settings.l2
    return SweepRunner(workdir, grid.setup, settings.evals_per_decade)


# ---------------------------------------------------------------------------------------------
# Analysis: pure functions of curves.


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean and standard deviation over seeds (NaN entries, e.g. never reached, left out)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    return {
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std()) if finite.size else None,
        "values": [float(v) if np.isfinite(v) else None for v in values],
    }


def peak_of(curve: sweep.Curves) -> relations.Peak:
    """t* of a curve's test accuracy, where it falls in the run and how far it falls after."""
    return relations.peak_shape(curve.steps, curve.test_accuracy)


def t_star_part(grid: TStarGrid, seeds: Sequence[int], run: Runner) -> tuple[dict, list]:
    """Part 1: t* of every run, the power-law fit pooled over seeds and per seed."""
    configs = [
        sweep.Config(l2_lr / lr, lr, seed, max(1, round(grid.run_length / l2_lr)))
        for seed in seeds
        for lr in grid.lrs
        for l2_lr in grid.l2_lrs
    ]
    curves = run("t_star", configs)
    shapes = [peak_of(curve) for curve in curves]
    points = [
        {"l2": c.l2, "lr": c.lr, "seed": c.seed, "num_steps": c.num_steps, **shape._asdict()}
        for c, shape in zip(configs, shapes, strict=True)
    ]
    peaks = np.array([p["peak_accuracy"] for p in points])
    # Runs whose λ is too large to fit the data collapse early and peak far below the
    # others; the paper leaves them out of the fit.
    used = peaks >= peaks.max() - COLLAPSE_MARGIN
    for point, use in zip(points, used, strict=True):
        point["used"] = bool(use)

    def fit(mask):
        if np.count_nonzero(mask) < 2:
            return None
        return relations.fit_t_star(
            [p["l2"] for p in points],
            [p["lr"] for p in points],
            [p["t_star"] for p in points],
            used=mask,
        )

    pooled = fit(used)
    # A check that does not depend on the collapse margin: every run whose curve has a clear
    # peak (early in the run, falling after it), collapsed or not.
    clear = np.array([shape.is_clear() for shape in shapes])
    clear_fit = fit(clear)
    fitted_l2_lr = [p["l2"] * p["lr"] for p in points if p["used"]]
    seed_of = np.array([p["seed"] for p in points])
    per_seed = [fit(used & (seed_of == seed)) for seed in seeds]
    interior = [p for p in points if p["used"] and p["peak_fraction"] < 0.5]
    result = {
        "setup": run.label,
        "slope": pooled.slope if pooled else None,
        "slope_stderr": pooled.slope_stderr if pooled else None,
        "c": pooled.c if pooled else None,
        "points": points,
        "per_seed_slope": spread([f.slope if f else np.nan for f in per_seed]),
        "per_seed_c": spread([f.c if f else np.nan for f in per_seed]),
        "l2_lr_decades": float(np.log10(max(grid.l2_lrs) / min(grid.l2_lrs))),
        "fitted_l2_lr_range": [min(fitted_l2_lr), max(fitted_l2_lr)],
        "clear_peak_fit": {
            "runs": int(clear.sum()),
            "slope": clear_fit.slope if clear_fit else None,
            "slope_stderr": clear_fit.slope_stderr if clear_fit else None,
            "c": clear_fit.c if clear_fit else None,
        },
        "peaks_in_first_half": len(interior),
        "median_drop_after_peak": float(np.median([p["drop_after_peak"] for p in interior]))
        if interior
        else None,
        "goal": list(SLOPE_GOAL),
        "met": bool(pooled and SLOPE_GOAL[0] <= pooled.slope <= SLOPE_GOAL[1]),
    }
    return result, list(zip(configs, curves, strict=True))


def l2_part(grid: L2Grid, seeds: Sequence[int], run: Runner) -> tuple[dict, Any]:
    """Parts 2 and 3: accuracy vs λ at fixed budgets and with T ∝ 1/(λη); the probe's c."""
    lr = grid.lrs[0]
    probe_steps = max(1, round(grid.probe_length / (grid.probe_l2 * lr)))
    configs = [
        sweep.Config(l2, lr_, seed, grid.num_steps)
        for seed in seeds
        for lr_ in grid.lrs
        for l2 in grid.l2s
    ]
    probes = [sweep.Config(grid.probe_l2, lr, seed, probe_steps) for seed in seeds]
    curves = run("l2", configs + probes)
    grid_curves, probe_curves = curves[: len(configs)], curves[len(configs) :]
    by_key = {(c.lr, c.l2, c.seed): curve for c, curve in zip(configs, grid_curves, strict=True)}
    positive = np.array([l2 for l2 in grid.l2s if l2 > 0])

    fixed_budget = []
    for lr_ in grid.lrs:
        for budget in grid.budgets:
            accuracy = np.array(
                [[by_key[lr_, l2, s].accuracy_at(budget) for s in seeds] for l2 in grid.l2s]
            )  # (λ, seed)
            mean = accuracy.mean(axis=1)
            with_l2 = mean[np.asarray(grid.l2s) > 0]
            best = int(np.argmax(with_l2))
            zero = mean[list(grid.l2s).index(0.0)] if 0.0 in grid.l2s else np.nan
            fixed_budget.append(
                {
                    "lr": lr_,
                    "budget_steps": budget,
                    "l2": list(grid.l2s),
                    "accuracy": [spread(row) for row in accuracy],
                    "best_l2": float(positive[best]),
                    "l2_opt": relations.l2_opt(positive, with_l2),
                    "interior_peak": 0 < best < len(positive) - 1,
                    "gain_over_zero_l2": float(with_l2[best] - zero),
                }
            )
    l2_opt_slopes = {}
    for lr_ in grid.lrs:
        rows = [r for r in fixed_budget if r["lr"] == lr_]
        if len(rows) >= 2:
            slope = np.polyfit(
                np.log([r["budget_steps"] for r in rows]), np.log([r["l2_opt"] for r in rows]), 1
            )[0]
            l2_opt_slopes[str(lr_)] = float(slope)
    scaled = [
        {
            "lr": lr_,
            "l2": l2,
            "steps": min(grid.num_steps, grid.scaled_length / (l2 * lr_)),
            "accuracy": spread(
                [by_key[lr_, l2, s].accuracy_at(grid.scaled_length / (l2 * lr_)) for s in seeds]
            ),
        }
        for lr_ in grid.lrs
        for l2 in positive
    ]

    # Part 3: c from the probe, λ_pred = c/(ηT) at the largest budget, vs the grid's best.
    budget = grid.num_steps
    probe_peaks = [peak_of(curve) for curve in probe_curves]
    c = [relations.c_from(p.t_star, grid.probe_l2, lr) for p in probe_peaks]
    predicted = relations.predict_l2(float(np.mean(c)), lr, budget)
    row = next(r for r in fixed_budget if r["lr"] == lr and r["budget_steps"] == budget)
    grid_steps = grid.num_steps * len(grid.l2s)
    ratio = predicted / row["l2_opt"]
    # Relation 3 at every budget, not only the largest: λ_pred(T) = c/(ηT) vs λ_opt(T).
    ratios_by_budget = {
        str(r["budget_steps"]): relations.predict_l2(float(np.mean(c)), lr, r["budget_steps"])
        / r["l2_opt"]
        for r in fixed_budget
        if r["lr"] == lr
    }
    # The probe's t* means something only if its curve peaks inside the run and falls after.
    clear_peak = [p.is_clear() for p in probe_peaks]
    prediction = {
        "setup": run.label,
        "lr": lr,
        "probe_l2": grid.probe_l2,
        "probe_steps": probe_steps,
        "probe": [p._asdict() for p in probe_peaks],
        "probe_has_clear_peak": all(clear_peak),
        "c": spread(c),
        "budget_steps": budget,
        "predicted_l2": float(predicted),
        "grid_best_l2": row["l2_opt"],
        "ratio": float(ratio),
        "ratios_by_budget": ratios_by_budget,
        "compute_fraction": probe_steps / grid_steps,
        # A ratio near 1 from a probe without a peak would be a coincidence, not relation 3.
        "met": bool(
            all(clear_peak)
            and 1 / PREDICTION_GOAL <= ratio <= PREDICTION_GOAL
            and probe_steps / grid_steps <= PROBE_COMPUTE_GOAL
        ),
    }
    result = {
        "setup": run.label,
        "fixed_budget": fixed_budget,
        "l2_opt_vs_budget_slope": l2_opt_slopes,
        "scaled_budget": scaled,
    }
    return {"accuracy_vs_l2": result, "l2_prediction": prediction}, (by_key, probe_curves)


AUTOL2_VARIANTS = {
    "autol2 (defaults)": lambda predicted: (sweep.AutoL2(), "constant"),
    "autol2 (authors: clock η=1, cooldown 0.2)": lambda predicted: (
        sweep.AutoL2(learning_rate=1.0, cooldown=0.2),
        "constant",
    ),
    "autol2 + min_l2 = λ_pred": lambda predicted: (sweep.AutoL2(min_l2=predicted), "constant"),
    "autol2 + step lr schedule": lambda predicted: (sweep.AutoL2(), "step"),
}


def autol2_part(
    grid: L2Grid,
    seeds: Sequence[int],
    run: Runner,
    fixed: dict,
    by_key: dict,
    predicted_l2: float,
) -> tuple[dict, dict]:
    """Part 4: AutoL2 variants vs the best fixed λ and λ = 0 at budget num_steps, lrs[0]."""
    lr, budget = grid.lrs[0], grid.num_steps
    variants = {
        name: make(min(predicted_l2, grid.autol2_l2)) for name, make in AUTOL2_VARIANTS.items()
    }
    configs = [
        sweep.Config(grid.autol2_l2, lr, seed, budget, mode, schedule)
        for mode, schedule in variants.values()
        for seed in seeds
    ]
    curves = run("autol2", configs)
    row = next(r for r in fixed["fixed_budget"] if r["lr"] == lr and r["budget_steps"] == budget)
    best_l2 = row["best_l2"]
    best_accuracy = [by_key[lr, best_l2, s].accuracy_at(budget) for s in seeds]
    target = float(np.mean(best_accuracy))
    summary, curves_by_variant = {}, {}
    for index, name in enumerate(variants):
        mine = curves[index * len(seeds) : (index + 1) * len(seeds)]
        curves_by_variant[name] = mine
        reached = []
        for curve in mine:
            hits = np.nonzero(curve.test_accuracy >= target)[0]
            reached.append(float(curve.steps[hits[0]]) if hits.size else np.nan)
        summary[name] = {
            "accuracy": spread([c.test_accuracy[-1] for c in mine]),
            "final_l2": spread([c.l2[-1] for c in mine]),
            "steps_to_best_fixed_accuracy": spread(reached),
            "met": bool(np.all(np.asarray(reached) <= budget / 2)),
        }
    default = summary["autol2 (defaults)"]
    zero = [by_key[lr, 0.0, s].accuracy_at(budget) for s in seeds] if 0.0 in grid.l2s else []
    results = {
        "autol2": {
            "setup": run.label,
            "lr": lr,
            "budget_steps": budget,
            "l2_init": grid.autol2_l2,
            "accuracy": default["accuracy"],
            "steps_to_best_fixed_accuracy": default["steps_to_best_fixed_accuracy"],
            "met": default["met"],
            "variants": summary,
        },
        "best_fixed": {"l2": best_l2, "lr": lr, "accuracy": spread(best_accuracy)},
        "zero_l2": {"lr": lr, "accuracy": spread(zero)},
    }
    return results, curves_by_variant


# ---------------------------------------------------------------------------------------------
# Figures and report.


def plot_t_star(part: dict, runs: list, path: str, collapse_path: str) -> None:
    """t* vs λη (log-log, with the [low, high] interval and the fit) and the collapse."""
    plt = pyplot()
    points = part["points"]
    lrs = sorted({p["lr"] for p in points})
    colors = dict(zip(lrs, plt.cm.viridis(np.linspace(0, 0.85, len(lrs))), strict=True))
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for p in points:
        x = p["l2"] * p["lr"]
        axis.errorbar(
            x,
            p["t_star"],
            yerr=[[p["t_star"] - p["low"]], [p["high"] - p["t_star"]]],
            fmt="o" if p["used"] else "x",
            color=colors[p["lr"]],
            alpha=0.8,
            label=f"η = {p['lr']:g}",
        )
    if part["slope"] is not None:
        x = np.geomspace(
            min(p["l2"] * p["lr"] for p in points), max(p["l2"] * p["lr"] for p in points), 50
        )
        axis.plot(
            x,
            part["c"] * x ** part["slope"],
            "k--",
            label=f"fit: slope {part['slope']:.2f} ± {part['slope_stderr']:.2f}",
        )
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axis.legend(unique.values(), unique.keys(), fontsize=8)
    axis.set(xscale="log", yscale="log", xlabel="λη", ylabel="t* (steps)")
    axis.set_title("Step of best test accuracy (× = collapsed, not fitted)", fontsize=9)
    save_figure(figure, path)

    figure, axes = plt.subplots(1, len(lrs), figsize=(4 * len(lrs), 3.5), sharey=True)
    axes = np.atleast_1d(axes)
    l2_lrs = sorted({c.l2 * c.lr for c, _ in runs})
    shades = dict(zip(l2_lrs, plt.cm.plasma(np.linspace(0, 0.9, len(l2_lrs))), strict=True))
    first_seed = min(c.seed for c, _ in runs)
    for axis, lr in zip(axes, lrs, strict=True):
        for config, curve in runs:
            if config.lr == lr and config.seed == first_seed:
                l2_lr = config.l2 * config.lr
                axis.plot(
                    curve.steps * l2_lr,
                    curve.test_accuracy,
                    color=shades[l2_lr],
                    label=f"λη = {l2_lr:.1e}",
                )
        axis.set(xscale="log", xlabel="λ·η·t", title=f"η = {lr:g}")
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(fontsize=7)
    save_figure(figure, collapse_path)


def plot_l2(parts: dict, by_key: dict, seeds: Sequence[int], path: str) -> None:
    """Accuracy vs λ at fixed budgets, and with T ∝ 1/(λη)."""
    plt = pyplot()
    fixed = parts["accuracy_vs_l2"]["fixed_budget"]
    lrs = sorted({r["lr"] for r in fixed})
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for lr in lrs:
        rows = [r for r in fixed if r["lr"] == lr]
        shades = plt.cm.viridis(np.linspace(0, 0.85, len(rows)))
        for row, color in zip(rows, shades, strict=True):
            l2s = np.array(row["l2"])
            mean = np.array([a["mean"] for a in row["accuracy"]])
            std = np.array([a["std"] for a in row["accuracy"]])
            marker = "o" if lr == lrs[0] else "s"
            axes[0].errorbar(
                l2s[l2s > 0],
                mean[l2s > 0],
                yerr=std[l2s > 0],
                color=color,
                marker=marker,
                label=f"η={lr:g}, T={row['budget_steps']}",
            )
            if 0.0 in row["l2"]:
                axes[0].axhline(mean[l2s == 0][0], color=color, linestyle=":", linewidth=1)
    axes[0].set(xscale="log", xlabel="λ", ylabel="test accuracy")
    axes[0].set_title("Fixed budget T (dotted: λ = 0)", fontsize=9)
    axes[0].legend(fontsize=7)
    scaled = parts["accuracy_vs_l2"]["scaled_budget"]
    for lr in lrs:
        rows = [r for r in scaled if r["lr"] == lr]
        axes[1].errorbar(
            [r["l2"] for r in rows],
            [r["accuracy"]["mean"] for r in rows],
            yerr=[r["accuracy"]["std"] for r in rows],
            marker="o",
            label=f"η = {lr:g}",
        )
    axes[1].set(xscale="log", xlabel="λ", ylabel="test accuracy")
    axes[1].set_title("T ∝ 1/(λη) (capped at the run length)", fontsize=9)
    axes[1].legend(fontsize=7)
    save_figure(figure, path)


def plot_autol2(results: dict, curves: dict, by_key: dict, seeds: Sequence[int], path: str):
    """Accuracy and λ over steps for the AutoL2 variants, the best fixed λ and λ = 0."""
    plt = pyplot()
    lr = results["autol2"]["lr"]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    references = {f"fixed λ = {results['best_fixed']['l2']:g} (best)": results["best_fixed"]["l2"]}
    if (lr, 0.0, seeds[0]) in by_key:
        references["λ = 0"] = 0.0
    for name, l2 in references.items():
        curve = by_key[lr, l2, seeds[0]]
        top.plot(curve.steps, curve.test_accuracy, "--", label=name)
        bottom.plot(curve.steps, np.maximum(curve.l2, 1e-8), "--", label=name)
    for name, mine in curves.items():
        top.plot(mine[0].steps, mine[0].test_accuracy, label=name)
        bottom.plot(mine[0].steps, np.maximum(mine[0].l2, 1e-8), label=name)
    top.set(xscale="log", ylabel="test accuracy", xlim=(50, None))
    top.legend(fontsize=7)
    bottom.set(xscale="log", yscale="log", xlabel="step", ylabel="λ (λ = 0 drawn at 1e-8)")
    save_figure(figure, path)


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, dict):
        if value["mean"] is None:
            return "never"
        return f"{value['mean']:.{digits}g} ± {value['std']:.2g}"
    return f"{value:.{digits}g}"


def _steps(reached: dict) -> str:
    """Mean steps over the seeds that got there, and how many did."""
    values = reached["values"]
    hits = [v for v in values if v is not None]
    if not hits:
        return "never"
    return f"{np.mean(hits):.0f} ({len(hits)} of {len(values)} seeds)"


def _met(flag: bool) -> str:
    return "**met**" if flag else "**missed**"


def report(results: dict) -> str:
    """The Markdown report: every goal with its measured figure, met or missed."""
    t_star = results["t_star_fit"]
    l2 = results["accuracy_vs_l2"]
    prediction = results["l2_prediction"]
    auto = results["autol2"]
    lines = [
        f"# The paper's relations on {results['preset']} settings",
        "",
        f"Seeds: {results['seeds']}. Time: {results['elapsed_seconds']:.0f} s "
        f"(parts reused from the cache count as 0). JAX devices: {results['devices']}.",
        "",
        "## 1. t* vs λη",
        f"Setup: {t_star['setup']}. Each run lasts {results['settings']['run_length']}/(λη) "
        f"steps; λη spans {t_star['l2_lr_decades']:.1f} decades.",
        "",
        f"Fitted slope (all seeds pooled): {_fmt(t_star['slope'])} ± "
        f"{_fmt(t_star['slope_stderr'], 2)}, c = {_fmt(t_star['c'])}; per seed: "
        f"{_fmt(t_star['per_seed_slope'])}. Goal: slope in {t_star['goal']}: "
        f"{_met(t_star['met'])}. The fitted runs span λη from "
        f"{t_star['fitted_l2_lr_range'][0]:.2g} to {t_star['fitted_l2_lr_range'][1]:.2g} "
        f"({np.log10(t_star['fitted_l2_lr_range'][1] / t_star['fitted_l2_lr_range'][0]):.1f} "
        "decades).",
        f"Fit over the {t_star['clear_peak_fit']['runs']} runs with a clear peak (peak before "
        "80% of the run and a fall of ≥ 0.5 points after it, collapsed or not): slope "
        f"{_fmt(t_star['clear_peak_fit']['slope'])} ± "
        f"{_fmt(t_star['clear_peak_fit']['slope_stderr'], 2)}.",
        f"Runs fitted: {sum(p['used'] for p in t_star['points'])} of {len(t_star['points'])} "
        f"(runs peaking more than {COLLAPSE_MARGIN} below the best are collapsed and "
        "excluded); peaks in the first half of their run: "
        f"{t_star['peaks_in_first_half']}, median fall after the peak "
        f"{_fmt(t_star['median_drop_after_peak'])} (accuracy) — a slope near −1 from peaks at "
        "the end of each run would only echo the run length.",
        "",
        "![t* vs λη](t_star.png)",
        "![collapse](collapse.png)",
        "",
        "| λ | η | seed | t* | [low, high] | t*/run | peak | final | used |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in t_star["points"]:
        lines.append(
            f"| {p['l2']:.3g} | {p['lr']:g} | {p['seed']} | {p['t_star']:.0f} | "
            f"[{p['low']:.0f}, {p['high']:.0f}] | {p['peak_fraction']:.2f} | "
            f"{p['peak_accuracy']:.3f} | {p['final_accuracy']:.3f} | {p['used']} |"
        )
    lines += ["", "## 2. Accuracy vs λ", f"Setup: {l2['setup']}.", ""]
    lines += ["| η | T | best λ | λ_opt (refined) | interior peak | gain over λ = 0 |"]
    lines += ["|---|---|---|---|---|---|"]
    for row in l2["fixed_budget"]:
        lines.append(
            f"| {row['lr']:g} | {row['budget_steps']} | {row['best_l2']:g} | "
            f"{row['l2_opt']:.3g} | {row['interior_peak']} | "
            f"{100 * row['gain_over_zero_l2']:+.1f} points |"
        )
    gain = results["best_fixed"]["accuracy"]["mean"] - (results["zero_l2"]["accuracy"]["mean"] or 0)
    lines += [
        "",
        f"At η = {auto['lr']:g}, T = {auto['budget_steps']}: best fixed λ = "
        f"{results['best_fixed']['l2']:g} reaches {_fmt(results['best_fixed']['accuracy'])}, "
        f"λ = 0 {_fmt(results['zero_l2']['accuracy'])}: gain {100 * gain:+.1f} points. Goal: "
        f"≥ {100 * GAIN_GOAL:.1f} points: {_met(gain >= GAIN_GOAL)}.",
        "Slope of log λ_opt vs log T (relation 3 predicts −1): "
        + ", ".join(f"η = {k}: {v:.2f}" for k, v in l2["l2_opt_vs_budget_slope"].items()),
        "",
        "![accuracy vs λ](accuracy_vs_l2.png)",
        "",
        "## 3. Predicting λ_opt",
        f"Probe: λ = {prediction['probe_l2']:g}, η = {prediction['lr']:g}, "
        f"{prediction['probe_steps']} steps ({100 * prediction['compute_fraction']:.1f}% of "
        f"the grid at this η). c = {_fmt(prediction['c'])}. For T = "
        f"{prediction['budget_steps']}: λ_pred = {prediction['predicted_l2']:.3g}, grid best "
        f"λ_opt = {prediction['grid_best_l2']:.3g}, ratio {prediction['ratio']:.2f}. Goal: "
        f"within ×{PREDICTION_GOAL:g} using ≤ {100 * PROBE_COMPUTE_GOAL:.0f}% of the grid's "
        f"compute: {_met(prediction['met'])}.",
        "λ_pred/λ_opt at each budget T: "
        + ", ".join(f"T = {t}: {r:.2f}" for t, r in prediction["ratios_by_budget"].items())
        + ".",
    ]
    if not prediction["probe_has_clear_peak"]:
        lines.append(
            "The probe's curve has no clear peak (its maximum lies late in the run or the "
            "curve does not fall after it), so its t* and c are not supported by a peak here "
            "and the goal counts as missed whatever the ratio."
        )
    lines += [
        "",
        "## 4. AutoL2",
        f"Setup: {auto['setup']}; η = {auto['lr']:g}, budget {auto['budget_steps']} steps, "
        f"initial λ = {auto['l2_init']:g}. Target: the best fixed λ's accuracy "
        f"{_fmt(results['best_fixed']['accuracy'])}.",
        "",
        "| variant | accuracy at T | final λ | steps to the best fixed λ's accuracy | ≤ T/2 |",
        "|---|---|---|---|---|",
    ]
    for name, variant in auto["variants"].items():
        lines.append(
            f"| {name} | {_fmt(variant['accuracy'])} | {_fmt(variant['final_l2'])} | "
            f"{_steps(variant['steps_to_best_fixed_accuracy'])} | {_met(variant['met'])} |"
        )
    lines += ["", "![AutoL2](autol2.png)", ""]
    return "\n".join(lines)


def reproduce(workdir: str, *, dataset: str | None, preset: str, seeds: int | None) -> dict:
    """Runs the four parts and writes report.md, the PNG plots and results.json."""
    validate(dataset, preset, seeds)
    import jax

    settings = with_dataset(PRESETS[preset], dataset)
    seed_list = list(range(seeds or settings.seeds))
    start = time.time()
    os.makedirs(workdir, exist_ok=True)

    t_star, runs = t_star_part(settings.t_star, seed_list, runner(settings, "t_star", workdir))
    l2_run = runner(settings, "l2", workdir)
    l2_parts, (by_key, _) = l2_part(settings.l2, seed_list, l2_run)
    auto_parts, auto_curves = autol2_part(
        settings.l2,
        seed_list,
        l2_run,
        l2_parts["accuracy_vs_l2"],
        by_key,
        l2_parts["l2_prediction"]["predicted_l2"],
    )
    results = {
        "preset": preset,
        "seeds": seed_list,
        "devices": str(jax.devices()),
        "settings": {"run_length": settings.t_star.run_length, "preset": repr(settings)},
        "t_star_fit": t_star,
        **l2_parts,
        **auto_parts,
        "elapsed_seconds": time.time() - start,
    }
    plot_t_star(
        t_star, runs, os.path.join(workdir, "t_star.png"), os.path.join(workdir, "collapse.png")
    )
    plot_l2(l2_parts, by_key, seed_list, os.path.join(workdir, "accuracy_vs_l2.png"))
    plot_autol2(auto_parts, auto_curves, by_key, seed_list, os.path.join(workdir, "autol2.png"))
    results["elapsed_seconds"] = time.time() - start
    write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=1))
    write_atomic(os.path.join(workdir, "report.md"), report(results))
    return results


def main(argv: Sequence[str]) -> None:
    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        validate(FLAGS.dataset, FLAGS.preset, FLAGS.seeds)
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
    flags.DEFINE_integer("seeds", None, "Number of seeds (default: the preset's).")
    flags.mark_flag_as_required("workdir")


if __name__ == "__main__":
    define_flags()
    app.run(main)
