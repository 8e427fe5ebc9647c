"""A run's folder: the recorded config, the metrics log and the curves read back from it.

workdir/
  config.json        the run's ConfigDict, written when the run starts
  metrics.jsonl      one JSON object per report (see `train_and_evaluate`)
  metrics.jsonl.bad  lines of metrics.jsonl that were set aside on resuming (see `MetricsLog`)
  tensorboard/       the same scalars as TensorBoard events
  checkpoints/       orbax checkpoints (`checkpoints.Checkpoints`)
  .lock              held by the trainer using the folder (`locked`), removed when it ends
"""

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import tensorboardX
from absl import logging
from jax.experimental import multihost_utils

from l2reg import files

METRICS_FILE = "metrics.jsonl"
BAD_METRICS_FILE = METRICS_FILE + ".bad"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".lock"
# Fields of a metrics line that measure the machine rather than the run.
TIMING_FIELDS = ("steps_per_sec",)


class _CurveColumns(NamedTuple):
    """The columns of `Curves`, in order."""

    steps: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    l2: np.ndarray
    lr: np.ndarray
    weight_norm: np.ndarray
    validation_loss: np.ndarray
    validation_accuracy: np.ndarray


# The splits whose accuracy `Curves.accuracy_at` reads.
EVALUATED_SPLITS = ("test", "validation")


class Curves(_CurveColumns):
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
      validation_loss: mean loss on the validation split (`l2reg.data.load`'s
        validation_size), without the L2 term; NaN where the run has no validation split.
      validation_accuracy: fraction of the validation split classified correctly, 0–1; NaN
        where the run has no validation split.

    The validation columns may be left out when constructing one (positionally, or by
    keyword): they are then NaN.
    """

    __slots__ = ()

    def __new__(
        cls,
        steps,
        train_loss,
        train_accuracy,
        test_loss,
        test_accuracy,
        l2,
        lr,
        weight_norm,
        validation_loss=None,
        validation_accuracy=None,
    ):
        missing = np.full(np.shape(steps), np.nan)
        return super().__new__(
            cls,
            steps,
            train_loss,
            train_accuracy,
            test_loss,
            test_accuracy,
            l2,
            lr,
            weight_norm,
            missing if validation_loss is None else validation_loss,
            missing if validation_accuracy is None else validation_accuracy,
        )

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

    def accuracy_at(self, step: float, *, exact: bool = False, split: str = "test") -> float:
        """Accuracy on `split` ('test' or 'validation') after `step` steps: the last evaluation
        at or before it (the first evaluation if none), or with `exact` the evaluation at
        exactly `step` (see `index_at`). NaN for 'validation' in a run without that split.
        """
        if split not in EVALUATED_SPLITS:
            raise ValueError(f"split must be one of {EVALUATED_SPLITS}, got {split!r}")
        accuracy = self.test_accuracy if split == "test" else self.validation_accuracy
        return float(accuracy[self.index_at(step, exact=exact)])


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
    ours = [
        CONFIG_FILE,
        METRICS_FILE,
        BAD_METRICS_FILE,
        CHECKPOINT_DIR,
        CHECKPOINT_DIR + ".corrupt",
        TENSORBOARD_DIR,
        TENSORBOARD_DIR + ".rebuilding",
    ]
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
    """`prepare_workdir` once `check_workdir` has passed and listed the run files `present`.

    `config.json` is written for a new run only (a fresh workdir, or with `overwrite`): a run
    being resumed has the same config recorded already (`check_workdir` compared them), and its
    file is left as it is, so that a resume refused later (checkpoints of another state) has
    changed nothing.
    """
    if jax.process_index() == 0 and (overwrite or not present):
        for name in present:
            path = os.path.join(workdir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        current = json.dumps(config_json(config), indent=2) + "\n"
        files.write_atomic(os.path.join(workdir, CONFIG_FILE), current)
    if jax.process_count() > 1:  # the other processes use the workdir once it is ready
        multihost_utils.sync_global_devices("l2reg.training.prepare_workdir")


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[None]:
    """Holds `workdir/.lock` while the block runs, so that no other trainer uses `workdir`.

    The lock is an exclusive `flock`, which the kernel releases when its process ends, however
    it ends: a lock file left by a killed trainer does not block. The file names its holder
    (pid, host, start time) and is removed when the block ends. `workdir` is created if need
    be, and removed again with the empty folders in it if the block fails having made it (a
    failed start leaves no empty folder behind). Under `jax.distributed`, only process 0 locks
    (the others share the workdir by design) and tells the others whether it could: when it
    could not, every process raises, none waits for it.

    Raises:
      ValueError: `workdir` cannot be a folder (`files.check_folder`), or another trainer holds
        its lock (one line naming it; on the other processes, one line saying process 0
        refused the workdir).
      OSError: the lock file cannot be written (a full disk; names the path).
    """
    refusal = None
    with contextlib.ExitStack() as stack:
        if jax.process_index() == 0:
            try:
                stack.enter_context(_locked(workdir))
            except (ValueError, OSError) as error:
                refusal = error
        if jax.process_count() > 1:
            refused = multihost_utils.broadcast_one_to_all(np.int32(refusal is not None))
            if refused and refusal is None:
                raise ValueError(
                    f"process 0 refused workdir {workdir!r} (another trainer holds it, or its "
                    "lock cannot be written): see its message"
                )
        if refusal is not None:
            raise refusal
        yield


@contextlib.contextmanager
def _locked(workdir: str) -> Iterator[None]:
    """`locked` in one process."""
    files.check_folder(workdir)
    created = not os.path.isdir(workdir)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    handle, completed = None, False
    try:
        handle = _lock(path, workdir)
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        holder = f"pid {os.getpid()} on host {socket.gethostname()} since {since}"
        with files.errors_naming(path):
            os.write(handle, holder.encode())
        yield
        completed = True
    finally:
        if handle is not None:
            os.unlink(path)  # while still locked: see `_lock`
            os.close(handle)
        if created and not completed and handle is not None:
            _remove_empty_folders(workdir)


def _lock(path: str, workdir: str) -> int:
    """An open handle on `path` holding its exclusive flock, the file emptied."""
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            os.close(handle)
            raise ValueError(
                f"workdir {workdir!r} is in use by another trainer ({holder}): wait for it to "
                "end or stop it, or choose another workdir"
            ) from None
        # A holder removes the file before unlocking it: if it did so after we opened it, we
        # hold a lock on a removed file, and must lock the file now at `path` instead.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(handle), os.stat(path)):
                os.ftruncate(handle, 0)  # a killed holder's record
                return handle
        os.close(handle)


def _holder(handle: int) -> str:
    # The holder writes its record just after locking: wait a little for it.
    for _ in range(20):
        record = os.pread(handle, 1000, 0).decode(errors="replace").strip()
        if record:
            return record
        time.sleep(0.05)
    return "which has not recorded its pid"


def _remove_empty_folders(folder: str) -> None:
    for root, _, _ in os.walk(folder, topdown=False):
        with contextlib.suppress(OSError):  # not empty (any more: another trainer's lock)
            os.rmdir(root)


class MetricsLog:
    """`metrics.jsonl` (one JSON object per report) and TensorBoard events in `workdir`.

    Starting at `start_step` (0 included), the file is rewritten as `checkpointed`: the lines
    saved with the checkpoint of `start_step` (none at step 0), which are what that checkpoint
    proves. So a run killed and resumed, or whose file was deleted or cut short, reads as one
    uninterrupted run. Lines of later steps (those of a run killed before its next checkpoint)
    are dropped. The TensorBoard events are rebuilt the same way: a fresh folder holding the
    lines of `checkpointed` replaces the old one (whatever was lost, damaged or written after
    the checkpoint), and new lines go to an events file of their own. Any other line not among
    `checkpointed` (not UTF-8, not a JSON object with an integer "step", or not the line the
    checkpoint holds for its step) is appended to `metrics.jsonl.bad`, with a warning naming its
    line number. Each new line is written whole with one write, then flushed and fsynced.

    Attributes:
      path: the path of `metrics.jsonl`.
      records: the lines of the file, one dict each, in order (to save with a checkpoint).
    """

    def __init__(self, workdir: str, start_step: int, checkpointed: Sequence[dict]):
        self.path = os.path.join(workdir, METRICS_FILE)
        self.records = list(checkpointed)
        proven = [json.dumps(record) for record in self.records]
        unconfirmed, set_aside = set(proven), []
        if os.path.exists(self.path):
            with open(self.path, "rb") as file:
                for number, line in enumerate(file, 1):
                    try:
                        record = _parse(line)
                    except ValueError as error:
                        problem = str(error)
                    else:
                        text = line.decode().rstrip("\n")
                        if record["step"] > start_step or text in unconfirmed:
                            unconfirmed.discard(text)
                            continue
                        problem = f"is not the line of step {record['step']} of the checkpoint"
                    logging.warning(
                        "%s line %d %s: set aside in %s",
                        self.path,
                        number,
                        problem,
                        BAD_METRICS_FILE,
                    )
                    set_aside.append(line if line.endswith(b"\n") else line + b"\n")
        if set_aside:
            bad_path = os.path.join(workdir, BAD_METRICS_FILE)
            earlier = b""
            if os.path.exists(bad_path):
                with open(bad_path, "rb") as file:
                    earlier = file.read()
            files.write_atomic(bad_path, earlier + b"".join(set_aside))
        if unconfirmed:
            logging.warning(
                "%s lacked %d of the %d lines up to step %d: rebuilt from the checkpoint",
                self.path,
                len(unconfirmed),
                len(proven),
                start_step,
            )
        files.write_atomic(self.path, "".join(line + "\n" for line in proven))
        self._file = open(self.path, "a", encoding="utf-8")
        self._events_path = os.path.join(workdir, TENSORBOARD_DIR)
        with files.errors_naming(self._events_path):
            _rebuild_events(self._events_path, self.records)
            self._events = tensorboardX.SummaryWriter(
                self._events_path, filename_suffix=f".from_step_{start_step}"
            )

    def write(self, record: dict[str, float]) -> None:
        """Appends `record` as a line of the file and as TensorBoard scalars at its step.

        Raises:
          OSError: a write failed (a full disk), naming the file.
        """
        with files.errors_naming(self.path):
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        self.records.append(record)
        with files.errors_naming(self._events_path):
            _add_scalars(self._events, record)
            # Now, rather than when closing: a full disk is then reported here, and closing,
            # with nothing left to write, closes the file.
            self._events.flush()

    def close(self) -> None:
        with files.errors_naming(self.path):
            self._file.close()
        with files.errors_naming(self._events_path):
            _close_events(self._events)


def _add_scalars(events: tensorboardX.SummaryWriter, record: dict) -> None:
    for name, value in record.items():
        if name != "step":
            events.add_scalar(name, value, record["step"])


def _rebuild_events(path: str, records: Sequence[dict]) -> None:
    """Replaces the TensorBoard folder `path` by one whose events are `records`, written in a
    fresh folder first (a kill meanwhile leaves it to be rebuilt at the next start)."""
    fresh = path + ".rebuilding"
    shutil.rmtree(fresh, ignore_errors=True)
    events = tensorboardX.SummaryWriter(fresh, filename_suffix=".rebuilt")
    try:
        for record in records:
            _add_scalars(events, record)
    finally:
        _close_events(events)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(fresh, path)


def _close_events(events: tensorboardX.SummaryWriter) -> None:
    """Closes `events`' files even when their last flush fails (a full disk), then raises that.

    tensorboardX's `close` stops at a failed flush, leaving its writer thread and event file open
    (a file system that cannot then be unmounted, an fd per failed run).
    """
    try:
        events.close()
    except OSError:
        for writer in (events.all_writers or {}).values():
            event_file = writer.event_writer
            with contextlib.suppress(Exception):
                event_file._worker.stop()
            # The record file itself: the events writer's `close` flushes first, and fails
            # again; a Python file's `close` closes it even when its flush fails.
            with contextlib.suppress(OSError):
                event_file._ev_writer._py_recordio_writer.close()
            event_file._closed = True  # else its exit hook flushes the closed file
        raise


def _parse(line: bytes) -> dict:
    """A metrics line as a dict; a ValueError saying what it is not otherwise."""
    try:
        record = json.loads(line.decode())
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"is not JSON ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"is a JSON {type(record).__name__}, not an object")
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        raise ValueError(f"has no integer step (step: {step!r})")
    return record


def read_metrics(workdir: str) -> list[dict[str, float]]:
    """The lines of `workdir/metrics.jsonl`, one dict per report, in step order.

    Raises:
      ValueError: a line is not a JSON object with an integer step (names the file and line).
    """
    path = os.path.join(workdir, METRICS_FILE)
    records = []
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            try:
                records.append(_parse(line))
            except ValueError as error:
                raise ValueError(
                    f"{path} line {number} {error}: rerun the training command on {workdir!r} "
                    "to set it aside and rebuild the file from the checkpoints"
                ) from None
    return records


# Columns of `Curves` that a metrics line holds only when the run has a validation split.
VALIDATION_FIELDS = ("validation_loss", "validation_accuracy")


def read_curves(workdir: str) -> Curves:
    """The run in `workdir` as `Curves` (its metrics lines, column by column); the validation
    columns are NaN where a line has none (a run without a validation split)."""
    lines = read_metrics(workdir)
    columns = {"steps": "step", **{name: name for name in Curves._fields[1:]}}
    return Curves(
        **{
            field: np.array(
                [line.get(key, np.nan) if key in VALIDATION_FIELDS else line[key] for line in lines]
            )
            for field, key in columns.items()
        }
    )
