"""Batch norm, optionally followed by a ReLU, with its training gradient written by hand.

`BatchNorm` has the variables, statistics and forward pass of `flax.linen.BatchNorm` (float32
statistics with the fast variance E[x²] − E[x]², clipped at zero), so the two swap freely,
checkpoints included. What differs is the training-mode backward pass: rather than what JAX
derives from flax's layer and a ReLU after it, it is the textbook gradient,

    dz  = g · 1[z > 0]                           (only with the ReLU)
    dx  = γ / σ · (dz − E[dz] − x̂ · E[dz · x̂])
    dγ  = Σ dz · x̂,     dβ = Σ dz,

with x̂ = (x − μ) / σ and z = γ x̂ + β recomputed from the saved input x, so that the backward
pass needs to read x and g only twice: once for the two per-channel means, once for dx.

A `jax.custom_vjp` has no forward-mode derivative: `jax.jvp` or `jax.jacfwd` through a
training-mode pass needs flax's layer (the models' `fused_batch_norm=False`).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# Running-average decay of batch-norm statistics, as in the Flax ImageNet example.
BATCH_NORM_MOMENTUM = 0.9
# flax.linen.BatchNorm's default.
EPSILON = 1e-5


def _affine(centered, inv_std, scale, bias):
    """γ (x − μ)/σ + β from x − μ (in the statistics' dtype), in the order of flax's BatchNorm."""
    z = centered * (inv_std * scale)
    return z if bias is None else z + bias


def _device_means(values: jnp.ndarray, axis_name: str | None) -> jnp.ndarray:
    """`values` averaged over the devices of `axis_name`, or as they are for None."""
    return values if axis_name is None else lax.pmean(values, axis_name)


def _statistics(x, stats_dtype, axis_name):
    """Batch mean and variance per channel: flax's fast variance, with one collective."""
    x = x.astype(stats_dtype)
    reduction_axes = tuple(range(x.ndim - 1))
    mean, mean_of_squares = _device_means(
        jnp.stack([x.mean(reduction_axes), (x * x).mean(reduction_axes)]), axis_name
    )
    return mean, jnp.maximum(0.0, mean_of_squares - mean * mean)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def batch_norm_train(x, scale, bias, relu, axis_name, epsilon, dtype):
    """Training-mode batch norm over the last axis: (y, batch mean, batch variance).

    Args:
      x: activations (..., C), in any floating dtype.
      scale: γ, (C,). bias: β, (C,), or None for no shift.
      relu: whether y is ReLU(γ x̂ + β) rather than γ x̂ + β.
      axis_name: mapped axis whose devices share the statistics (synchronized batch norm), or
        None.
      epsilon: added to the variance before its square root.
      dtype: the dtype of y.

    Returns:
      y (x.shape, `dtype`), and the mean and variance (C,) in at least float32, for the
      running averages.
    """
    return _forward(x, scale, bias, relu, axis_name, epsilon, dtype)[0]


def _forward(x, scale, bias, relu, axis_name, epsilon, dtype):
    stats_dtype = jnp.promote_types(dtype, jnp.float32)
    mean, var = _statistics(x, stats_dtype, axis_name)
    inv_std = lax.rsqrt(var + epsilon)
    y = _affine(x.astype(stats_dtype) - mean, inv_std, scale, bias)
    if relu:
        y = jnp.maximum(y, 0)
    return (y.astype(dtype), mean, var), (x, scale, bias, mean, inv_std)


def _backward(relu, axis_name, epsilon, dtype, residuals, cotangents):
    del epsilon, dtype  # inv_std already holds them
    x, scale, bias, mean, inv_std = residuals
    g, g_mean, g_var = cotangents
    stats_dtype = mean.dtype
    centered = x.astype(stats_dtype) - mean
    x_hat = centered * inv_std
    dz = g.astype(stats_dtype)
    if relu:
        dz = jnp.where(_affine(centered, inv_std, scale, bias) > 0, dz, 0)
    # Local sums for the parameters (the trainer averages gradients over devices itself); the
    # means for dx span the devices, as the statistics do.
    reduction_axes = tuple(range(x.ndim - 1))
    d_bias = dz.sum(reduction_axes)
    d_scale = (dz * x_hat).sum(reduction_axes)
    count = x.size // x.shape[-1]
    mean_dz, mean_dz_x_hat, g_mean, g_var = _device_means(
        jnp.stack([d_bias, d_scale, g_mean, g_var]) / count, axis_name
    )
    dx = (scale * inv_std) * (dz - mean_dz - x_hat * mean_dz_x_hat)
    # The statistics are outputs too: μ = E[x] and σ² = E[x²] − μ².
    dx = dx + g_mean + 2 * g_var * centered
    return dx.astype(x.dtype), d_scale, None if bias is None else d_bias


batch_norm_train.defvjp(_forward, _backward)


class BatchNorm(nn.Module):
    """Batch norm over the last (feature) axis, then a ReLU when `relu`.

    A drop-in for `flax.linen.BatchNorm` (then `nn.relu`): the same variables under the same
    auto-generated name ('BatchNorm_<n>'), so a checkpoint of either loads into the other.

    Attributes:
      use_running_average: normalize with the running averages (evaluation) rather than the
        batch statistics, which training mode also folds into the running averages.
      relu: apply a ReLU to the normalized output, inside the hand-written gradient.
      use_bias: learn the shift β (the scale γ is always learned).
      axis_name: mapped axis over which the batch statistics are averaged, or None.
      dtype: the output dtype; statistics are computed in at least float32.
      momentum: decay of the running averages per training step.
      epsilon: added to the variance before its square root.
    """

    use_running_average: bool
    relu: bool = False
    use_bias: bool = True
    axis_name: str | None = None
    dtype: Any = jnp.float32
    momentum: float = BATCH_NORM_MOMENTUM
    epsilon: float = EPSILON

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        features = (x.shape[-1],)
        stats_dtype = jnp.promote_types(self.dtype, jnp.float32)
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, features, stats_dtype)
        running_var = self.variable("batch_stats", "var", jnp.ones, features, stats_dtype)
        scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
        bias = (
            self.param("bias", nn.initializers.zeros, features, jnp.float32)
            if self.use_bias
            else None
        )
        if self.use_running_average:
            inv_std = lax.rsqrt(running_var.value + self.epsilon)
            y = _affine(x.astype(stats_dtype) - running_mean.value, inv_std, scale, bias)
            return (jnp.maximum(y, 0) if self.relu else y).astype(self.dtype)
        # As flax's layer: statistics of the local batch alone while initializing.
        axis_name = None if self.is_initializing() else self.axis_name
        y, mean, var = batch_norm_train(
            x, scale, bias, self.relu, axis_name, self.epsilon, jnp.dtype(self.dtype)
        )
        if not self.is_initializing():
            decay = self.momentum
            running_mean.value = decay * running_mean.value + (1 - decay) * mean
            running_var.value = decay * running_var.value + (1 - decay) * var
        return y
