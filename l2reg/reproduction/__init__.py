r"""The paper's empirical relations reproduced end to end, and λ chosen without a grid search.

Two parts, each trained by runners (`runners`: one vmapped `l2reg.training.sweep` per data
draw, or the trainer) over replicas (`stats.Replica`: data draw × seed):

1. **Relation 1** (`relation1`), on the calibration setup: t* against λη over decades of λη
   and several learning rates, each run `run_length/(λη)` steps, read and fitted by a protocol
   fixed in advance (validation accuracy, exclusion rules, the slope over a grid of analysis
   choices), and relation 2's T ∝ 1/(λη) half from the same runs.
2. **λ selection** (`selection`), on every setup (the calibration setup first, then the held-out
   ones): a dense λ grid read at budgets over 1.5 decades or more (relation 2 and relation 3:
   k = λ_opt·η·T), one probe per replica, the predicted λ, and L2 schedules built on the
   relations, each against the envelope of the best fixed λ at each budget.

`reproduce` runs them for a `Preset` and writes `report.md` (`report`), PNG plots and
`results.json`, all or none of them (`l2reg.files.write_all`), each with the versions and
machine they were computed on (`l2reg.versions`) and each call's training time, kept with its
cache so that a rerun that reuses it reports the time it took when first trained. A preset is a
config file (`experiments/configs/reproduce_*.py`, read by `Preset.from_config`); the command
line is `experiments/reproduce.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import logging

from l2reg import checks, files, versions
from l2reg.reproduction import parts, probe, relation1, report, runners, selection, stats
from l2reg.reproduction.parts import TStarGrid
from l2reg.reproduction.runners import Runner, SweepRunner, TrainerRunner, trainer_eval_every
from l2reg.reproduction.selection import Setup
from l2reg.reproduction.stats import Replica
from l2reg.training import sweep

# Draws and seeds per configuration: bounds that catch a mistyped count before it is expanded
# into a list of runs, far above what any preset trains.
MAX_SEEDS = 100
MAX_DRAWS = 100
DRIVERS = ("sweep", "trainer")
# What `suggest_l2` reads (`selection.calibration_record`), written beside results.json.
CALIBRATION_FILE = "calibration.json"

__all__ = [
    "MAX_DRAWS",
    "MAX_SEEDS",
    "Preset",
    "Runner",
    "Setup",
    "SweepRunner",
    "TStarGrid",
    "TrainerRunner",
    "draw_config",
    "reproduce",
]


def draw_config(config: ml_collections.ConfigDict, draw: int) -> ml_collections.ConfigDict:
    """`config` for data draw `draw`: its label-noise and validation-split seeds set to `draw`
    (the draw fixes which labels are flipped and which examples are held out)."""
    config = config.copy_and_resolve_references()
    config.data_options.label_noise_seed = draw
    config.data_options.validation_seed = draw
    return config


@dataclasses.dataclass(frozen=True)
class Preset:
    """The grids of every part, the replicas, and how they are trained.

    Attributes:
      t_star: part 1's grid (relation 1), on the calibration setup's model and data.
      setups: part 2's setups, exactly one of them with role 'calibration' (studied first: the
        predictor's correction κ is fitted there and carried to the held-out ones).
      draws: data draws, in [1, MAX_DRAWS]: draw d sets the label-noise and validation seeds.
      seeds: seeds per draw, in [1, MAX_SEEDS].
      evals_per_decade: log-spaced evaluations per decade (sweeps), ≥ 1.
      driver: 'sweep' trains each call as one vmapped `l2reg.training.sweep` per draw;
        'trainer' trains every run with the data-parallel trainer, in `workdir/runs/`.
      trainer_evals: evaluations per trainer run (evenly spaced), ≥ 1; a setup's budgets
        must fall on them (multiples of budgets[-1] // trainer_evals), since the trainer
        cannot evaluate anywhere else.
    """

    t_star: TStarGrid
    setups: tuple[Setup, ...]
    draws: int
    seeds: int
    evals_per_decade: int = 12
    driver: str = "sweep"
    trainer_evals: int = 100

    def __post_init__(self):
        if not isinstance(self.t_star, TStarGrid):
            raise ValueError(f"t_star must be a TStarGrid, got {self.t_star!r}")
        setups = tuple(self.setups)
        if not setups or not all(isinstance(s, Setup) for s in setups):
            raise ValueError(f"setups must hold at least one Setup, got {setups!r}")
        roles = [s.role for s in setups]
        if roles.count("calibration") != 1:
            raise ValueError(f"setups must hold exactly one 'calibration' setup, got roles {roles}")
        names = [s.name for s in setups]
        if len(set(names)) != len(names):
            raise ValueError(f"setups must have distinct names, got {names}")
        plots = {}
        for setup_name in names:
            other = plots.setdefault(plot_name(setup_name), setup_name)
            if other != setup_name:
                raise ValueError(
                    f"setups {other!r} and {setup_name!r} would both plot to "
                    f"{plot_name(setup_name)}: rename one"
                )
        checks.integer("draws", self.draws, maximum=MAX_DRAWS)
        checks.integer("seeds", self.seeds, maximum=MAX_SEEDS)
        checks.integer("evals_per_decade", self.evals_per_decade)
        checks.integer("trainer_evals", self.trainer_evals)
        if self.driver not in DRIVERS:
            raise ValueError(f"driver must be one of {DRIVERS}, got {self.driver!r}")
        if self.driver == "sweep":
            return
        for setup in setups:
            every = trainer_eval_every(setup.num_steps, self.trainer_evals)
            off = [b for b in setup.budgets if b % every and b != setup.num_steps]
            if off:
                raise ValueError(
                    f"setup {setup.name!r}: budgets {off} are not trainer evaluations: with "
                    f"{setup.num_steps} steps and trainer_evals={self.trainer_evals} the "
                    f"trainer evaluates every {every} steps, so each budget must be a "
                    f"multiple of {every}"
                )

    @property
    def calibration(self) -> Setup:
        return next(s for s in self.setups if s.role == "calibration")

    def replicas(self) -> list[Replica]:
        return stats.replicas(self.draws, self.seeds)

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> Preset:
        """The preset of a config file (`experiments/configs/reproduce_*.py`): `t_star` (the
        grid's fields, its trainer config as `run`), `setups` ({name: a `Setup`'s fields, its
        trainer config as `run`}), `draws`, `seeds`, `evals_per_decade`, `driver` and
        `trainer_evals`."""
        fields = config.t_star.to_dict()
        t_star = TStarGrid(
            config=ml_collections.ConfigDict(fields.pop("run")),
            **{k: _as_tuple(v) for k, v in fields.items()},
        )
        setups = []
        for name, setup in config.setups.items():
            fields = setup.to_dict()
            run = ml_collections.ConfigDict(fields.pop("run"))
            setups.append(
                Setup(name=name, config=run, **{k: _as_tuple(v) for k, v in fields.items()})
            )
        # The calibration setup first: the held-out ones take its correction.
        setups.sort(key=lambda s: s.role != "calibration")
        return cls(
            t_star=t_star,
            setups=tuple(setups),
            draws=config.draws,
            seeds=config.seeds,
            evals_per_decade=config.evals_per_decade,
            driver=config.driver,
            trainer_evals=config.trainer_evals,
        )

    def runner(self, config: ml_collections.ConfigDict, draw: int, workdir: str, name: str):
        """How the runs of `config` in data draw `draw` are trained; `name` labels the
        trainer's runs."""
        config = draw_config(config, draw)
        if self.driver == "trainer":
            return TrainerRunner(workdir, config, name, self.trainer_evals)
        return SweepRunner(workdir, config, self.evals_per_decade)


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _trainer(preset: Preset, config, workdir: str, name: str, progress: runners.Progress):
    """`train(call, [(replica, run)], eval_at)` for `selection.study`: one runner call per data
    draw (each draw's data differ), the curves back in the order of the runs."""

    def train(call: str, runs: list[tuple[Replica, sweep.Run]], eval_at: Sequence[int]):
        curves: list = [None] * len(runs)
        for draw in sorted({replica.draw for replica, _ in runs}):
            indices = [i for i, (replica, _) in enumerate(runs) if replica.draw == draw]
            runner = progress.wrap(preset.runner(config, draw, workdir, name))
            mine = runner(_call_name(call, draw), [runs[i][1] for i in indices], eval_at=eval_at)
            for index, curve in zip(indices, mine, strict=True):
                curves[index] = curve
        return curves

    return train


def _call_name(call: str, draw: int) -> str:
    return f"{call} (draw {draw})"


def _planned(preset: Preset, replicas: list[Replica]) -> dict[str, int]:
    """Every runner call the reproduction makes, in order, with its member-steps."""
    planned: dict[str, int] = {}

    def add(call, runs):
        for replica, run in runs:
            key = _call_name(call, replica.draw)
            planned[key] = planned.get(key, 0) + run.steps

    add("relation 1: t* grid", _t_star_runs(preset, replicas))
    for setup in preset.setups:
        add(f"{setup.name}: λ grid", selection.grid_runs(setup, replicas))
        add(f"{setup.name}: probe", selection.probe_runs(setup, replicas))
        ones = [1.0] * len(replicas)
        add(f"{setup.name}: predicted λ", selection.predicted_runs(setup, replicas, ones, 1.0))
        add(f"{setup.name}: schedules", selection.schedule_runs(setup, replicas, ones, 1.0))
    return planned


def _t_star_runs(preset: Preset, replicas: list[Replica]) -> list[tuple[Replica, sweep.Run]]:
    momentum = runners.recipe.effective_momentum(preset.t_star.config)
    return [
        (replica, run)
        for replica in replicas
        for _, run in parts.t_star_runs(preset.t_star, [replica.seed], momentum)
    ]


def reproduce(workdir: str, settings: Preset, *, name: str) -> dict:
    """Runs both parts for every replica and writes report.md, the PNG plots and results.json
    in `workdir`, all or none of them.

    Args:
      workdir: the output folder, created on the first write (a run that fails before then
        leaves none); the runners keep their caches there.
      settings: the preset.
      name: the preset's name, for the report.

    Returns:
      The results, as written to results.json.
    """
    import jax

    start = time.time()
    if not isinstance(settings, Preset):
        raise ValueError(f"settings must be a Preset, got {settings!r}")
    replicas = settings.replicas()
    # Every run whose numbers are known now is checked before the first one trains; the
    # predicted λ and schedules (which need the probes' c) with a placeholder c.
    t_star_runs = _t_star_runs(settings, replicas)
    for draw in range(settings.draws):
        sweep.validate(draw_config(settings.t_star.config, draw), [run for _, run in t_star_runs])
        for setup in settings.setups:
            ones = [1.0] * len(replicas)
            runs = [
                *selection.grid_runs(setup, replicas),
                *selection.probe_runs(setup, replicas),
                *selection.predicted_runs(setup, replicas, ones, 1.0),
                *selection.schedule_runs(setup, replicas, ones, 1.0),
            ]
            sweep.validate(draw_config(setup.base_config(), draw), [run for _, run in runs])
    for setup in settings.setups:
        probe.check(setup.base_config(), setup.probe_l2, setup.probe_length, probe.EVALS)
    files.check_folder(workdir)  # made on the first write, so a failed start leaves nothing
    progress = runners.Progress(_planned(settings, replicas))

    t_star_train = _trainer(settings, settings.t_star.config, workdir, name, progress)
    t_star_curves = t_star_train("relation 1: t* grid", t_star_runs, ())
    momentum = runners.recipe.effective_momentum(settings.t_star.config)
    points = [
        relation1.Point.of_run(replica, l2_lr, run, curve, momentum)
        for (replica, run), (l2_lr, _), curve in zip(
            t_star_runs,
            [
                pair
                for replica in replicas
                for pair in parts.t_star_runs(settings.t_star, [replica.seed], momentum)
            ],
            t_star_curves,
            strict=True,
        )
    ]
    relation_1 = relation1.analyse(
        points,
        run_length=settings.t_star.run_length,
        label_noise=settings.t_star.config.data_options.get("label_noise", 0.0),
    )

    studies, study_curves, kappa = [], [], None
    for setup in settings.setups:
        train = _trainer(settings, setup.base_config(), workdir, name, progress)
        relation_1_c = relation_1.get("c") if setup.role == "calibration" else None
        result, curves = selection.study(
            setup,
            replicas,
            train,
            kappa=kappa,
            relation_1_c=relation_1_c if isinstance(relation_1_c, dict) else None,
        )
        if setup.role == "calibration":
            kappa = result["correction"]["kappa"]
        studies.append(result)
        study_curves.append(curves)
    # Undefined figures (a slope's standard error from two points, a difference with a
    # missing side) are None from here on: in the plots, the report and the JSON alike.
    results = stats.without_nan(
        {
            "preset": name,
            "draws": settings.draws,
            "seeds": settings.seeds,
            "replicas": [list(r) for r in replicas],
            "devices": str(jax.devices()),
            "environment": versions.record(),
            **progress.summary(),
            "settings": {
                "preset": repr(settings),
                "t_star_config": runners.rundir.config_json(settings.t_star.config),
                "setup_configs": {
                    s.name: runners.rundir.config_json(s.base_config()) for s in settings.setups
                },
            },
            "relation_1": relation_1,
            "setups": studies,
        }
    )
    results["elapsed_seconds"] = time.time() - start
    _write_outputs(workdir, results, points, study_curves)
    if len(results["reused_parts"]) == len(progress.parts):
        logging.info(
            "every part reused from %s's cache: nothing trained (first trained in %s)",
            workdir,
            report.seconds(results["training_seconds"]),
        )
    return results


def plot_name(setup_name: str) -> str:
    """The file name of a setup's plot: 'selection-' and its name's letters and digits."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in setup_name.lower()).strip("-")
    return f"selection-{'-'.join(filter(None, slug.split('-')))}.png"


def _write_outputs(workdir: str, results: dict, points, study_curves) -> None:
    """Renders every output into a staging folder, then writes them all or none
    (`files.write_all`): a failure leaves the previous outputs as they were."""

    def render(staging: str) -> None:
        relation1.plot(results["relation_1"], points, os.path.join(staging, "t_star.png"))
        for result, curves in zip(results["setups"], study_curves, strict=True):
            selection.plot(result, curves, os.path.join(staging, plot_name(result["setup"])))

    outputs = files.rendered(workdir, render)
    outputs[os.path.join(workdir, "results.json")] = json.dumps(results, indent=1, allow_nan=False)
    outputs[os.path.join(workdir, "report.md")] = report.report(results)
    outputs[os.path.join(workdir, CALIBRATION_FILE)] = json.dumps(
        selection.calibration_record(results), indent=1, allow_nan=False
    )
    files.write_all(outputs)
