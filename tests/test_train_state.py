"""Tests for l2reg.TrainState: flax's Linen TrainState with the loss passed to the optimizer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax.training import train_state

import l2reg

X = jax.random.normal(jax.random.key(0), (16, 5))
Y = jnp.arange(16) % 3
MODEL = nn.Dense(3)
PARAMS = MODEL.init(jax.random.key(1), X)["params"]


def loss_and_accuracy(params):
    logits = MODEL.apply({"params": params}, X)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, Y).mean()
    return loss, (logits.argmax(-1) == Y).mean()


# η/(1 − μ) = 1 and λ = 0.3: cooldowns of 0.33 and 3.3 steps, so that λ decays within a few
# checks once the loss stops improving (the λ·η per step of 0.3 stops it fast). One object,
# so that every state has the same (static) tx.
OPTIMIZER = optax.chain(
    l2reg.autol2(0.3, learning_rate=0.1, momentum=0.9, check_every=2, patience=1),
    optax.sgd(0.1, momentum=0.9),
)


@jax.jit
def train_step(state):
    (loss, accuracy), grads = jax.value_and_grad(loss_and_accuracy, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads, value=loss, accuracy=accuracy)


def train(state, steps):
    for _ in range(steps):
        state = train_step(state)
    return state


def create(tx):
    return l2reg.TrainState.create(apply_fn=MODEL.apply, params=PARAMS, tx=tx)


def assert_bitwise_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_apply_gradients_passes_value_and_accuracy_to_the_optimizer():
    state = train(create(OPTIMIZER), 40)

    @jax.jit
    def optax_step(params, opt_state):  # the same step written against optax directly
        (loss, accuracy), grads = jax.value_and_grad(loss_and_accuracy, has_aux=True)(params)
        updates, opt_state = OPTIMIZER.update(
            grads, opt_state, params, value=loss, accuracy=accuracy
        )
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = PARAMS, OPTIMIZER.init(PARAMS)
    for _ in range(40):
        params, opt_state = optax_step(params, opt_state)
    assert int(state.step) == 40
    assert_bitwise_equal(state.params, params)
    assert_bitwise_equal(state.opt_state, opt_state)
    assert float(l2reg.current_l2(state.opt_state)) < 0.3  # it decayed
    assert float(state.opt_state[0].accuracy.best) > 0  # the accuracy reached it too


@pytest.mark.parametrize("extra", [{}, {"value": 1.0}, {"value": 1.0, "accuracy": 0.5}])
def test_apply_gradients_works_for_optimizers_without_extra_arguments(extra):
    grads = jax.grad(lambda p: loss_and_accuracy(p)[0])(PARAMS)
    ours = create(optax.sgd(0.1, momentum=0.9)).apply_gradients(grads=grads, **extra)
    flax_state = train_state.TrainState.create(
        apply_fn=MODEL.apply, params=PARAMS, tx=optax.sgd(0.1, momentum=0.9)
    )
    assert_bitwise_equal(ours.params, flax_state.apply_gradients(grads=grads).params)
    assert type(ours) is l2reg.TrainState and int(ours.step) == 1


def test_apply_gradients_replaces_other_fields_as_flax_does():
    class WithCounter(l2reg.TrainState):
        counter: int = 0

    state = WithCounter.create(apply_fn=MODEL.apply, params=PARAMS, tx=OPTIMIZER)
    grads = jax.tree.map(jnp.zeros_like, PARAMS)
    stepped = state.apply_gradients(grads=grads, value=1.0, counter=7)
    assert stepped.counter == 7 and stepped.tx is state.tx


def test_missing_value_names_flax_train_state_and_ours():
    grads = jax.tree.map(jnp.zeros_like, PARAMS)
    flax_state = train_state.TrainState.create(apply_fn=MODEL.apply, params=PARAMS, tx=OPTIMIZER)
    for call in (
        lambda: flax_state.apply_gradients(grads=grads),
        # flax hands value= to .replace(), not to the optimizer.
        lambda: flax_state.apply_gradients(grads=grads, value=1.0),
        lambda: create(OPTIMIZER).apply_gradients(grads=grads),
    ):
        with pytest.raises(TypeError, match=r"flax's TrainState.*use l2reg\.TrainState") as error:
            call()
        assert "\n" not in str(error.value)


def test_resumed_from_orbax_checkpoint_is_bitwise_equal(tmp_path):
    uninterrupted = train(create(OPTIMIZER), 40)
    first = train(create(OPTIMIZER), 17)  # an odd step: between two checks

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", first)
    checkpointer.wait_until_finished()
    # A fresh state as the target, as a restarted program has.
    target = create(OPTIMIZER)
    restored = checkpointer.restore(tmp_path / "state", target=target)
    assert type(restored) is l2reg.TrainState
    assert_bitwise_equal(restored, first)
    resumed = train(restored, 23)
    assert_bitwise_equal(resumed, uninterrupted)
    assert float(l2reg.current_l2(uninterrupted.opt_state)) < float(
        l2reg.current_l2(first.opt_state)
    ), "the resumed part should include a decay"
