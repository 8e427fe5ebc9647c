r"""The paper's empirical relations reproduced end to end: report, plots, numbers.

Four parts, each trained by a runner (`runners`: one vmapped `l2reg.sweep`, or the trainer)
and analysed with `l2reg.relations` (`parts`):

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
`results.json`. The presets themselves, and the command line, are in
`experiments/reproduce.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from l2reg.files import check_folder, write_atomic
from l2reg.reproduction import parts, report
from l2reg.reproduction.parts import L2Grid, TStarGrid
from l2reg.reproduction.runners import Runner, SweepRunner, TrainerRunner

__all__ = [
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


def reproduce(
    workdir: str,
    settings: Preset,
    *,
    name: str,
    seeds: Sequence[int],
    t_star_runner: Runner,
    l2_runner: Runner,
) -> dict:
    """Runs the four parts and writes report.md, the PNG plots and results.json in `workdir`.

    Args:
      workdir: the output folder, created on the first write (a run that fails before then
        leaves none); the runners keep their caches there.
      settings: the grids of the parts.
      name: the preset's name, for the report.
      seeds: the seeds of every configuration.
      t_star_runner: trains part 1's configurations.
      l2_runner: trains the configurations of parts 2–4.

    Returns:
      The results, as written to results.json.
    """
    import jax

    start = time.time()
    check_folder(workdir)  # made on the first write, so a failed start leaves nothing behind
    seeds = list(seeds)
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
    results = {
        "preset": name,
        "seeds": seeds,
        "devices": str(jax.devices()),
        "settings": {"run_length": settings.t_star.run_length, "preset": repr(settings)},
        "t_star_fit": t_star,
        **l2_parts,
        **auto_parts,
        "elapsed_seconds": time.time() - start,
    }
    report.plot_t_star(
        t_star, runs, os.path.join(workdir, "t_star.png"), os.path.join(workdir, "collapse.png")
    )
    report.plot_l2(l2_parts, by_key, seeds, os.path.join(workdir, "accuracy_vs_l2.png"))
    report.plot_autol2(auto_parts, auto_curves, by_key, seeds, os.path.join(workdir, "autol2.png"))
    results["elapsed_seconds"] = time.time() - start
    write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=1))
    write_atomic(os.path.join(workdir, "report.md"), report.report(results))
    return results
