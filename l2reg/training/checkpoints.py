"""Checkpoints of a training state with orbax: keep-N, resume from the newest sound one.

Each checkpoint holds two orbax items: `state`, the pytree, and `record`, a JSON object with a
SHA-256 checksum of the state's bytes (computed when saving, verified when restoring) and the
metrics lines the run had written up to the checkpoint's step (from which `metrics.jsonl` is
rebuilt on resuming).

A checkpoint that cannot be read (a damaged disk, a copy cut short: damaged metadata, damaged or
truncated array data, or data whose checksum differs from the one saved, as after a flipped bit)
is reported, moved aside to `<directory>.corrupt/<step>` (`<step>.1`, `<step>.2`, ... when that
step was moved before) so that nothing is deleted, and the previous one is used. A checkpoint
that reads but holds a state of another structure (written by other code, or for another data
set) is not damaged: restoring refuses it and moves nothing. Neither are unreadable checkpoints
moved when none of them can be read: the run would otherwise start again from step 0 over the
files of the earlier one. Under `jax.distributed` with several processes sharing `directory`,
they agree on which checkpoint is readable and process 0 alone moves files.
"""

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

# What reading a damaged or missing checkpoint raises, possibly wrapped by orbax in a plain
# Exception (it does so for tensorstore's errors while reading array data): tensorstore's read,
# decode and checksum errors and JSON errors are ValueErrors, file system errors OSErrors.
# Anything else (out of memory, a bug) is not a property of the checkpoint and propagates.
READ_ERRORS = (OSError, ValueError)


class CheckpointMismatchError(ValueError):
    """A checkpoint holds a state of another structure, shape or dtype than the one asked for."""


class Restored(NamedTuple):
    """What `Checkpoints.restore_latest` found.

    Attributes:
      state: the restored pytree (the target when there is no checkpoint).
      step: the checkpoint's step, None when there is no checkpoint.
      metrics: the metrics lines saved with it, one dict each ([] without a checkpoint).
    """

    state: Any
    step: int | None
    metrics: list[dict]


class Checkpoints:
    """Periodic checkpoints of one pytree in `directory`, the newest `keep` of them kept.

    Saving is asynchronous (the arrays are copied to host memory before `save` returns, written
    to disk in the background) and atomic: a step's directory appears only once complete.
    """

    def __init__(self, directory: str, *, keep: int):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, cleanup_tmp_directories=True
            ),
            # Registered up front, so that a new manager can read a checkpoint's tree metadata.
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "record": ocp.JsonCheckpointHandler(),
            },
        )

    def save(self, step: int, state: Any, metrics: Sequence[dict] = ()) -> None:
        """Starts saving `state` as the checkpoint of `step` (steps taken so far), with its
        checksum and the metrics lines `metrics` (JSON objects) written up to `step`.

        The checksum is taken from the host copies of the arrays, which the save waits for
        anyway: it adds the hashing (about 1 ms per MB), not a wait for the device.
        """
        record = {"sha256": checksum(state), "metrics": list(metrics)}  # a copy: saved later
        with self._reporting_failed_saves():
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)
                ),
            )

    def restore_latest(self, target: Any) -> Restored:
        """The newest readable checkpoint restored with the structure and shardings of `target`.

        Unreadable checkpoints newer than it are moved to `<directory>.corrupt`.

        Returns:
          `Restored(state, step, metrics)`, or `Restored(target, None, [])` when there is no
          checkpoint.

        Raises:
          CheckpointMismatchError: the newest readable checkpoint's tree (paths, shapes, dtypes)
            differs from `target`'s; nothing is moved.
          ValueError: there are checkpoints but none can be read; nothing is moved.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        unreadable = []  # (step, reason), newest first
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                restored, reason = self._read(step, target, abstract), None
            except CheckpointMismatchError:
                raise
            except Exception as error:
                file_error = _file_error(error)
                if file_error is None:
                    raise
                restored, reason = None, _describe(file_error)
            if _on_every_process(reason is None):
                for bad_step, bad_reason in unreadable:
                    logging.warning(
                        "checkpoint of step %d in %s is corrupt (%s); moved to %s.corrupt, "
                        "resuming from the checkpoint of step %d",
                        bad_step,
                        self.directory,
                        bad_reason,
                        self.directory,
                        step,
                    )
                    self._quarantine(bad_step)
                return restored
            unreadable.append((step, reason or "unreadable by another process"))
        if unreadable:
            reasons = "; ".join(f"step {step}: {reason}" for step, reason in unreadable)
            raise ValueError(
                f"no checkpoint in {self.directory!r} can be read ({reasons}); nothing was "
                "moved: rerun with --overwrite to start the run again"
            )
        return Restored(target, None, [])

    def _read(self, step: int, target: Any, abstract: Any) -> Restored:
        # The tree recorded with the checkpoint is compared first: restoring into another
        # structure fails with the same exception types as damaged files.
        items = self._manager.metadata(step).item_metadata
        stored = items.get("state") if items is not None else None
        if stored is not None:  # None: no tree recorded (a damaged checkpoint); restore checks
            difference = _first_difference(ocp.tree.to_flat_dict(stored.tree), target)
            if difference:
                raise CheckpointMismatchError(
                    f"the checkpoint of step {step} in {self.directory!r} holds another state "
                    f"than this run's ({difference}): rerun with the code and data set that "
                    "wrote it, or with --overwrite to start the run again"
                )
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()
            ),
        )
        state, record = restored.state, restored.record
        if not (isinstance(record, dict) and isinstance(record.get("metrics"), list)):
            raise ValueError("its record is not a JSON object with a list of metrics")
        found = checksum(state)
        if found != record.get("sha256"):
            raise ValueError(
                f"the data read have checksum sha256:{found[:16]}…, saved was "
                f"sha256:{str(record.get('sha256'))[:16]}…"
            )
        return Restored(state, step, record["metrics"])

    def _quarantine(self, step: int) -> None:
        if jax.process_index() == 0:
            corrupt = self.directory + ".corrupt"
            os.makedirs(corrupt, exist_ok=True)
            destination, copies = os.path.join(corrupt, str(step)), 0
            while os.path.exists(destination):  # the same step was moved aside before
                copies += 1
                destination = os.path.join(corrupt, f"{step}.{copies}")
            os.replace(os.path.join(self.directory, str(step)), destination)
        if jax.process_count() > 1:  # the others list the steps only once it is moved
            multihost_utils.sync_global_devices(f"l2reg.Checkpoints._quarantine({step})")
        self._manager.reload()

    def reached_preemption(self, step: int) -> bool:
        """Whether every host has reached the step agreed on to save after a preemption notice
        (multi-host runs under `jax.distributed`; always False in a single process)."""
        return self._manager.reached_preemption(step)

    def wait(self) -> None:
        """Blocks until every checkpoint started so far is on disk."""
        with self._reporting_failed_saves():
            self._manager.wait_until_finished()

    @contextlib.contextmanager
    def _reporting_failed_saves(self) -> Iterator[None]:
        # A save that failed in the background (a full disk) is raised by orbax at the next
        # save or wait, as a file system or tensorstore error naming no checkpoint: say which.
        try:
            yield
        except Exception as error:
            cause = _file_error(error)
            if cause is None:
                raise
            raise OSError(
                f"a checkpoint could not be written in {self.directory!r} ({_describe(cause)}); "
                "the newest complete one is kept: rerun the same command to resume from it once "
                "the cause is fixed"
            ) from error

    def close(self) -> None:
        self._manager.close()


def checksum(tree: Any) -> str:
    """The SHA-256 (hex) of `tree`'s leaves in flattening order: each leaf's path, dtype, shape
    and bytes on the host. A replicated jax.Array is read from its first addressable copy (a
    multi-host run's replicated state hashes alike in every process); any other leaf must be
    fully addressable."""
    leaves = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array):
            leaf = leaf.addressable_data(0) if leaf.is_fully_replicated else leaf
            leaf.copy_to_host_async()  # all copies under way before the first is waited for
        leaves.append((jax.tree_util.keystr(path), leaf))
    digest = hashlib.sha256()
    for path, leaf in leaves:
        array = np.ascontiguousarray(leaf)
        digest.update(f"{path}:{array.dtype.str}{list(array.shape)};".encode())
        digest.update(array.data)
    return digest.hexdigest()


def _describe(error: BaseException) -> str:
    """`error` in one line of at most about 300 characters, without tensorstore's spec."""
    message = (str(error).splitlines() or [""])[0]
    message = message.split(" [tensorstore_spec=")[0]
    if len(message) > 300:
        message = message[:300] + "…"
    return f"{type(error).__name__}: {message}"


def _file_error(error: BaseException) -> BaseException | None:
    """The first of `error` and the exceptions it was raised from (orbax wraps tensorstore's
    errors in a plain Exception) that is a file's: damaged, missing or not writable (a
    `READ_ERRORS`); None if none is."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, READ_ERRORS):
            return error
        seen.add(id(error))
        error = error.__cause__  # set by `raise ... from`, not by an error while handling one
    return None


def _first_difference(stored: dict[tuple[str, ...], Any], target: Any) -> str | None:
    """The first leaf, in path order, whose presence, shape or dtype differs between a
    checkpoint's flat tree metadata `stored` and `target`, described; None if none does."""
    wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(target, keep_empty_nodes=True))

    def describe(leaf: Any) -> str:
        if leaf is None:
            return "absent"
        if getattr(leaf, "shape", None) is None or getattr(leaf, "dtype", None) is None:
            return "present"  # not an array: only its presence is compared
        return f"{np.dtype(leaf.dtype).name}{list(leaf.shape)}"

    for path in sorted(set(stored) | set(wanted)):
        there, here = describe(stored.get(path)), describe(wanted.get(path))
        if there != here:
            return f"{'/'.join(path)} is {there} there, {here} here"
    return None


def _on_every_process(value: bool) -> bool:
    """Whether `value` is True in every process (a collective: all processes must call it)."""
    if jax.process_count() == 1:
        return value
    return bool(np.all(multihost_utils.process_allgather(np.bool_(value))))
