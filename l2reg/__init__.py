"""l2reg: training dynamics of deep networks with L2 regularization.

The optax transforms are the library's front door::

    optimizer = optax.chain(
        l2reg.autol2(1e-2, learning_rate=0.01, momentum=0.9), optax.sgd(0.01, momentum=0.9)
    )
    updates, state = optimizer.update(grads, state, params, value=loss)

`l2reg.TrainState` is flax's Linen TrainState with the loss passed on to the optimizer;
`l2reg.relations` holds the paper's empirical relations (t* ≈ c/(λη)).
"""

from l2reg import relations
from l2reg.train_state import TrainState
from l2reg.transforms import (
    AddL2State,
    AutoL2State,
    RecordTracker,
    add_l2,
    autol2,
    current_l2,
)

__all__ = [
    "AddL2State",
    "AutoL2State",
    "RecordTracker",
    "TrainState",
    "add_l2",
    "autol2",
    "current_l2",
    "relations",
]
# The one source of the version: setup.py reads it from this line.
__version__ = "0.1.0"
