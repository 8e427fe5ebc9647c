"""A run's folder: the recorded config, the metrics log and the curves read back from it.

workdir/
  config.json      the run's ConfigDict, written before training starts
  metrics.jsonl    one JSON object per report (see `train_and_evaluate`)
  tensorboard/     the same scalars as TensorBoard events
  checkpoints/     orbax checkpoints (`checkpoints.Checkpoints`)
"""

import json
import os
import shutil
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import tensorboardX
from jax.experimental import multihost_utils

from l2reg import files

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
# Fields of a metrics line that measure the machine rather than the run.
TIMING_FIELDS = ("steps_per_sec",)


class Curves(NamedTuple):
    """A run's metrics at its evaluations, each of shape (num_evals,), at `steps` (1 … steps).

    The trainer's `metrics.jsonl` (`read_curves`) and a sweep's members (`sweep.run`) both
    read as this.

    Attributes:
      steps: SGD steps after which the model was evaluated (int).
      train_loss: mean training loss (without L2) over the steps since the previous evaluation.
      train_accuracy: likewise, the training accuracy, 0–1.
      test_loss: mean test loss without the L2 term.
      test_accuracy: fraction of the test set classified correctly, 0–1.
      l2: λ in force after that step.
      lr: η of that step.
      weight_norm: ‖θ‖₂ over all trained parameters.
    """

    steps: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    l2: np.ndarray
    lr: np.ndarray
    weight_norm: np.ndarray

    def index_at(self, step: float, *, exact: bool = False) -> int:
        """Index into the curves of the last evaluation at or before `step` steps (0 if none).

        With `exact`, the evaluation must have been after exactly `step` steps (for a budget
        T, pass T in `sweep.run`'s `eval_at`): otherwise a one-line ValueError names the
        nearest evaluated steps, rather than an earlier evaluation standing in for it.
        """
        index = int(np.searchsorted(self.steps, step, side="right")) - 1
        if exact and (index < 0 or self.steps[index] != step):
            before = self.steps[index] if index >= 0 else None
            after = self.steps[index + 1] if index + 1 < len(self.steps) else None
            raise ValueError(
                f"step {step!r} was not evaluated (the nearest evaluations are at steps "
                f"{before} and {after}); add it to the evaluations (sweep.run's eval_at)"
            )
        return max(index, 0)

    def accuracy_at(self, step: float, *, exact: bool = False) -> float:
        """Test accuracy after `step` steps: the last evaluation at or before it (the first
        evaluation if none), or with `exact` the evaluation at exactly `step` (see `index_at`).
        """
        return float(self.test_accuracy[self.index_at(step, exact=exact)])


def config_json(config: ml_collections.ConfigDict) -> dict:
    """`config` as the JSON object recorded in the run folder."""
    return json.loads(config.to_json_best_effort(sort_keys=True))


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            difference
            for key in sorted(set(old) | set(new))
            for difference in _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def check_workdir(workdir: str, config: ml_collections.ConfigDict, *, overwrite: bool) -> list[str]:
    """Checks, changing nothing, that `workdir` is a writable folder (or can be made one) that
    is empty or holds a run of the same config (any run, with `overwrite`).

    Returns:
      The names of the run files (config, metrics, checkpoints, events) in `workdir`.

    Raises:
      ValueError: `workdir` is not a writable folder, or holds a run with a different config
        (or an unrecorded or unreadable one) and `overwrite` is False.
    """
    files.check_folder(workdir)
    ours = [CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR, CHECKPOINT_DIR + ".corrupt", TENSORBOARD_DIR]
    present = [name for name in ours if os.path.exists(os.path.join(workdir, name))]
    if present and not overwrite:
        config_path = os.path.join(workdir, CONFIG_FILE)
        if not os.path.exists(config_path):
            raise ValueError(
                f"workdir {workdir!r} holds {present} but no {CONFIG_FILE}: "
                "pass --overwrite to discard them, or choose another workdir"
            )
        with open(config_path, encoding="utf-8") as file:
            try:
                recorded = json.load(file)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{config_path!r} is not valid JSON ({error}): pass --overwrite to discard "
                    "the run, or choose another workdir"
                ) from None
        changes = _differences(recorded, config_json(config))
        if changes:
            raise ValueError(
                f"workdir {workdir!r} holds a run with a different config "
                f"({'; '.join(changes)}): pass --overwrite to discard it, or choose another workdir"
            )
    return present


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict, *, overwrite: bool) -> None:
    """Checks `workdir` with `check_workdir`, then records `config` in it.

    With `overwrite`, a previous run's files (config, metrics, checkpoints, events) are removed.

    Raises:
      ValueError: as `check_workdir`; nothing is changed then.
    """
    record_config(workdir, config, check_workdir(workdir, config, overwrite=overwrite), overwrite)


def record_config(
    workdir: str, config: ml_collections.ConfigDict, present: list[str], overwrite: bool
) -> None:
    """`prepare_workdir` once `check_workdir` has passed and listed the run files `present`."""
    if jax.process_index() == 0:
        if overwrite:
            for name in present:
                path = os.path.join(workdir, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        os.makedirs(workdir, exist_ok=True)
        current = json.dumps(config_json(config), indent=2) + "\n"
        files.write_atomic(os.path.join(workdir, CONFIG_FILE), current)
    if jax.process_count() > 1:  # the other processes use the workdir once it is ready
        multihost_utils.sync_global_devices("l2reg.training.prepare_workdir")


class MetricsLog:
    """`metrics.jsonl` (one JSON object per report) and TensorBoard events in `workdir`.

    Starting at `start_step` (0 included) drops the lines of later steps and hides the events
    of later steps from TensorBoard (a purge marker at step `start_step + 1`): those of a run
    that was killed before its next checkpoint, so that the run reads as one uninterrupted run.
    Each line is written whole with one write, then flushed and fsynced.
    """

    def __init__(self, workdir: str, start_step: int):
        self.path = os.path.join(workdir, METRICS_FILE)
        kept = []
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as file:
                for line in file:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by a crash
                        continue
                    if record["step"] <= start_step:
                        kept.append(line if line.endswith("\n") else line + "\n")
        files.write_atomic(self.path, "".join(kept))
        self._file = open(self.path, "a", encoding="utf-8")
        self._events = tensorboardX.SummaryWriter(
            os.path.join(workdir, TENSORBOARD_DIR), purge_step=start_step + 1
        )

    def write(self, record: dict[str, float]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        for name, value in record.items():
            if name != "step":
                self._events.add_scalar(name, value, record["step"])

    def close(self) -> None:
        self._file.close()
        self._events.close()


def read_metrics(workdir: str) -> list[dict[str, float]]:
    """The lines of `workdir/metrics.jsonl`, one dict per report, in step order."""
    with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def read_curves(workdir: str) -> Curves:
    """The run in `workdir` as `Curves` (its metrics lines, column by column)."""
    lines = read_metrics(workdir)
    columns = {"steps": "step", **{name: name for name in Curves._fields[1:]}}
    return Curves(
        **{field: np.array([line[key] for line in lines]) for field, key in columns.items()}
    )
