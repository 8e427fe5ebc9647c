"""Installs l2reg: the AutoL2 optax transform, experiments and infinite-width theory."""

import pathlib
import re

import setuptools

HERE = pathlib.Path(__file__).parent
# One source of the version: the `__version__ = "..."` line of l2reg/__init__.py.
VERSION = re.search(
    r'^__version__ = "([^"]+)"$',
    (HERE / "l2reg" / "__init__.py").read_text(encoding="utf-8"),
    flags=re.M,
).group(1)

CORE = [
    "jax>=0.4.35,<0.13",
    "optax>=0.2.4",
    "flax>=0.10",
    "numpy>=1.26",
]
EXTRAS = {
    "experiments": [
        "tensorflow-datasets>=4.9",
        # TFDS's builders import it to prepare a data set; etils no longer installs it.
        "importlib_resources>=6.0",
        "tensorflow>=2.16",
        "ml-collections>=1.0",
        "absl-py>=2.1",
        "orbax-checkpoint>=0.11",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "tensorboardX>=2.6",
        "scikit-learn>=1.4",
        "mnist1d>=0.0.2",
    ],
    "theory": [
        "neural-tangents>=0.6.5",
        "diffrax>=0.6",
        "scipy>=1.11",
    ],
}
EXTRAS["test"] = [
    "pytest>=8",
    "pytest-xdist>=3.5",
    "build>=1.0",
    "ruff>=0.6",
    "nbclient>=0.10",
    "nbformat>=5.9",
    "ipykernel>=6.29",
    *EXTRAS["experiments"],
    *EXTRAS["theory"],
]
EXTRAS["all"] = sorted({requirement for group in EXTRAS.values() for requirement in group})

setuptools.setup(
    name="l2reg",
    version=VERSION,
    description=(
        "L2 regularization dynamics in deep networks: the AutoL2 optax transform, "
        "the empirical relations t* ~ c/(l2 lr), experiments and infinite-width theory."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["l2reg*", "experiments*", "theory*"]),
    package_data={
        "experiments": ["configs/*.py"],
        "l2reg": ["py.typed", "reproduction/calibration.json"],
    },
    install_requires=CORE,
    extras_require=EXTRAS,
)
