"""Relation 1's grid: the runs of the t* measurement (their analysis is `relation1`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import ml_collections

from l2reg import checks, relations
from l2reg.training import sweep


def _check_positive(name: str, value: Any) -> None:
    checks.number(name, value, lambda x: math.isfinite(x) and x > 0, "finite and > 0")


def _check_rates(name: str, values: Any, *, at_least: int = 1) -> None:
    """`values`: at least `at_least` distinct finite numbers > 0 (learning rates, λη)."""
    values = tuple(values)
    for value in values:
        _check_positive(f"each of {name}", value)
    if len(set(values)) != len(values) or len(values) < at_least:
        raise ValueError(
            f"{name} must hold {at_least} or more distinct values, got {values!r}"
            if at_least > 1
            else f"{name} must hold distinct values (at least one), got {values!r}"
        )


def _check_config(config: Any) -> None:
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(f"t_star's config must be a trainer ConfigDict, got {config!r}")


@dataclasses.dataclass(frozen=True)
class TStarGrid:
    """Part 1: runs of `run_length/(λη)` steps over a grid of λη and learning rates.

    η in λη is the effective learning rate η/(1−μ) under momentum μ (the η of the
    relations), so a run at SGD learning rate `lr` and product λη has λ = λη·(1−μ)/lr.

    Attributes:
      config: the trainer config of the runs (the model, data, loss and optimizer).
      lrs: distinct SGD learning rates η, each > 0.
      l2_lrs: the products λη, per step; at least 2 distinct values, each > 0 (the fit of
        t* against λη needs two).
      run_length: each run's length in units of 1/(λη) steps, > 0.
    """

    config: ml_collections.ConfigDict | None = dataclasses.field(repr=False)
    lrs: tuple[float, ...]
    l2_lrs: tuple[float, ...]
    run_length: float

    def __post_init__(self):
        _check_config(self.config)
        _check_rates("lrs", self.lrs)
        _check_rates("l2_lrs", self.l2_lrs, at_least=2)
        _check_positive("run_length", self.run_length)


def t_star_runs(
    grid: TStarGrid, seeds: Sequence[int], momentum: float
) -> list[tuple[float, sweep.Run]]:
    """Part 1's runs as (λη, configuration) pairs: λ = λη/η_eff, run_length/(λη) steps, with
    η_eff = η/(1−momentum)."""
    runs = []
    for seed in seeds:
        for lr in grid.lrs:
            effective = relations.effective_lr(lr, momentum)
            for l2_lr in grid.l2_lrs:
                steps = max(1, round(grid.run_length / l2_lr))
                runs.append((l2_lr, sweep.Run(l2_lr / effective, lr, seed, steps, l2_mode="fixed")))
    return runs
