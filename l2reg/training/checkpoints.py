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
import functools
import hashlib
import inspect
import logging as python_logging
import os
import re
import sys
import threading
import traceback
import types
import warnings
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


_ORBAX_FOLDER = os.path.join(os.path.dirname(os.path.abspath(ocp.__file__)), "")


class _FailedSaveNoise:
    """Keeps off the terminal what orbax, asyncio and tensorstore print about a failed save,
    which `Checkpoints` reports in one line.

    A save that meets a full disk is raised by orbax at the next save or wait; meanwhile each
    orbax thread it passed through logs it with its traceback, asyncio logs each of orbax's
    writes that failed too ("exception was never retrieved") when it is garbage-collected,
    possibly at exit, and each of tensorstore's writes still in flight when orbax gives the
    save up prints "RuntimeError: Event loop is closed" with a traceback, through
    `sys.unraisablehook` (hundreds of lines for one full disk).

    ERROR records with an exception raised in orbax's code are held while a `Checkpoints` is
    open (a filter on the absl and asyncio loggers, installed with the first one and kept for
    asyncio's records that come later). Once a save's failure is raised, those of file errors
    naming a path in its folder, or naming no file at all (Python's own writes, such as orbax's
    JSON items, raise "[Errno 28] No space left on device" alone), are dropped, then and from
    then on, as that failure's; so are asyncio's naming a path there, whatever raised them
    (tensorstore's writes, logged when garbage-collected). The others are logged as they were
    when the saves are over (orbax logs some errors it does not raise, such as a failure to
    delete an old checkpoint).

    Unraisable errors (`sys.unraisablehook`, also installed with the first `Checkpoints` and
    kept) are dropped when they are tensorstore's closed-loop errors while a `Checkpoints` is
    open or once a save failed, file errors naming a path in a failed save's folder or an
    unreadable checkpoint's, or orbax's errors on closing the reads it gave up of such a
    checkpoint (raised from GeneratorExit when the pending read is garbage-collected, naming
    the array's folder). Those raised in orbax's code while checkpoints are read are held until
    the reading is over, since a checkpoint is found unreadable only at its end. Any other
    goes to the previous hook.

    Once a save failed or a checkpoint was found unreadable (`save_failed`), Python's warnings
    that a coroutine of orbax's was never awaited (its background loop gone, possibly at exit,
    before it ran what was sent to it) are ignored, by a `warnings` filter naming orbax's
    coroutine functions.
    """

    def __init__(self):
        # Reentrant: the garbage collector may log or raise an unraisable error from any
        # allocation, including one made while the lock is held.
        self._lock = threading.RLock()
        self._held: list[python_logging.LogRecord] = []
        self._held_unraisable: list[Any] = []
        self._open = 0  # open `Checkpoints`
        self._failed: set[str] = set()  # folders of `Checkpoints` whose save failed, with a "/"
        self._reading = 0  # `Checkpoints` still reading their checkpoints (until restored)
        self._previous_hook = sys.unraisablehook

    def opened(self) -> None:
        with self._lock:
            self._open += 1
            if self._open == 1:
                for logger in (logging.get_absl_logger(), python_logging.getLogger("asyncio")):
                    if self not in logger.filters:
                        logger.addFilter(self)
                if sys.unraisablehook != self._unraisable:
                    self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable

    def closed(self) -> None:
        """Logs the records still held."""
        with self._lock:
            self._open -= 1
        self.release()

    def reading(self, started: bool) -> None:
        """A `Checkpoints` starts or stops reading its checkpoints: meanwhile what orbax logs
        about a damaged one (such as its unparsable metadata) is held, dropped once the
        checkpoint is found unreadable (`save_failed` on its folder: `restore_latest` says so
        in its own line) and logged otherwise."""
        with self._lock:
            self._reading += 1 if started else -1

    def filter(self, record: python_logging.LogRecord) -> bool:
        if record.levelno < python_logging.ERROR:
            return True
        if not record.exc_info:
            with self._lock:
                if not (self._reading and record.pathname.startswith(_ORBAX_FOLDER)):
                    return True
                if not self._of_failed_save(record):
                    self._held.append(record)
            return False
        in_orbax = _raised_in_orbax(record)
        with self._lock:
            # asyncio logs tensorstore's failed writes, raised outside Python, at exit.
            if self._of_failed_save(record, in_orbax=in_orbax):
                return False
            if not in_orbax or self._open == 0:
                return True
            self._held.append(record)
        return False

    def save_failed(self, directory: str) -> None:
        """Drops the records of file errors in `directory`, those held and those to come, and
        from then on Python's warnings about orbax's coroutines that were never awaited."""
        with self._lock:
            self._failed.add(os.path.join(directory, ""))
        # Idempotent: `filterwarnings` moves an equal filter to the front rather than adding
        # one. Called at each failure, since `warnings.catch_warnings` restores the filters.
        warnings.filterwarnings(
            "ignore", message=_orbax_unawaited_coroutines(), category=RuntimeWarning
        )
        self.release()

    def release(self) -> None:
        """Logs the records held, as they were, but those of failed saves; gives the unraisable
        errors held to the previous hook once no checkpoint is being read, but those of failed
        saves or unreadable checkpoints."""
        with self._lock:
            held, self._held = self._held, []
            held = [record for record in held if not self._of_failed_save(record)]
            unraisable = []
            if not self._reading:
                unraisable, self._held_unraisable = self._held_unraisable, []
        for record in held:
            python_logging.getLogger(record.name).callHandlers(record)
        for error in unraisable:
            self._unraisable(error)

    def _of_failed_save(self, record: python_logging.LogRecord, in_orbax: bool = True) -> bool:
        """Whether `record` is of a failed save: an orbax message naming a file in its folder,
        or a file error naming one (or, raised in orbax's code, naming no file at all)."""
        if not record.exc_info:
            return any(folder in record.getMessage() for folder in self._failed)
        error = _file_error(record.exc_info[1])
        if error is None or not self._failed:
            return False
        if isinstance(error, OSError) and error.filename is None and "/" not in str(error):
            return in_orbax
        return self._names_failed(error)

    def _names_failed(self, error: BaseException | None) -> bool:
        """Whether `error` is (or was raised from) a file error naming a path in the folder of
        a failed save or an unreadable checkpoint."""
        error = _file_error(error) if error is not None else None
        return error is not None and any(folder in str(error) for folder in self._failed)

    def _unraisable(self, unraisable: Any) -> None:
        frames = traceback.extract_tb(unraisable.exc_traceback)
        with self._lock:
            closed_loop = (
                (self._open or self._failed)  # after a failed save: possibly at exit
                and isinstance(unraisable.exc_value, RuntimeError)
                and str(unraisable.exc_value) == "Event loop is closed"
                and frames
                and frames[0].name == "call_soon_threadsafe"  # called from outside Python
            )
            error = unraisable.exc_value
            abandoned = (  # orbax's error on closing a read it gave up, naming its array
                isinstance(getattr(error, "__cause__", None), GeneratorExit)
                and any(folder in str(error) for folder in self._failed)
            )
            if closed_loop or abandoned or self._names_failed(error):
                return
            if self._reading and any(f.filename.startswith(_ORBAX_FOLDER) for f in frames):
                # Kept without its object, which is being finalized.
                self._held_unraisable.append(
                    types.SimpleNamespace(
                        exc_type=unraisable.exc_type,
                        exc_value=unraisable.exc_value,
                        exc_traceback=unraisable.exc_traceback,
                        err_msg=f"Exception ignored in: {unraisable.object!r}",
                        object=None,
                    )
                )
                return
        self._previous_hook(unraisable)


@functools.cache
def _orbax_unawaited_coroutines() -> str:
    """A regular expression of Python's warning about a coroutine of orbax's never awaited
    ("coroutine 'AsyncRunner.shutdown.<locals>._shutdown_tasks' was never awaited"): the
    qualified names of the coroutine functions in orbax's loaded modules, nested ones included.
    """
    names, seen = set(), set()
    pending = [
        value
        for module in list(sys.modules.values())
        if (getattr(module, "__file__", None) or "").startswith(_ORBAX_FOLDER)
        for value in list(vars(module).values())
    ]
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, types.CodeType):
            if value.co_filename.startswith(_ORBAX_FOLDER):
                if value.co_flags & inspect.CO_COROUTINE:
                    names.add(value.co_qualname)
                pending.extend(c for c in value.co_consts if isinstance(c, types.CodeType))
        elif isinstance(value, (staticmethod, classmethod)):
            pending.append(value.__func__)
        elif isinstance(value, types.FunctionType):
            pending.extend([value.__code__, getattr(value, "__wrapped__", None)])
        elif isinstance(value, type):
            pending.extend(vars(value).values())
    alternatives = "|".join(re.escape(name) for name in sorted(names))
    return f"coroutine '({alternatives})' was never awaited$"


def _raised_in_orbax(record: python_logging.LogRecord) -> bool:
    """Whether `record` was logged by orbax, or its exception raised in orbax's code."""
    if record.pathname.startswith(_ORBAX_FOLDER):
        return True
    frames = traceback.extract_tb(record.exc_info[2]) if record.exc_info[2] else []
    return any(frame.filename.startswith(_ORBAX_FOLDER) for frame in frames)


_FAILED_SAVE_NOISE = _FailedSaveNoise()


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
    to disk in the background) and atomic: a step's directory appears only once complete. A
    save that fails (a full disk) is raised at the next `check`, `save` or `wait` as an OSError
    of one line naming `directory` and the cause; the tracebacks orbax, asyncio and tensorstore
    print about it are kept off the terminal (`_FailedSaveNoise`).
    """

    def __init__(self, directory: str, *, keep: int):
        self.directory = os.path.abspath(directory)
        # A step's folders are made in `save` itself, not in orbax's background (it takes far less
        # than a step): when making them fails (a full disk, the folder removed), orbax's threads
        # that were to write into them would otherwise wait 300 s for them, keeping the process
        # alive, and then log a traceback each. The arrays are still written in the background;
        # a failure there is raised at the next save or wait, made one line there
        # (`_reporting_failed_saves`), and orbax's records of it are kept off the terminal
        # (`_FailedSaveNoise`). Saving synchronously would not spare those: orbax's threads for
        # tensorstore's writes log their errors even then.
        _FAILED_SAVE_NOISE.opened()
        _FAILED_SAVE_NOISE.reading(started=True)  # orbax reads metadata as the manager starts
        self._reading = True
        self._writing: int | None = None  # the step of the save last started
        try:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=keep,
                    create=True,
                    cleanup_tmp_directories=True,
                    async_options=ocp.options.AsyncOptions(create_directories_asynchronously=False),
                ),
                # Registered up front, so that a new manager can read a checkpoint's tree metadata.
                item_handlers={
                    "state": ocp.StandardCheckpointHandler(),
                    "record": ocp.JsonCheckpointHandler(),
                },
            )
        except BaseException:  # e.g. a folder that cannot be made: nothing is left open
            self._leave_noise_filter()
            raise

    def _done_reading(self) -> None:
        if self._reading:
            self._reading = False
            _FAILED_SAVE_NOISE.reading(started=False)
            _FAILED_SAVE_NOISE.release()

    def save(self, step: int, state: Any, metrics: Sequence[dict] = ()) -> None:
        """Starts saving `state` as the checkpoint of `step` (steps taken so far), with its
        checksum and the metrics lines `metrics` (JSON objects) written up to `step`.

        The checksum is taken from the host copies of the arrays, which the save waits for
        anyway: it adds the hashing (about 1 ms per MB), not a wait for the device.
        """
        self._done_reading()
        record = {"sha256": checksum(state), "metrics": list(metrics)}  # a copy: saved later
        with self._reporting_failed_saves():
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)
                ),
            )
        self._writing = step

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
            if reason is not None:  # what orbax logged about it is said by the line below
                _FAILED_SAVE_NOISE.save_failed(os.path.join(self.directory, str(step)))
            if _on_every_process(reason is None):
                self._done_reading()
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

    def check(self) -> None:
        """Raises, as `save` and `wait` would, a save that has failed in the background so far;
        does not wait for those still under way (a check costs microseconds)."""
        with self._reporting_failed_saves():
            self._manager.check_for_errors()
            # orbax keeps a failed save's error in its finalize thread, raised only by a wait;
            # once no save is in progress, the wait returns at once.
            if not self._manager.is_saving_in_progress():
                self._manager.wait_until_finished()

    def wait(self) -> None:
        """Blocks until every checkpoint started so far is on disk."""
        with self._reporting_failed_saves():
            self._manager.wait_until_finished()
        _FAILED_SAVE_NOISE.release()  # what orbax logged of saves that are over, not raised

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
            if isinstance(cause, OSError) and cause.filename is None and self._writing is not None:
                # Python's own writes (orbax's JSON items) name no file: name the step's folder.
                folder = os.path.join(self.directory, f"{self._writing}.orbax-checkpoint-tmp")
                cause = OSError(cause.errno, cause.strerror, folder)
            _FAILED_SAVE_NOISE.save_failed(self.directory)
            # A step's folder gets its name only once complete (orbax writes `<step>.orbax-
            # checkpoint-tmp`); orbax's own list of steps may hold the failed one.
            complete = []
            with contextlib.suppress(OSError):  # the folder removed, say
                complete = [int(name) for name in os.listdir(self.directory) if name.isdigit()]
            kept = (
                f"the newest complete one (step {max(complete)}) is kept: rerun the same command "
                "to resume from it once the cause is fixed"
                if complete
                else "none was complete before it: rerun the same command once the cause is fixed"
            )
            raise OSError(
                f"a checkpoint could not be written in {self.directory!r} ({_describe(cause)}); "
                + kept
            ) from error

    def close(self) -> None:
        try:
            self._manager.close()
        finally:
            self._leave_noise_filter()

    def _leave_noise_filter(self) -> None:
        """Ends this instance's part in `_FailedSaveNoise` (by `close`)."""
        self._done_reading()
        _FAILED_SAVE_NOISE.closed()


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
    """`error` in one line of at most about 300 characters, without tensorstore's spec; a
    tensorstore error from the file system as the OSError it wraps, which it names last."""
    name, message = type(error).__name__, (str(error).splitlines() or [""])[0]
    # As in 'Error writing "w/0" in OCDBT database at local file "/c/20.orbax-checkpoint-tmp/...":
    # Failed writing: "/c/.../d/4d9a...": Failed to write 551226 bytes to file 11: No space left
    # on device [os_error_code='28']', whose cause the cut at 300 characters would lose; in
    # errors opening a driver, the code comes after the spec.
    code = re.search(r"\[os_error_code='(\d+)'\]", str(error))
    message = message.split(" [tensorstore_spec=")[0]
    if code is not None:
        number, paths = int(code[1]), re.findall(r'"(/[^"]*)"', message)
        name, message = "OSError", str(OSError(number, os.strerror(number), *paths[-1:]))
    if len(message) > 300:
        message = message[:300] + "…"
    return f"{name}: {message}"


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
