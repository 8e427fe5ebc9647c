r"""The paper's empirical relations reproduced end to end: report, plots, numbers.

Four parts, each trained by a runner (`runners`: one vmapped `l2reg.training.sweep`, or the
trainer) and analysed with `l2reg.relations` (`parts`):

1. t* vs λη: a grid over decades of λη and several learning rates, each run `run_length/(λη)`
   steps; t* by the robust estimator, the fitted power law, and the accuracy curves against
   λ·η·t (they collapse when relation 1 holds).
2. Accuracy vs λ: at fixed budgets T (λ_opt(T) is the peak) and with T ∝ 1/(λη); λ = 0 for
   comparison.
3. Predicting λ_opt: c from one cheap large-λ probe run, λ_pred = c/(ηT), against the grid's
   best λ at T.
4. AutoL2 (our defaults, the authors' released settings, a floor at λ_pred, a step
   learning-rate schedule) against the best fixed λ and λ = 0 at the same budget.

`reproduce` runs them for a `Preset` and writes `report.md` (`report`), PNG plots and
`results.json`, each with the versions and machine they were computed on (`l2reg.versions`)
and each part's training time, kept with its cache so that a rerun that reuses it reports the
time it took when first trained. A preset is a config file
(`experiments/configs/reproduce_*.py`, read by `Preset.from_config`); the command line is
`experiments/reproduce.py`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import logging

from l2reg import checks, versions
from l2reg.files import check_folder, write_atomic
from l2reg.reproduction import parts, report, runners
from l2reg.reproduction.parts import L2Grid, TStarGrid
from l2reg.reproduction.runners import Runner, SweepRunner, TrainerRunner, trainer_eval_every
from l2reg.training import sweep

# Seeds per configuration: a bound that catches a mistyped count before it is expanded into a
# list of runs, far above what any preset trains.
MAX_SEEDS = 100
DRIVERS = ("sweep", "trainer")

__all__ = [
    "MAX_SEEDS",
    "L2Grid",
    "Preset",
    "Runner",
    "SweepRunner",
    "TStarGrid",
    "TrainerRunner",
    "reproduce",
]


@dataclasses.dataclass(frozen=True)
class Preset:
    """The grids of every part, and how they are trained.

    Attributes:
      t_star, l2: the grids of part 1 and of parts 2–4, each with its trainer config.
      seeds: seeds per configuration, in [1, MAX_SEEDS].
      evals_per_decade: log-spaced test evaluations per decade (sweeps), ≥ 1.
      driver: 'sweep' trains each part's runs as one vmapped `l2reg.training.sweep`;
        'trainer' trains every run with the data-parallel trainer, in `workdir/runs/`.
      trainer_evals: test evaluations per trainer run (evenly spaced), ≥ 1; the L2 grid's
        budgets must fall on them (multiples of num_steps // trainer_evals), since the
        trainer cannot evaluate anywhere else.
    """

    t_star: TStarGrid
    l2: L2Grid
    seeds: int
    evals_per_decade: int = 12
    driver: str = "sweep"
    trainer_evals: int = 100

    def __post_init__(self):
        for name, grid_type in (("t_star", TStarGrid), ("l2", L2Grid)):
            if not isinstance(getattr(self, name), grid_type):
                raise ValueError(
                    f"{name} must be a {grid_type.__name__}, got {getattr(self, name)!r}"
                )
        checks.integer("seeds", self.seeds, maximum=MAX_SEEDS)
        checks.integer("evals_per_decade", self.evals_per_decade)
        checks.integer("trainer_evals", self.trainer_evals)
        if self.driver not in DRIVERS:
            raise ValueError(f"driver must be one of {DRIVERS}, got {self.driver!r}")
        if self.driver == "sweep":
            return
        every = trainer_eval_every(self.l2.num_steps, self.trainer_evals)
        off = [b for b in self.l2.budgets if b % every and b != self.l2.num_steps]
        if off:
            raise ValueError(
                f"budgets {off} are not trainer evaluations: with num_steps="
                f"{self.l2.num_steps} and trainer_evals={self.trainer_evals} the trainer "
                f"evaluates every {every} steps, so each budget must be a multiple of {every}"
            )

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> Preset:
        """The preset of a config file (`experiments/configs/reproduce_*.py`): fields
        `t_star` and `l2` (a grid's fields, its trainer config as `run`), `seeds`,
        `evals_per_decade`, `driver` and `trainer_evals`."""

        def grid(grid_type, fields: ml_collections.ConfigDict):
            fields = fields.to_dict()
            run = ml_collections.ConfigDict(fields.pop("run"))
            return grid_type(config=run, **{k: _as_tuple(v) for k, v in fields.items()})

        return cls(
            t_star=grid(TStarGrid, config.t_star),
            l2=grid(L2Grid, config.l2),
            seeds=config.seeds,
            evals_per_decade=config.evals_per_decade,
            driver=config.driver,
            trainer_evals=config.trainer_evals,
        )

    def runner(self, part: str, workdir: str, name: str) -> Runner:
        """How `part` ('t_star' or 'l2') trains its runs; `name` labels the trainer's runs."""
        grid = self.t_star if part == "t_star" else self.l2
        if self.driver == "trainer":
            return TrainerRunner(workdir, grid.config, name, self.trainer_evals)
        return SweepRunner(workdir, grid.config, self.evals_per_decade)


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def reproduce(
    workdir: str,
    settings: Preset,
    *,
    name: str,
    seeds: Sequence[int],
) -> dict:
    """Runs the four parts and writes report.md, the PNG plots and results.json in `workdir`.

    Args:
      workdir: the output folder, created on the first write (a run that fails before then
        leaves none); the runners keep their caches there.
      settings: the grids of the parts.
      name: the preset's name, for the report.
      seeds: the seeds of every configuration: 1 to MAX_SEEDS distinct int32 integers.

    Returns:
      The results, as written to results.json.
    """
    import jax

    start = time.time()
    if not isinstance(settings, Preset):
        raise ValueError(f"settings must be a Preset, got {settings!r}")
    checks.integer("the number of seeds", len(seeds), maximum=MAX_SEEDS)
    seeds = list(seeds)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    t_star_runner = settings.runner("t_star", workdir, name)
    l2_runner = settings.runner("l2", workdir, name)
    # Every run of parts 1–3 is known now: check them all before the first one trains.
    t_star_runs = [
        run for _, run in parts.t_star_runs(settings.t_star, seeds, t_star_runner.momentum)
    ]
    grid_runs, probe_runs = parts.l2_runs(settings.l2, seeds)
    sweep.validate(settings.t_star.config, t_star_runs)
    sweep.validate(settings.l2.config, grid_runs + probe_runs)
    check_folder(workdir)  # made on the first write, so a failed start leaves nothing behind
    progress = runners.Progress(
        {
            "t_star": sum(run.steps for run in t_star_runs),
            "l2": sum(run.steps for run in grid_runs),
            "probe": sum(run.steps for run in probe_runs),
            "autol2": len(parts.AUTOL2_VARIANTS) * len(seeds) * settings.l2.num_steps,
        }
    )
    t_star_runner, l2_runner = progress.wrap(t_star_runner), progress.wrap(l2_runner)
    t_star, runs = parts.t_star_part(settings.t_star, seeds, t_star_runner)
    l2_parts, (by_key, _) = parts.l2_part(settings.l2, seeds, l2_runner)
    auto_parts, auto_curves = parts.autol2_part(
        settings.l2,
        seeds,
        l2_runner,
        l2_parts["accuracy_vs_l2"],
        by_key,
        l2_parts["l2_prediction"]["predicted_l2"],
    )
    # Undefined figures (a slope's standard error from two points, a difference with a
    # missing side) are None from here on: in the plots, the report and the JSON alike.
    results = _without_nan(
        {
            "preset": name,
            "seeds": seeds,
            "devices": str(jax.devices()),
            "environment": versions.record(),
            **progress.summary(),
            "settings": {
                "run_length": settings.t_star.run_length,
                "scaled_length": settings.l2.scaled_length,
                "preset": repr(settings),
                "t_star_config": runners.rundir.config_json(settings.t_star.config),
                "l2_config": runners.rundir.config_json(settings.l2.config),
            },
            "t_star_fit": t_star,
            **l2_parts,
            **auto_parts,
            "elapsed_seconds": time.time() - start,
        }
    )
    report.plot_t_star(
        results["t_star_fit"],
        runs,
        os.path.join(workdir, "t_star.png"),
        os.path.join(workdir, "collapse.png"),
    )
    report.plot_l2(results, by_key, seeds, os.path.join(workdir, "accuracy_vs_l2.png"))
    report.plot_autol2(results, auto_curves, by_key, seeds, os.path.join(workdir, "autol2.png"))
    results["elapsed_seconds"] = time.time() - start
    write_atomic(
        os.path.join(workdir, "results.json"), json.dumps(results, indent=1, allow_nan=False)
    )
    write_atomic(os.path.join(workdir, "report.md"), report.report(results))
    if len(results["reused_parts"]) == len(progress.parts):
        logging.info(
            "every part reused from %s's cache: nothing trained (first trained in %s)",
            workdir,
            report.seconds(results["training_seconds"]),
        )
    return results


def _without_nan(value: Any) -> Any:
    """`value` with every non-finite float, however deeply nested, replaced by None (JSON has
    no NaN or infinity: strict parsers reject them)."""
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
