"""The tests' four forced CPU devices (tests/conftest.py) survive a loaded machine."""

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from l2reg.training import trainer as trainer_lib

# Device 0 reaches the all-reduce 65 s after the other three: under XLA's default CPU
# rendezvous timeouts (a warning at 20 s, the process aborted 40 s later) this exits 134.
LATE_DEVICE = textwrap.dedent(
    """
    import time

    import jax
    import jax.numpy as jnp

    def late_on_device_0(x):
        if float(x[0]) == 0.0:
            time.sleep(65)
        return x

    def step(x):
        shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
        return jax.lax.psum(jax.pure_callback(late_on_device_0, shape, x), "devices")

    print(jax.pmap(step, axis_name="devices")(jnp.arange(4.0).reshape(4, 1)).ravel().tolist())
    """
)


@pytest.mark.slow
def test_a_device_late_to_a_collective_is_waited_for():
    # The subprocess inherits XLA_FLAGS from tests/conftest.py, as the tests' launchers do.
    finished = subprocess.run(
        [sys.executable, "-c", LATE_DEVICE], capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.splitlines()[-1] == "[6.0, 6.0, 6.0, 6.0]"


# The trainer's step queued 5,000 times on one fixed batch (the host far ahead of the devices),
# then 40 evaluations, with the rendezvous aborting after 20 s. Without the trainer's pacing
# (CPU_PROGRAMS_AHEAD = None) this aborted in 2 of 2 runs; with it, it ends in about 13 s.
HOST_AHEAD = textwrap.dedent(
    """
    import sys

    import jax

    from l2reg import training
    from l2reg.training import trainer as trainer_lib

    if sys.argv[1] == "unpaced":
        trainer_lib.CPU_PROGRAMS_AHEAD = None
    config = training.default_config()
    config.model_options.widths = (16,)
    config.batch_size, config.eval_batch_size = 8, 4
    trainer = training.create_trainer(config)
    state, batch = trainer.init_state(), next(trainer.train_batches(0))
    for _ in range(5000):
        state = trainer.sharded_train_step(state, *batch)
    jax.block_until_ready(state)
    for _ in range(40):
        evaluation = trainer.evaluate(state)
    print(int(state.step), evaluation["test_accuracy"] > 0)
    """
)
SHORT_RENDEZVOUS = (
    " --xla_cpu_collective_call_warn_stuck_timeout_seconds=10"
    " --xla_cpu_collective_call_terminate_timeout_seconds=20"
)


@pytest.mark.slow
def test_a_host_far_ahead_of_four_cpu_devices_does_not_deadlock_them():
    jaxlib = tuple(int(part) for part in importlib.metadata.version("jaxlib").split(".")[:2])
    flags = "--xla_force_host_platform_device_count=4" + (
        SHORT_RENDEZVOUS if jaxlib >= (0, 10) else ""
    )
    finished = subprocess.run(
        [sys.executable, "-c", HOST_AHEAD, "paced"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XLA_FLAGS": flags},
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.split() == ["5000", "True"]


def test_only_several_cpu_devices_pace_the_host(monkeypatch):
    cpus = jax.devices("cpu")
    assert trainer_lib.programs_ahead(cpus[:4]) == trainer_lib.CPU_PROGRAMS_AHEAD == 8
    assert trainer_lib.programs_ahead(cpus[:1]) is None
    # A paced function waits for its result on every 8th call, and is otherwise the function.
    waited = []
    monkeypatch.setattr(trainer_lib.jax, "block_until_ready", waited.append)
    step = jax.jit(lambda x: x + 1)
    paced = trainer_lib.Paced(step, 8)
    results = [paced(n) for n in range(20)]
    assert [int(r) for r in results] == list(range(1, 21))
    assert [int(r) for r in waited] == [8, 16]
    assert paced.lower(1).as_text() == step.lower(1).as_text()
    unpaced = trainer_lib.Paced(step, None)
    assert [int(unpaced(n)) for n in range(9)] == list(range(1, 10)) and len(waited) == 2
