"""The software and machine a result was computed on, for reports that say what produced them.

Two runs of the same code can differ in their last digits across package versions, CPUs and
XLA flags; a report that records them lets a reader tell which changed. `record()` reads the
versions from the installed distributions' metadata (no package is imported for it, so an
installed TensorFlow is named without the seconds it takes to load).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform

# Distributions whose versions a result depends on, in the order a report lists them. Of the
# TensorFlow builds, whichever are installed are recorded (the extras install one).
PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "ml_collections",
    "orbax-checkpoint",
    "tensorflow",
    "tensorflow-cpu",
)


def package_versions() -> dict[str, str]:
    """{distribution: version} of each installed distribution of `PACKAGES` (missing ones left
    out), with Python first as 'python'."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def record() -> dict:
    """The version record: package versions, the platform (OS, processor, CPU count), JAX's
    devices and the XLA_FLAGS environment variable (None when unset). Imports JAX."""
    import jax

    return {
        "versions": package_versions(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "devices": [str(device) for device in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS"),
    }


def markdown(environment: dict) -> list[str]:
    """The record as report lines: one line of versions, one of the machine."""
    versions = ", ".join(f"{name} {version}" for name, version in environment["versions"].items())
    return [
        f"Versions: {versions}.",
        f"Machine: {environment['platform']}, processor {environment['processor']}, "
        f"{environment['cpu_count']} CPUs; JAX devices: {', '.join(environment['devices'])}; "
        f"XLA_FLAGS: {environment['xla_flags'] or 'unset'}.",
    ]
