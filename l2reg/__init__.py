"""l2reg: training dynamics of deep networks with L2 regularization.

The optax transforms are the library's front door::

    optimizer = optax.chain(
        l2reg.autol2(1e-2, learning_rate=0.01, momentum=0.9), optax.sgd(0.01, momentum=0.9)
    )
    updates, state = optimizer.update(grads, state, params, value=loss)

`l2reg.TrainState` is flax's Linen TrainState with the loss passed on to the optimizer;
`l2reg.relations` holds the paper's empirical relations (t* ≈ c/(λη)).
"""

import importlib

# The public names and the module each comes from, imported on first use (PEP 562), so that
# `import l2reg.training.defaults` (what a config file needs) loads no JAX: a launcher can
# report a bad flag before the heavy imports.
_EXPORTS = {
    "AddL2State": "l2reg.transforms",
    "AutoL2State": "l2reg.transforms",
    "RecordTracker": "l2reg.transforms",
    "TrainState": "l2reg.train_state",
    "add_l2": "l2reg.transforms",
    "autol2": "l2reg.transforms",
    "current_l2": "l2reg.transforms",
}
__all__ = [*_EXPORTS, "relations"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    try:
        return importlib.import_module(f"l2reg.{name}")  # a submodule: l2reg.relations, ...
    except ModuleNotFoundError as error:
        if error.name != f"l2reg.{name}":
            raise
        raise AttributeError(f"module 'l2reg' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


# The one source of the version: setup.py reads it from this line.
__version__ = "0.1.0"
