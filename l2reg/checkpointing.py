"""Checkpoints of a training state with orbax: keep-N, resume from the newest readable one.

A checkpoint that cannot be read (a damaged disk, a copy cut short) is reported, moved aside
to `<directory>.corrupt/<step>` so that nothing is deleted, and the previous one is used.
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
        )

    def save(self, step: int, state: Any) -> None:
        """Starts saving `state` as the checkpoint of `step` (steps taken so far)."""
        self._manager.save(step, args=ocp.args.StandardSave(state))

    def restore_latest(self, target: Any) -> tuple[Any, int | None]:
        """The newest readable checkpoint restored with the structure and shardings of `target`.

        Returns:
          `(state, step)`, or `(target, None)` when there is no readable checkpoint.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
                reason = None
            # orbax raises many exception types for damaged files (ValueError, OSError, JSON
            # and tensorstore errors); any failure to read means this checkpoint is unusable.
            except Exception as error:
                message = str(error).splitlines()[0] if str(error) else ""
                state, reason = None, f"{type(error).__name__}: {message}"
            if _on_every_process(reason is None):
                return state, step
            logging.warning(
                "checkpoint of step %d in %s is corrupt (%s); moved to %s.corrupt, "
                "resuming from the previous one",
                step,
                self.directory,
                reason or "unreadable by another process",
                self.directory,
            )
            self._quarantine(step)
        return target, None

    def _quarantine(self, step: int) -> None:
        if jax.process_index() == 0:
            corrupt = self.directory + ".corrupt"
            os.makedirs(corrupt, exist_ok=True)
            os.replace(os.path.join(self.directory, str(step)), os.path.join(corrupt, str(step)))
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


def _on_every_process(value: bool) -> bool:
    """Whether `value` is True in every process (a collective: all processes must call it)."""
    if jax.process_count() == 1:
        return value
    return bool(np.all(multihost_utils.process_allgather(np.bool_(value))))
