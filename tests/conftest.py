"""Test configuration: four forced CPU devices, set before JAX is imported."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import subprocess

import pytest

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
