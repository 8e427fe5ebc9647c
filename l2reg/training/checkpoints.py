"""Checkpoints of a training state with orbax: keep-N, resume from the newest readable one.

A checkpoint that cannot be read (a damaged disk, a copy cut short) is reported, moved aside
to `<directory>.corrupt/<step>` (`<step>.1`, `<step>.2`, ... when that step was moved before) so
that nothing is deleted, and the previous one is used. A checkpoint that reads but holds a state
of another structure (written by other code, or for another data set) is not damaged: restoring
refuses it and moves nothing. Neither are unreadable checkpoints moved when none of them can be
read: the run would otherwise start again from step 0 over the files of the earlier one.
Under `jax.distributed` with several processes sharing `directory`, they agree on which
checkpoint is readable and process 0 alone moves files.
"""

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

# What orbax raises for damaged or missing files: tensorstore's read, decode and checksum
# errors and JSON errors are ValueErrors, file system errors OSErrors. Anything else (out of
# memory, a bug) is not a property of the checkpoint and propagates.
READ_ERRORS = (OSError, ValueError)


class CheckpointMismatchError(ValueError):
    """A checkpoint holds a state of another structure, shape or dtype than the one asked for."""


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
            item_handlers=ocp.StandardCheckpointHandler(),
        )

    def save(self, step: int, state: Any) -> None:
        """Starts saving `state` as the checkpoint of `step` (steps taken so far)."""
        self._manager.save(step, args=ocp.args.StandardSave(state))

    def restore_latest(self, target: Any) -> tuple[Any, int | None]:
        """The newest readable checkpoint restored with the structure and shardings of `target`.

        Unreadable checkpoints newer than it are moved to `<directory>.corrupt`.

        Returns:
          `(state, step)`, or `(target, None)` when there is no checkpoint.

        Raises:
          CheckpointMismatchError: the newest readable checkpoint's tree (paths, shapes, dtypes)
            differs from `target`'s; nothing is moved.
          ValueError: there are checkpoints but none can be read; nothing is moved.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        unreadable = []  # (step, reason), newest first
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state, reason = self._read(step, target, abstract), None
            except CheckpointMismatchError:
                raise
            except READ_ERRORS as error:
                message = str(error).splitlines()[0] if str(error) else ""
                state, reason = None, f"{type(error).__name__}: {message}"
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
                return state, step
            unreadable.append((step, reason or "unreadable by another process"))
        if unreadable:
            reasons = "; ".join(f"step {step}: {reason}" for step, reason in unreadable)
            raise ValueError(
                f"no checkpoint in {self.directory!r} can be read ({reasons}); nothing was "
                "moved: rerun with --overwrite to start the run again"
            )
        return target, None

    def _read(self, step: int, target: Any, abstract: Any) -> Any:
        # The tree recorded with the checkpoint is compared first: restoring into another
        # structure fails with the same exception types as damaged files.
        stored = self._manager.metadata(step).item_metadata
        if stored is not None:  # None: no tree recorded (a damaged checkpoint); restore checks
            difference = _first_difference(ocp.tree.to_flat_dict(stored.tree), target)
            if difference:
                raise CheckpointMismatchError(
                    f"the checkpoint of step {step} in {self.directory!r} holds another state "
                    f"than this run's ({difference}): rerun with the code and data set that "
                    "wrote it, or with --overwrite to start the run again"
                )
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

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
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


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
