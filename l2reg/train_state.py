"""flax's Linen `TrainState`, with the training loss passed on to the optimizer.

``flax.training.train_state.TrainState.apply_gradients(grads=..., **kwargs)`` calls
``tx.update(grads, opt_state, params)`` and hands its other keywords to ``.replace()``, so
a transform that needs the loss, as `l2reg.autol2` and `optax.contrib.reduce_on_plateau`
do, never gets it. `TrainState` is a drop-in replacement that forwards it::

    state = l2reg.TrainState.create(apply_fn=model.apply, params=params, tx=optimizer)
    state = state.apply_gradients(grads=grads, value=loss, accuracy=accuracy)
"""

import functools
from typing import Any

import optax
from flax.training import train_state

__all__ = ["TrainState"]


class TrainState(train_state.TrainState):
    """flax's `TrainState` whose `apply_gradients` also takes ``value`` and ``accuracy``.

    Its fields, pytree structure and checkpoints are those of flax's class (it adds no
    field), so it saves and restores with orbax as flax's does.
    """

    def apply_gradients(
        self, *, grads: Any, value: Any = None, accuracy: Any = None, **kwargs: Any
    ) -> "TrainState":
        """One optimizer step: ``tx.update(grads, opt_state, params, value=..., accuracy=...)``.

        Args:
          grads: gradients with the structure of ``params``.
          value: the training loss without any L2 term (a scalar), passed to ``tx.update``
            as ``value=`` when given; `l2reg.autol2` needs it on every step.
          accuracy: the training accuracy (a scalar fraction), passed as ``accuracy=`` when
            given.
          **kwargs: other fields to ``.replace()``, as in flax's `TrainState`.

        Returns:
          The state with ``step`` incremented and ``params`` and ``opt_state`` updated.
          Optimizers that take no extra arguments (``optax.sgd``) ignore ``value`` and
          ``accuracy``.
        """
        extra_args = {
            name: arg for name, arg in (("value", value), ("accuracy", accuracy)) if arg is not None
        }
        # flax's apply_gradients (with its handling of overwrite-with-gradient params) runs on
        # a copy whose tx has the extra arguments bound; the result gets the caller's tx back.
        update = functools.partial(optax.with_extra_args_support(self.tx).update, **extra_args)
        bound = self.replace(tx=optax.GradientTransformation(self.tx.init, update))
        return super(TrainState, bound).apply_gradients(grads=grads, tx=self.tx, **kwargs)
