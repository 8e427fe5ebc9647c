"""Test configuration: four forced CPU devices, set before JAX is imported."""

import importlib.metadata
import os
import subprocess

import pytest

# XLA's CPU runtime aborts a process (exit 134, "only 3 of 4 arrived on time") when a device
# has not reached a collective 60 s after the others. The trainer keeps the host from queueing
# the programs far ahead that deadlock the four forced devices that way
# (`l2reg.training.trainer.CPU_PROGRAMS_AHEAD`); what is left is a loaded machine, two tests
# at a time on two cores, where one device's thread can be late: the tests wait three minutes
# for it. jaxlib 0.10 has these flags (older ones abort on flags they do not know, so they keep
# the default).
_RENDEZVOUS_FLAGS = (
    " --xla_cpu_collective_call_warn_stuck_timeout_seconds=60"
    " --xla_cpu_collective_call_terminate_timeout_seconds=180"
)
_JAXLIB_MAJOR_MINOR = tuple(
    int(part) for part in importlib.metadata.version("jaxlib").split(".")[:2]
)

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=4"
    + (_RENDEZVOUS_FLAGS if _JAXLIB_MAJOR_MINOR >= (0, 10) else "")
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Mounts a 64 KiB tmpfs at $0, then runs the rest of the command line on it.
_MOUNT = 'mount -t tmpfs -o size=64k tmpfs "$0" || exit 99; exec "$@"'


@pytest.fixture
def on_full_tmpfs():
    """`run(folder, command, **subprocess_run_keywords)`: runs `command` with a 64 KiB tmpfs
    mounted at `folder`, in a user and mount namespace of its own (no root needed where user
    namespaces are on), and returns the finished process; skips the test where that cannot be
    done."""

    def run(folder, command, **keywords):
        namespace = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _MOUNT]
        try:
            finished = subprocess.run([*namespace, str(folder), *command], **keywords)
        except FileNotFoundError:
            pytest.skip("no unshare command")
        output = finished.stderr if finished.stderr is not None else finished.stdout
        text = output if isinstance(output, str) else output.decode()
        if finished.returncode == 99 or text.startswith("unshare:"):
            pytest.skip(f"cannot mount a tmpfs here: {text.strip()}")
        return finished

    return run
