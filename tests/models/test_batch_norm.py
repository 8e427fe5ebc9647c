"""Tests of the batch norm with a hand-written gradient against flax's layer and JAX's autodiff."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from l2reg import models
from l2reg.models import batch_norm

KEY = jax.random.key(0, impl="rbg")
EPSILON = batch_norm.EPSILON


def _inputs(shape=(6, 5, 5, 8), dtype=jnp.float32):
    rng = np.random.default_rng(0)
    channels = shape[-1]
    # Channels with different means and scales, so that every term of the gradient matters.
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0, channels) + rng.normal(0, 2, channels)
    scale = 1.0 + 0.3 * rng.standard_normal(channels)
    bias = 0.5 * rng.standard_normal(channels)
    weights = rng.standard_normal(shape)
    as_array = functools.partial(jnp.asarray, dtype=jnp.float32)
    return jnp.asarray(x, dtype), as_array(scale), as_array(bias), as_array(weights)


def _by_autodiff(x, scale, bias, relu, axis_name, dtype):
    """The same forward pass, differentiated by JAX instead of by the hand-written rule."""
    return batch_norm._forward(x, scale, bias, relu, axis_name, EPSILON, dtype)[0]


def _hand_written(x, scale, bias, relu, axis_name, dtype):
    return batch_norm.batch_norm_train(x, scale, bias, relu, axis_name, EPSILON, dtype)


def _loss(layer, x, scale, bias, weights, *, relu, axis_name=None):
    """A loss that depends on the output and on both statistics, so every cotangent is nonzero."""
    y, mean, var = layer(x, scale, bias, relu, axis_name, jnp.dtype(x.dtype))
    return jnp.sum(y.astype(jnp.float32) * weights) + jnp.sum(mean**2) + jnp.sum(jnp.sqrt(var))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("use_bias", [False, True])
def test_gradient_matches_autodiff_of_the_same_forward_pass(relu, use_bias):
    x, scale, bias, weights = _inputs()
    bias = bias if use_bias else None
    grads = {
        layer: jax.jit(
            jax.grad(functools.partial(_loss, layer, relu=relu), argnums=(0, 1, 2)),
        )(x, scale, bias, weights)
        for layer in (_by_autodiff, _hand_written)
    }
    assert (grads[_hand_written][2] is None) == (not use_bias)
    for actual, expected in zip(
        jax.tree.leaves(grads[_hand_written]), jax.tree.leaves(grads[_by_autodiff]), strict=True
    ):
        np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(("relu", "use_bias"), [(False, True), (True, True), (True, False)])
def test_layer_matches_flax_batch_norm_and_relu(dtype, train, relu, use_bias):
    # Same variables, same forward pass bit for bit, same running averages, and gradients
    # equal up to rounding.
    x, _, _, weights = _inputs(dtype=dtype)
    ours = batch_norm.BatchNorm(
        use_running_average=not train, relu=relu, use_bias=use_bias, dtype=dtype
    )
    flax_layer = nn.BatchNorm(
        use_running_average=not train,
        momentum=batch_norm.BATCH_NORM_MOMENTUM,
        use_bias=use_bias,
        dtype=dtype,
    )
    variables = jax.jit(flax_layer.init)(KEY, x)
    assert jax.tree.structure(jax.jit(ours.init)(KEY, x)) == jax.tree.structure(variables)
    rng = np.random.default_rng(1)
    variables = jax.tree.map(lambda v: v + jnp.asarray(rng.uniform(0.1, 1.0, v.shape)), variables)

    def apply(layer, params, x):
        y, updates = layer.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            mutable=["batch_stats"],
        )
        y = jax.nn.relu(y) if relu and layer is flax_layer else y
        return jnp.sum(y.astype(jnp.float32) * weights), (y, updates)

    results = {
        layer: jax.jit(jax.grad(functools.partial(apply, layer), (0, 1), has_aux=True))(
            variables["params"], x
        )
        for layer in (ours, flax_layer)
    }
    (grads, (y, updates)), (flax_grads, (flax_y, flax_updates)) = results.values()
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(flax_y, np.float32))
    assert y.dtype == flax_y.dtype == dtype
    for actual, expected in zip(
        jax.tree.leaves(updates), jax.tree.leaves(flax_updates), strict=True
    ):
        np.testing.assert_array_equal(actual, expected)
    # bfloat16 rounds dx to 8 significant bits, in whichever order it is computed.
    tolerance = 2e-5 if dtype == jnp.float32 else 2e-2
    for actual, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(flax_grads), strict=True):
        scale = float(jnp.max(jnp.abs(expected.astype(jnp.float32))))
        np.testing.assert_allclose(
            np.asarray(actual, np.float32), np.asarray(expected, np.float32), atol=tolerance * scale
        )


@pytest.mark.slow
def test_synchronized_gradient_is_the_full_batch_gradient():
    # Under shard_map over 4 devices with axis_name, the statistics and the gradient of the
    # summed per-device losses are those of the whole batch on one device.
    x, scale, bias, weights = _inputs(shape=(8, 3, 3, 4))
    loss = functools.partial(_loss, _hand_written, relu=True)
    expected = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, scale, bias, weights)
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))

    def per_device(x, scale, bias, weights):
        # The statistics are the same on every device: count their terms once.
        def local_loss(x, scale, bias):
            y, mean, var = _hand_written(x, scale, bias, True, "data", jnp.dtype(x.dtype))
            share = 1.0 / jax.lax.psum(1, "data")
            return jnp.sum(y * weights) + share * (jnp.sum(mean**2) + jnp.sum(jnp.sqrt(var)))

        dx, d_scale, d_bias = jax.grad(local_loss, argnums=(0, 1, 2))(x, scale, bias)
        return dx, jax.lax.psum(d_scale, "data"), jax.lax.psum(d_bias, "data")

    data, replicated = PartitionSpec("data"), PartitionSpec()
    sharded = jax.jit(
        jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=(data, replicated, replicated, data),
            out_specs=(data, replicated, replicated),
            check_vma=False,
        )
    )
    for actual, wanted in zip(sharded(x, scale, bias, weights), expected, strict=True):
        np.testing.assert_allclose(actual, wanted, rtol=1e-4, atol=1e-5)


def test_gradient_under_vmap_matches_one_at_a_time():
    # The sweep trains configurations side by side with vmap.
    x, scale, bias, weights = _inputs(shape=(3, 6, 5, 4))
    grad = jax.grad(functools.partial(_loss, _hand_written, relu=True), argnums=(0, 1, 2))
    scales = jnp.stack([scale, 2 * scale, scale - 0.5])
    batched = jax.jit(jax.vmap(grad, in_axes=(0, 0, None, 0)))(x, scales, bias, weights)
    for index in range(3):
        single = jax.jit(grad)(x[index], scales[index], bias, weights[index])
        for actual, expected in zip(batched, single, strict=True):
            np.testing.assert_allclose(actual[index], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["wrn10_1", "resnet18"])
def test_models_train_alike_with_either_batch_norm(name):
    # fused_batch_norm switches the implementation only: same variables, same loss, gradients
    # equal up to rounding, through residual blocks with and without a ReLU after the norm.
    shape = (4, 8, 8, 3) if name == "wrn10_1" else (4, 64, 64, 3)
    x = jnp.asarray(np.random.default_rng(2).standard_normal(shape), jnp.float32)
    labels = jnp.arange(shape[0]) % 10
    created = {
        fused: models.create(name, num_classes=10, fused_batch_norm=fused)
        for fused in (True, False)
    }
    variables = jax.jit(functools.partial(created[True].init, train=False))(KEY, x)
    assert jax.tree.structure(
        jax.eval_shape(functools.partial(created[False].init, train=False), KEY, x)
    ) == jax.tree.structure(variables)

    def loss(model, params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        one_hot = jax.nn.one_hot(labels, 10)
        return -jnp.mean(jnp.sum(one_hot * jax.nn.log_softmax(logits), -1)), updates

    results = [
        jax.jit(jax.value_and_grad(functools.partial(loss, created[fused]), has_aux=True))(
            variables["params"]
        )
        for fused in (True, False)
    ]
    ((value, updates), grads), ((flax_value, flax_updates), flax_grads) = results
    np.testing.assert_allclose(value, flax_value, rtol=1e-6)
    for actual, expected in zip(
        jax.tree.leaves(updates), jax.tree.leaves(flax_updates), strict=True
    ):
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
    for actual, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(flax_grads), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-5)
