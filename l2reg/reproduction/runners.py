"""How the reproduction trains a list of `sweep.Run`s of a trainer config into `Curves`.

A runner is called as `run(name, runs, eval_at=steps)` and has a `label` describing its
setup and the SGD `momentum` μ that λ goes through (the relations use the effective learning
rate η/(1−μ)): `SweepRunner` trains them as one vmapped sweep and caches the curves;
`TrainerRunner` trains them one by one through the data-parallel trainer, for models and data
sets too large to vmap. Either way each run is the run its config defines (`sweep.Run.config`).
`eval_at` asks for evaluations after those steps besides the runner's own schedule, where the
runner can add them; each curve's `steps` say which evaluations were made.

Each call appends a `Trained` record to the runner's `history`: whether it reused earlier
results and how long they took to train when first trained (kept with the cache), so that a
rerun's report keeps the original training time.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import pathlib
import time
import zipfile
from collections.abc import Sequence
from typing import NamedTuple

import ml_collections
import numpy as np
import tqdm
from absl import logging

from l2reg.files import write_atomic
from l2reg.training import recipe, rundir, sweep
from l2reg.training.defaults import default_config
from l2reg.training.rundir import Curves


class Trained(NamedTuple):
    """One runner call: its `name`, whether it `reused` results trained earlier (all of them),
    where (`source`: the cache file or the runs' folder), and `training_seconds`, the time its
    runs took when they were trained (None where an older cache did not record it)."""

    name: str
    reused: bool
    source: str
    training_seconds: float | None


def describe(config: ml_collections.ConfigDict) -> str:
    """A one-line label of a trainer config's setup, e.g. 'digits(label_noise=0.2), mlp(…), …'
    (the data options that differ from their defaults)."""
    defaults = default_config().data_options
    data = ", ".join(
        f"{name}={value}"
        for name, value in config.data_options.items()
        if name not in defaults or value != defaults[name]
    )
    options = ", ".join(f"{name}={value}" for name, value in config.model_options.items())
    loss = config.loss + (f" ({config.mse_targets} targets)" if config.loss == "mse" else "")
    momentum = f", momentum {config.momentum}" if config.optimizer == "momentum" else ""
    return (
        f"{config.dataset}({data}), {config.model}({options}), {loss}, "
        f"{config.optimizer} batch {config.batch_size}{momentum}"
    )


# What each driver's curves do not depend on: the analysis (`l2reg.reproduction`) always, and
# for a sweep also the trainer's loop, checkpoints and device placement, and the file and
# version helpers, which a sweep never imports.
NOT_TRAINING = ("reproduction",)
NOT_SWEEP = (
    *NOT_TRAINING,
    "training/loop.py",
    "training/checkpoints.py",
    "training/trainer.py",
    "files.py",
    "versions.py",
)


@functools.cache
def training_code_digest(driver: str = "trainer") -> str:
    """A hash of the library's source that trains with `driver` ('trainer' or 'sweep'): every
    module outside `l2reg.reproduction`, and for a sweep also outside the trainer's own
    modules (`NOT_SWEEP`). Cached curves are keyed by it, so that a change to how runs train is
    never answered from a cache."""
    skip = NOT_SWEEP if driver == "sweep" else NOT_TRAINING
    return source_digest(pathlib.Path(recipe.__file__).parent.parent, skip)


def run_key(settings: str, driver: str = "trainer") -> str:
    """16 hex digits of the SHA-256 of `settings` and of `training_code_digest(driver)`: a
    cache key that changes with either."""
    return hashlib.sha256((settings + training_code_digest(driver)).encode()).hexdigest()[:16]


def source_digest(package: pathlib.Path, skip: tuple[str, ...] = NOT_TRAINING) -> str:
    """SHA-256 of the names and contents of the `.py` files under `package`, those under the
    folders or at the paths of `skip` (relative to `package`, '/'-separated) left out."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if any(relative == s or relative.startswith(s + "/") for s in skip):
            continue
        digest.update(relative.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True, eq=False)
class SweepRunner:
    """Trains runs of `config` as one vmapped `l2reg.training.sweep`, caching the curves in
    `workdir/cache/{name}-{hash}.npz`, the hash of the settings and of the library's code that
    a sweep trains with (`training_code_digest('sweep')`), so that a rerun of the same code
    reuses them."""

    workdir: str
    config: ml_collections.ConfigDict
    evals_per_decade: int
    history: list[Trained] = dataclasses.field(default_factory=list, repr=False)

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
        path = os.path.join(self.workdir, "cache", f"{name}-{run_key(settings, 'sweep')}.npz")
        if os.path.exists(path):
            cached = _read_cache(path, len(runs))
            if cached is not None:
                curves, seconds = cached
                self.history.append(Trained(name, True, path, seconds))
                return curves
        start = time.perf_counter()
        curves = sweep.run(
            self.config,
            runs,
            evals_per_decade=self.evals_per_decade,
            eval_at=eval_at,
            progress=name,
        )
        seconds = time.perf_counter() - start
        arrays = {
            f"{i}/{field}": value
            for i, curve in enumerate(curves)
            for field, value in curve._asdict().items()
        }
        arrays[TRAINING_SECONDS] = np.float64(seconds)
        self.history.append(Trained(name, False, path, seconds))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(path, buffer.getvalue())
        return curves


# The cache entry holding the seconds its curves took to train.
TRAINING_SECONDS = "training_seconds"


def _read_cache(path: str, count: int) -> tuple[list[Curves], float | None] | None:
    """The `count` cached curves in `path` and the seconds they took to train (None in a cache
    written before that was kept), or None (with a warning, the file moved aside to
    `path.corrupt`) when it cannot be read: cut short, overwritten, or of another layout."""
    try:
        # allow_pickle=False: a cache file never runs code, whoever wrote it.
        with np.load(path, allow_pickle=False) as stored:
            curves = [
                Curves(*(stored[f"{i}/{field}"] for field in Curves._fields)) for i in range(count)
            ]
            seconds = float(stored[TRAINING_SECONDS]) if TRAINING_SECONDS in stored else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        logging.warning(
            "%s cannot be read (%s): moved to %s.corrupt, retraining", path, error, path
        )
        os.replace(path, path + ".corrupt")
        return None
    return curves, seconds


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
    trainer preset's budgets lie on it).

    A run's training time is kept next to its folder, in `{folder}.seconds.json`, written when
    the trainer returns: a run with that file was finished before and counts as reused."""

    workdir: str
    config: ml_collections.ConfigDict
    config_name: str
    evals: int  # test evaluations per run (the trainer evaluates every steps // evals)
    history: list[Trained] = dataclasses.field(default_factory=list, repr=False)

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

        curves, reused, total = [], True, 0.0
        for run in tqdm.tqdm(runs, desc=name, unit="run"):
            config = self.trainer_config(run)
            key = run_key(config.to_json_best_effort(sort_keys=True))
            folder = os.path.join(self.workdir, "runs", f"{name}-{key}")
            record = folder + ".seconds.json"
            start = time.perf_counter()
            loop.require_finished(loop.train_and_evaluate(config, folder), config, folder)
            if os.path.exists(record):
                with open(record) as file:
                    total += json.load(file)[TRAINING_SECONDS]
            else:
                reused = False
                seconds = time.perf_counter() - start
                write_atomic(record, json.dumps({TRAINING_SECONDS: seconds}))
                total += seconds
            curves.append(rundir.read_curves(folder))
        self.history.append(Trained(name, reused, os.path.join(self.workdir, "runs"), total))
        return curves


Runner = SweepRunner | TrainerRunner


def _share(part: int, total: int) -> str:
    """`part` as a percentage of `total`, with a decimal below 1%."""
    share = part / max(1, total)
    return f"{share:.1%}" if share < 0.01 else f"{share:.0%}"


@dataclasses.dataclass(eq=False)
class Progress:
    """The reproduction's parts as they run: a line before each (its runs and member-steps, and
    an overall estimate of the time left from the member-steps trained so far), a line after
    each (trained, or reused from where), and a record of each for the report.

    Attributes:
      planned: {call name: its member-steps (the sum of its runs' steps)}, of every call the
        reproduction will make, in order; the estimate assumes that the calls not yet made
        all train.
      parts: one dict per finished call: its name (as 'name' and as 'part'), runs,
        member_steps, reused, source, training_seconds (when first trained) and seconds (in
        this run).
    """

    planned: dict[str, int]
    parts: list[dict] = dataclasses.field(default_factory=list)

    def wrap(self, runner: Runner) -> Tracked:
        """`runner` with each call announced and recorded here."""
        return Tracked(runner, self)

    def announce(self, name: str, runs: int, member_steps: int) -> None:
        """Logs the line before a call: its size, and the estimate of the time left."""
        trained = [p for p in self.parts if not p["reused"]]
        steps_done = sum(p["member_steps"] for p in trained)
        seconds_done = sum(p["seconds"] for p in trained)
        done = {p["name"] for p in self.parts}
        left = sum(steps for key, steps in self.planned.items() if key not in done)
        if steps_done and seconds_done > 0:
            estimate = (
                f"about {left * seconds_done / steps_done:.0f} s left at the "
                f"{steps_done / seconds_done:,.0f} member-steps/s trained so far"
            )
        else:
            estimate = "time left: estimated once a part has trained"
        logging.info(
            "%s: %d runs, %s member-steps (%s of all); %s",
            name,
            runs,
            f"{member_steps:,}",
            _share(member_steps, sum(self.planned.values())),
            estimate,
        )

    def record(self, name: str, runs: int, member_steps: int, trained, seconds: float) -> None:
        """Records a finished call (`trained`: the runner's `Trained`, or None for a runner
        that keeps no history, whose call counts as trained in `seconds`) and logs it."""
        if trained is None:
            trained = Trained(name, False, "", seconds)
        part = {
            "name": name,
            "part": name,
            "runs": runs,
            "member_steps": member_steps,
            "reused": trained.reused,
            "source": trained.source,
            "training_seconds": trained.training_seconds,
            "seconds": seconds,
        }
        self.parts.append(part)
        if trained.reused:
            first = trained.training_seconds
            logging.info(
                "%s: reused %s (trained in %s when first run)",
                part["part"],
                trained.source,
                "an unrecorded time" if first is None else f"{first:.0f} s",
            )
        else:
            logging.info("%s: trained in %.0f s", part["part"], seconds)

    def summary(self) -> dict:
        """The parts and their totals: `training_seconds` (None if a reused part's time was
        not recorded) and `reused_parts`, the labels of the parts reused."""
        times = [p["training_seconds"] for p in self.parts]
        return {
            "parts": self.parts,
            "training_seconds": None if None in times else float(sum(times)),
            "reused_parts": [p["part"] for p in self.parts if p["reused"]],
        }


@dataclasses.dataclass(frozen=True, eq=False)
class Tracked:
    """A runner whose calls a `Progress` announces and records; its label and momentum are the
    runner's."""

    runner: Runner
    progress: Progress

    @property
    def label(self) -> str:
        return self.runner.label

    @property
    def momentum(self) -> float:
        return self.runner.momentum

    def __call__(
        self, name: str, runs: Sequence[sweep.Run], eval_at: Sequence[int] = ()
    ) -> list[Curves]:
        member_steps = sum(run.steps for run in runs)
        self.progress.announce(name, len(runs), member_steps)
        history = getattr(self.runner, "history", None)
        calls = len(history) if history is not None else 0
        start = time.perf_counter()
        curves = self.runner(name, runs, eval_at=eval_at)
        seconds = time.perf_counter() - start
        trained = history[-1] if history is not None and len(history) > calls else None
        self.progress.record(name, len(runs), member_steps, trained, seconds)
        return curves
