"""l2reg: training dynamics of deep networks with L2 regularization.

The optax transforms are the library's front door::

    optimizer = optax.chain(
        l2reg.autol2(1e-2, learning_rate=0.01, momentum=0.9), optax.sgd(0.01, momentum=0.9)
    )
    updates, state = optimizer.update(grads, state, params, value=loss)

`l2reg.anytime_l2` is the λ schedule that relation 3 calls optimal at every step (for
`l2reg.add_l2`); `l2reg.TrainState` is flax's Linen TrainState with the loss passed on to the
optimizer; `l2reg.relations` holds the paper's empirical relations (t* ≈ c/(λη)).
"""

from l2reg import lazy

# The public names and their modules, imported on first use (`lazy.exports`).
_EXPORTS = {
    "AddL2State": "l2reg.transforms",
    "AutoL2State": "l2reg.transforms",
    "RecordTracker": "l2reg.transforms",
    "TrainState": "l2reg.train_state",
    "add_l2": "l2reg.transforms",
    "anytime_l2": "l2reg.schedules",
    "autol2": "l2reg.transforms",
    "current_l2": "l2reg.transforms",
}
__all__ = [*_EXPORTS, "relations"]
__getattr__, __dir__ = lazy.exports("l2reg", _EXPORTS)
# The one source of the version: setup.py reads it from this line.
__version__ = "0.1.0"
