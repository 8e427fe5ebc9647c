"""How the reproduction trains a list of `l2reg.sweep.Config`s into `l2reg.sweep.Curves`.

A runner is called as `run(name, configs, eval_at=steps)` and has a `label` describing its
setup and the SGD `momentum` μ it trains with (the relations use the effective learning rate
η/(1−μ)): `SweepRunner` trains them as one vmapped sweep and caches the curves; `TrainerRunner`
trains them one by one through the data-parallel trainer, for models and data sets too large
to vmap. `eval_at` asks for evaluations after those steps besides the runner's own schedule,
where the runner can add them; each curve's `steps` say which evaluations were made.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import tqdm
from absl import logging

from l2reg import relations, sweep
from l2reg.files import write_atomic


@functools.cache
def training_code_digest() -> str:
    """A hash of the library's source outside `l2reg.reproduction`: the code that trains. Cached
    curves are keyed by it, so that a change to how runs train is never answered from a cache."""
    return source_digest(pathlib.Path(sweep.__file__).parent)


def run_key(settings: str) -> str:
    """16 hex digits of the SHA-256 of `settings` and of `training_code_digest()`: a cache key
    that changes with either."""
    return hashlib.sha256((settings + training_code_digest()).encode()).hexdigest()[:16]


def source_digest(package: pathlib.Path) -> str:
    """SHA-256 of the names and contents of the `.py` files under `package`, its `reproduction`
    folder left out."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        if "reproduction" not in path.relative_to(package).parts:
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class SweepRunner:
    """Trains configurations as one vmapped `l2reg.sweep`, caching the curves in
    `workdir/cache/{name}-{hash}.npz`, the hash of the settings and of the library's training
    code (`training_code_digest`), so that a rerun of the same code reuses them."""

    workdir: str
    setup: sweep.Setup
    evals_per_decade: int

    @property
    def label(self) -> str:
        return self.setup.describe()

    @property
    def momentum(self) -> float:
        return self.setup.momentum

    def __call__(
        self, name: str, configs: Sequence[sweep.Config], eval_at: Sequence[int] = ()
    ) -> list[sweep.Curves]:
        """The configurations' curves, evaluated at the sweep's log-spaced steps and after
        every step of `eval_at` that a run reaches."""
        eval_at = tuple(eval_at)
        settings = repr((self.setup, tuple(configs), self.evals_per_decade, eval_at))
        path = os.path.join(self.workdir, "cache", f"{name}-{run_key(settings)}.npz")
        if os.path.exists(path):
            logging.info("Reusing %s", path)
            with np.load(path) as stored:
                return [
                    sweep.Curves(*(stored[f"{i}/{field}"] for field in sweep.Curves._fields))
                    for i in range(len(configs))
                ]
        logging.info("Training %d configurations for %s", len(configs), name)
        curves = sweep.run(
            self.setup, configs, evals_per_decade=self.evals_per_decade, eval_at=eval_at
        )
        arrays = {
            f"{i}/{field}": value
            for i, curve in enumerate(curves)
            for field, value in curve._asdict().items()
        }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(path, buffer.getvalue())
        return curves


def trainer_eval_every(num_steps: int, evals: int) -> int:
    """The trainer's steps between test evaluations for a run of `num_steps` steps evaluated
    about `evals` times (it also evaluates after the last step)."""
    return max(1, num_steps // evals)


@dataclasses.dataclass(frozen=True, eq=False)
class TrainerRunner:
    """Trains configurations one after another with the trainer (`l2reg.train`), each in
    `workdir/runs/{name}-{hash}`, the hash of its trainer config and of the library's training
    code (`training_code_digest`). The trainer resumes from its checkpoints, so a rerun of the
    same code reuses finished runs and continues interrupted ones; after a change to the
    training code the runs start afresh in new folders (the old ones are left as they are).

    The trainer evaluates every `trainer_eval_every(num_steps, evals)` steps and after the
    last one; it cannot add the steps of `eval_at` off that schedule (`Preset` checks that a
    trainer preset's budgets lie on it)."""

    workdir: str
    config: Any  # the base trainer ConfigDict
    config_name: str
    evals: int  # test evaluations per run (the trainer evaluates every steps // evals)

    @property
    def momentum(self) -> float:
        return self.config.momentum if self.config.optimizer == "momentum" else 0.0

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
        trainer.eval_every = trainer_eval_every(config.num_steps, self.evals)
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
        clock = relations.effective_lr(config.lr, self.momentum)
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

    def __call__(
        self, name: str, configs: Sequence[sweep.Config], eval_at: Sequence[int] = ()
    ) -> list[sweep.Curves]:
        """The configurations' curves at the trainer's evaluations (`eval_at` adds none)."""
        from l2reg import train

        curves = []
        for config in tqdm.tqdm(configs, desc=name, unit="run"):
            trainer = self.trainer_config(config)
            key = run_key(trainer.to_json_best_effort())
            folder = os.path.join(self.workdir, "runs", f"{name}-{key}")
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
