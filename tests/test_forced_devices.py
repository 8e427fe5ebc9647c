"""The tests' four forced CPU devices (tests/conftest.py) survive a loaded machine."""

import subprocess
import sys
import textwrap

import pytest

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
