"""How the reproduction trains a list of `sweep.Run`s of a trainer config into `Curves`.

A runner is called as `run(name, runs, eval_at=steps)` and has a `label` describing its
setup and the SGD `momentum` μ that λ goes through (the relations use the effective learning
rate η/(1−μ)): `SweepRunner` trains them as one vmapped sweep and caches the curves;
`TrainerRunner` trains them one by one through the data-parallel trainer, for models and data
sets too large to vmap. Either way each run is the run its config defines (`sweep.Run.config`).
`eval_at` asks for evaluations after those steps besides the runner's own schedule, where the
runner can add them; each curve's `steps` say which evaluations were made.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import pathlib
import zipfile
from collections.abc import Sequence

import ml_collections
import numpy as np
import tqdm
from absl import logging

from l2reg.files import write_atomic
from l2reg.training import recipe, rundir, sweep
from l2reg.training.rundir import Curves


def describe(config: ml_collections.ConfigDict) -> str:
    """A one-line label of a trainer config's setup, e.g. 'digits(label_noise=0.2), mlp(…), …'."""
    data = ", ".join(f"{name}={value}" for name, value in config.data_options.items())
    options = ", ".join(f"{name}={value}" for name, value in config.model_options.items())
    loss = config.loss + (f" ({config.mse_targets} targets)" if config.loss == "mse" else "")
    momentum = f", momentum {config.momentum}" if config.optimizer == "momentum" else ""
    return (
        f"{config.dataset}({data}), {config.model}({options}), {loss}, "
        f"{config.optimizer} batch {config.batch_size}{momentum}"
    )


@functools.cache
def training_code_digest() -> str:
    """A hash of the library's source outside `l2reg.reproduction`: the code that trains. Cached
    curves are keyed by it, so that a change to how runs train is never answered from a cache."""
    return source_digest(pathlib.Path(recipe.__file__).parent.parent)


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


@dataclasses.dataclass(frozen=True, eq=False)
class SweepRunner:
    """Trains runs of `config` as one vmapped `l2reg.training.sweep`, caching the curves in
    `workdir/cache/{name}-{hash}.npz`, the hash of the settings and of the library's training
    code (`training_code_digest`), so that a rerun of the same code reuses them."""

    workdir: str
    config: ml_collections.ConfigDict
    evals_per_decade: int

    @property
    def label(self) -> str:
        return describe(self.config)

    @property
    def momentum(self) -> float:
        return recipe.effective_momentum(self.config)

    def __call__(
        self, name: str, runs: Sequence[sweep.Run], eval_at: Sequence[int] = ()
    ) -> list[Curves]:
        """The runs' curves, evaluated at the sweep's log-spaced steps and after every step
        of `eval_at` that a run reaches."""
        eval_at = tuple(eval_at)
        settings = repr(
            (rundir.config_json(self.config), tuple(runs), self.evals_per_decade, eval_at)
        )
        path = os.path.join(self.workdir, "cache", f"{name}-{run_key(settings)}.npz")
        if os.path.exists(path):
            cached = _read_cache(path, len(runs))
            if cached is not None:
                return cached
        logging.info("Training %d runs for %s", len(runs), name)
        curves = sweep.run(
            self.config,
            runs,
            evals_per_decade=self.evals_per_decade,
            eval_at=eval_at,
            progress=name,
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


def _read_cache(path: str, count: int) -> list[Curves] | None:
    """The `count` cached curves in `path`, or None (with a warning, the file moved aside to
    `path.corrupt`) when it cannot be read: cut short, overwritten, or of another layout."""
    try:
        # allow_pickle=False: a cache file never runs code, whoever wrote it.
        with np.load(path, allow_pickle=False) as stored:
            curves = [
                Curves(*(stored[f"{i}/{field}"] for field in Curves._fields)) for i in range(count)
            ]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        logging.warning(
            "%s cannot be read (%s): moved to %s.corrupt, retraining", path, error, path
        )
        os.replace(path, path + ".corrupt")
        return None
    logging.info("Reusing %s", path)
    return curves


def trainer_eval_every(num_steps: int, evals: int) -> int:
    """The trainer's steps between test evaluations for a run of `num_steps` steps evaluated
    about `evals` times (it also evaluates after the last step)."""
    return max(1, num_steps // evals)


@dataclasses.dataclass(frozen=True, eq=False)
class TrainerRunner:
    """Trains runs of `config` one after another with the trainer
    (`l2reg.training.train_and_evaluate`), each in `workdir/runs/{name}-{hash}`, the hash of
    its config and of the library's training code (`training_code_digest`). The trainer
    resumes from its checkpoints, so a rerun of the same code reuses finished runs and
    continues interrupted ones; after a change to the training code the runs start afresh in
    new folders (the old ones are left as they are).

    The trainer evaluates every `trainer_eval_every(steps, evals)` steps and after the last
    one; it cannot add the steps of `eval_at` off that schedule (`Preset` checks that a
    trainer preset's budgets lie on it)."""

    workdir: str
    config: ml_collections.ConfigDict
    config_name: str
    evals: int  # test evaluations per run (the trainer evaluates every steps // evals)

    @property
    def momentum(self) -> float:
        return recipe.effective_momentum(self.config)

    @property
    def label(self) -> str:
        return f"trainer config {self.config_name}: {describe(self.config)}"

    def trainer_config(self, run: sweep.Run) -> ml_collections.ConfigDict:
        """The run's config, evaluated `evals` times and checkpointed four times."""
        config = run.config(self.config)
        config.eval_every = trainer_eval_every(run.steps, self.evals)
        config.checkpoint_every = max(config.eval_every, run.steps // 4)
        return config

    def __call__(
        self, name: str, runs: Sequence[sweep.Run], eval_at: Sequence[int] = ()
    ) -> list[Curves]:
        """The runs' curves at the trainer's evaluations (`eval_at` adds none)."""
        from l2reg.training import loop

        curves = []
        for run in tqdm.tqdm(runs, desc=name, unit="run"):
            config = self.trainer_config(run)
            key = run_key(config.to_json_best_effort(sort_keys=True))
            folder = os.path.join(self.workdir, "runs", f"{name}-{key}")
            loop.train_and_evaluate(config, folder)
            curves.append(rundir.read_curves(folder))
        return curves


Runner = SweepRunner | TrainerRunner
