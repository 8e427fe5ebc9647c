"""What `theory.figures` computes, checked before any work and without importing JAX.

`check` validates a `FigureSettings` and refuses, in one line naming the setting, its value and
the bound, sizes whose arrays cannot fit in this machine's memory (`memory_needed`). It imports
nothing heavier than the standard library, so that `experiments.theory_figures` reports a bad
flag in well under a second, before JAX, TensorFlow and neural-tangents load.
"""

import math
import numbers
import os
from typing import NamedTuple

# The embedded data sets of `l2reg.data` (`l2reg.data.EMBEDDED`) and their sizes: (training
# examples, test examples, features, classes). Copied because importing `l2reg` loads JAX;
# tests/theory/test_figure_settings.py keeps this table equal to what `l2reg.data.load` gives.
DATASETS = {"digits": (1500, 297, 64, 10), "mnist1d": (4000, 1000, 40, 10)}

# Building and evaluating the ReLU NTK costs about 0.1 s and 48 KB per layer here (measured:
# depth 2000 took 182 s on 8 inputs on a 2-core CPU): deeper networks are refused as a job
# that would not finish, long before they exhaust memory.
MAX_DEPTH = 1000

_FLOAT64_BYTES = 8


class FigureSettings(NamedTuple):
    """The sizes and hyperparameters of the three figures (defaults: the README's run).

    Attributes:
      dataset: one of `DATASETS`.
      num_train: training examples n of the kernel (relation 1 and the linear model).
      num_test: test examples m (all of the test split when None).
      depth: weight layers of the ReLU network, its homogeneity degree, ≥ 2.
      l2s: the L2 coefficients λ compared, distinct, each finite and > 0.
      lr: learning rate η of relation 1 (time is τ = η·t, t in steps).
      num_times: log-spaced evaluation steps T per curve, from 1 to 100/(λη).
      widths: hidden widths of the finite networks.
      finite_num_train: training examples of the finite-width comparison.
      finite_depth: weight layers of the finite networks, ≥ 2.
      finite_l2: λ of the finite-width comparison.
      finite_lr: η of the finite networks (full-batch gradient descent).
    """

    dataset: str = "digits"
    num_train: int = 300
    num_test: int | None = None
    depth: int = 3
    l2s: tuple[float, ...] = (1e-3, 1e-4, 1e-5)
    lr: float = 1.0
    num_times: int = 400
    widths: tuple[int, ...] = (128, 512, 2048)
    finite_num_train: int = 64
    finite_depth: int = 2
    finite_l2: float = 1e-2
    finite_lr: float = 0.5

    def sizes(self) -> tuple[int, int, int, int]:
        """(n, m, features, classes) of the relation-1 problem; the settings must be checked."""
        _, available_test, features, classes = DATASETS[self.dataset]
        num_test = available_test if self.num_test is None else self.num_test
        return self.num_train, num_test, features, classes


def available_memory() -> int:
    """This machine's physical memory in bytes (pages × page size)."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_needed(settings: FigureSettings) -> dict[str, tuple[int, str]]:
    """Lower bounds of the memory each stage holds at once, in bytes, and the setting that sets it.

    Counts only float64 arrays that must coexist, so a stage refused on this count cannot run:
      - ``kernels``: Θ(X, X) and its eigenvectors (n × n each) and Θ(X_test, X), m × n;
      - ``curves``: the flow's outputs at all times, (T, n, k) and (T, m, k);
      - ``finite network``: the antisymmetric pair's parameters and their gradients,
        4·(features·w + (depth − 2)·w² + w·k) at the largest width w, and one activation per
        layer, (n_finite + m)·w·(depth − 1).

    Returns:
      {stage: (bytes, name of the setting that makes it large)}.
    """
    n, m, features, classes = settings.sizes()
    width = max(settings.widths)
    depth = settings.finite_depth
    parameters = features * width + (depth - 2) * width**2 + width * classes
    activations = (settings.finite_num_train + m) * width * (depth - 1)
    return {
        "kernels": (_FLOAT64_BYTES * (2 * n * n + m * n), "num_train"),
        "curves": (_FLOAT64_BYTES * settings.num_times * (n + m) * classes, "num_times"),
        "finite network": (_FLOAT64_BYTES * (4 * parameters + activations), "widths"),
    }


def check(settings: FigureSettings) -> FigureSettings:
    """``settings`` with its numbers as Python numbers, or a one-line ValueError for the first
    bad one: "{name} must be {allowed}, got {value}", before any work.

    Also refuses sizes whose arrays cannot fit in `available_memory` (`memory_needed`) and
    depths above `MAX_DEPTH`.
    """
    if settings.dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {settings.dataset!r}")
    available_train, available_test, _, _ = DATASETS[settings.dataset]
    for name, maximum in (
        ("num_train", available_train),
        ("finite_num_train", available_train),
        ("num_test", available_test),
    ):
        value = getattr(settings, name)
        if name == "num_test" and value is None:
            continue
        split = name.split("_")[-1]
        _integer(name, value, 1, maximum, f" (the {split} examples of {settings.dataset!r})")
    for name in ("depth", "finite_depth"):
        _integer(name, getattr(settings, name), 2, MAX_DEPTH, " (2: one hidden layer)")
    _integer("num_times", settings.num_times, 1, None, "")
    for name in ("lr", "finite_l2", "finite_lr"):
        _positive(name, getattr(settings, name))
    l2s = tuple(settings.l2s)
    if not l2s:
        raise ValueError("l2s must be one or more numbers, got none")
    for l2 in l2s:
        _positive("l2s", l2, shown=list(l2s))
    repeated = [l2 for index, l2 in enumerate(l2s) if l2 in l2s[:index]]
    if repeated:
        raise ValueError(f"l2s must be distinct, got {repeated[0]:g} twice in {list(l2s)}")
    widths = tuple(settings.widths)
    if not widths:
        raise ValueError("widths must be one or more integers, got none")
    for width in widths:
        _integer("widths", width, 1, None, "", shown=list(widths))
    settings = settings._replace(l2s=tuple(float(l2) for l2 in l2s), widths=widths)
    available = available_memory()
    for stage, (needed, name) in memory_needed(settings).items():
        if needed > available:
            value = getattr(settings, name)
            raise ValueError(
                f"{name} must be small enough for the {stage} to fit in memory (at least "
                f"{needed / 2**30:.3g} GiB needed, this machine has {available / 2**30:.3g} "
                f"GiB), got {list(value) if isinstance(value, tuple) else value!r}"
            )
    return settings


def _integer(name, value, minimum, maximum, why, *, shown=None) -> None:
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not whole or value < minimum or (maximum is not None and value > maximum):
        bound = f"≥ {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        noun = "an integer" if shown is None else "integers"
        shown = value if shown is None else shown
        raise ValueError(f"{name} must be {noun} {bound}{why}, got {shown!r}")


def _positive(name, value, *, shown=None) -> None:
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (real and math.isfinite(value) and value > 0):
        shown = value if shown is None else shown
        raise ValueError(f"{name} must be finite and > 0, got {shown!r}")
