"""l2reg: training dynamics of deep networks with L2 regularization.

The optax transforms are the library's front door::

    optimizer = optax.chain(l2reg.autol2(0.1, learning_rate=0.2), optax.sgd(0.2))
    updates, state = optimizer.update(grads, state, params, value=loss)

`l2reg.relations` holds the paper's empirical relations (t* ≈ c/(λη)).
"""

from l2reg import relations
from l2reg.transforms import AddL2State, AutoL2State, add_l2, autol2, current_l2

__all__ = ["AddL2State", "AutoL2State", "add_l2", "autol2", "current_l2", "relations"]
__version__ = "0.1.0"
