"""`train_and_evaluate(config, workdir)`: the training loop, with its checkpoints and logs.

The only part of a run that does I/O, as in the flax examples: one flat loop over steps, with
`if` blocks for reports, checkpoints and preemption.
"""

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator

import jax
import ml_collections
import tqdm
from absl import logging

from l2reg import data
from l2reg.training import config as config_lib
from l2reg.training import rundir
from l2reg.training import trainer as trainer_lib
from l2reg.training.checkpoints import Checkpoints
from l2reg.training.steps import RunState


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@contextlib.contextmanager
def _sigterm_requests() -> Iterator[threading.Event]:
    """An event set when SIGTERM arrives (preemption), instead of the default exit.

    Under `jax.distributed` with several processes, JAX's preemption service handles SIGTERM
    and agrees on a step across hosts (`Checkpoints.reached_preemption`); no handler then.
    """
    requested = threading.Event()
    if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
        yield requested  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: requested.set())
    try:
        yield requested
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_finite(summary: dict, last_checkpoint: int | None) -> None:
    step = int(summary["nonfinite_step"])
    if step >= 0:
        kept = "none saved" if last_checkpoint is None else f"step {last_checkpoint}"
        raise NonFiniteLossError(
            f"training loss became NaN or infinite at step {step}; stopped, the last good "
            f"checkpoint ({kept}) is kept"
        )


class StoppedEarly(Exception):
    """A run that `train_and_evaluate` stopped before its last step (SIGTERM: its checkpoint is
    saved, and rerunning the same command goes on): raised by `require_finished` for callers
    that go on to use the run's results."""


def require_finished(state: RunState, config: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises `StoppedEarly` (one line) unless `state`, as `train_and_evaluate` returned it,
    has reached `config.steps`."""
    step = int(jax.device_get(state.step))
    if step < config.steps:
        raise StoppedEarly(
            f"stopped by SIGTERM at step {step} of {config.steps} in {workdir!r} (its checkpoint "
            "is saved): rerun the same command to go on"
        )


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    overwrite: bool = False,
    devices: list[jax.Device] | None = None,
    dataset: data.Dataset | None = None,
) -> RunState:
    """Trains and evaluates as `config` says, resuming from the newest checkpoint in `workdir`.

    Writes `workdir/metrics.jsonl` (a line every `eval_every` steps and at the end, fields
    `step, train_loss, train_accuracy, test_loss, test_accuracy, [validation_loss,
    validation_accuracy,] l2, lr, weight_norm, steps_per_sec`; train_* are means over the steps
    since the previous line, validation_* are there when the data set has a validation split
    (`config.data_options.validation_size`), l2 is the λ in force after the step,
    steps_per_sec leaves out evaluation), TensorBoard events and orbax
    checkpoints. A line's evaluation and its copies to the host are queued behind its step; the
    line is written while the next step runs (at once at a checkpoint). On SIGTERM, saves a
    checkpoint and returns; rerunning the same command continues bitwise identically.

    `devices` and `dataset` are those of `trainer.create_trainer` (a `dataset` given here is not
    recorded in the workdir: a rerun must pass the same one).

    Raises:
      ValueError: a bad config or workdir, or one another trainer is using (before the data
        are loaded and anything is written),
        or checkpoints that cannot be resumed from (of another state, or none readable; nothing
        is changed then).
      NonFiniteLossError: the training loss became NaN/inf (names the step).
      OSError: a checkpoint could not be written (a full disk; one line naming the folder and
        the cause), raised at the next report line or checkpoint after the failure.
    """
    devices = jax.devices() if devices is None else list(devices)
    config_lib.validate(config, len(devices))
    # From here on SIGTERM, during the start-up too, asks for a checkpoint (after the first
    # step) and a clean return; and no other trainer may use the workdir.
    with _sigterm_requests() as sigterm, rundir.locked(workdir):
        present = rundir.check_workdir(workdir, config, overwrite=overwrite)  # before the data load
        trainer = trainer_lib.create_trainer(
            config, devices=devices, dataset=dataset, validated=True
        )
        rundir.record_config(workdir, config, present, overwrite)
        checkpoints = Checkpoints(
            f"{workdir}/{rundir.CHECKPOINT_DIR}", keep=config.keep_checkpoints
        )
        log = bar = None  # made once the checkpoints are read
        try:
            state, last_checkpoint, checkpointed = checkpoints.restore_latest(trainer.init_state())
            start = int(state.step)
            if start >= config.steps:
                logging.info("the run in %s is already complete (step %d)", workdir, start)
            elif last_checkpoint is not None:
                logging.info("resuming from the checkpoint of step %d", start)
            is_chief = jax.process_index() == 0
            log = rundir.MetricsLog(workdir, start, checkpointed) if is_chief else None
            # Redrawn often on a terminal, every half minute in a log file.
            bar = tqdm.tqdm(
                total=config.steps,
                initial=start,
                disable=not is_chief,
                unit="step",
                mininterval=0.1 if sys.stderr.isatty() else 30.0,
            )
            # The throughput clock: time since `clock_step`, evaluations and checkpoints left out.
            clock, clock_step = time.perf_counter(), start
            # A report's evaluation and copies are queued behind its step, and its line is written
            # once the next step is queued: the device runs that step meanwhile.
            pending = None  # (step, summary, Trainer.evaluation_sums) of a report not yet written
            batches = trainer.train_batches(start)
            for step in range(start + 1, config.steps + 1):
                state = trainer.sharded_train_step(state, *next(batches))
                bar.update()
                checkpoint = step % config.checkpoint_every == 0 or step == config.steps
                stop = sigterm.is_set() or (
                    jax.process_count() > 1 and checkpoints.reached_preemption(step)
                )
                # A pending report is written now, behind this step, or at once before a
                # checkpoint (which waits for the step anyway).
                if pending is not None:
                    _write_report(pending, log, bar, clock, clock_step, last_checkpoint)
                    clock, clock_step, pending = time.perf_counter(), pending[0], None
                    # A checkpoint that failed to write in the background (a full disk) stops
                    # the run here, not a checkpoint interval later.
                    checkpoints.check()
                if step % config.eval_every == 0 or step == config.steps:
                    pending = _start_report(trainer, step, state)
                summary = None
                if pending is not None and (checkpoint or stop):
                    summary = _write_report(pending, log, bar, clock, clock_step, last_checkpoint)
                    pending = None
                if checkpoint or stop:
                    if summary is None:
                        summary = jax.device_get(trainer.summarize(state))
                    _check_finite(summary, last_checkpoint)
                    checkpoints.save(step, state, log.records if log else ())
                    last_checkpoint = step
                    clock, clock_step = time.perf_counter(), step
                if stop:
                    logging.warning(
                        "preempted (SIGTERM): saved the checkpoint of step %d and stopped; "
                        "rerun the same command to resume",
                        step,
                    )
                    break
        except BaseException:
            _close(bar, checkpoints, log, raising=False)  # the error raised is the first one
            raise
        _close(bar, checkpoints, log, raising=True)
    return state


def _close(
    bar: tqdm.tqdm | None,
    checkpoints: Checkpoints,
    log: rundir.MetricsLog | None,
    *,
    raising: bool,
) -> None:
    """Waits for the checkpoints under way and closes every file, all of them even when one
    fails (a full disk); then raises the first failure if `raising` and logs the others."""
    if bar is not None:
        bar.close()
    failures = []
    # `wait` raises a save that failed; `close`s raise a final flush that failed.
    for close in (checkpoints.wait, checkpoints.close, log.close if log else None):
        if close is None:
            continue
        try:
            close()
        except Exception as error:
            failures.append(error)
    first = failures.pop(0) if failures and raising else None
    for error in failures:
        logging.warning("also, while closing the run: %s", error)
    if first is not None:
        raise first


def _start_report(trainer: trainer_lib.Trainer, step: int, state: RunState) -> tuple:
    # Dispatches the report's summary and evaluation; their copies to the host start now.
    summary = trainer.summarize(state)
    evaluation_sums = trainer.evaluation_sums(state)
    for value in jax.tree.leaves((summary, [sums for sums, _ in evaluation_sums.values()])):
        value.copy_to_host_async()
    return step, summary, evaluation_sums


def _write_report(
    report: tuple,
    log: rundir.MetricsLog | None,
    bar: tqdm.tqdm,
    clock: float,
    clock_step: int,
    last_checkpoint: int | None,
) -> dict:
    """Waits for a report's values, checks them, writes its line; returns the host summary."""
    step, summary, evaluation_sums = report
    summary = jax.device_get(summary)  # waits for the report's step
    steps_per_sec = (step - clock_step) / (time.perf_counter() - clock)
    _check_finite(summary, last_checkpoint)
    record = {
        "step": step,
        "train_loss": float(summary["train_loss"]),
        "train_accuracy": float(summary["train_accuracy"]),
        # Waits for the evaluations: test, then validation if the data set has one.
        **trainer_lib.evaluation_means(evaluation_sums),
        "l2": float(summary["l2"]),
        "lr": float(summary["lr"]),
        "weight_norm": float(summary["weight_norm"]),
        "steps_per_sec": steps_per_sec,
    }
    if log:
        log.write(record)
    bar.set_postfix(
        loss=f"{record['train_loss']:.4f}",
        acc=f"{record['test_accuracy']:.4f}",
        l2=f"{record['l2']:.3g}",
    )
    return summary
