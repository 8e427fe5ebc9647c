"""Building blocks shared by every model family.

`Dense` and `Conv` implement the two parameterizations the paper uses:

- 'standard': W ~ N(0, σ²/fan_in) and y = W·x + b (He initialization for σ = √2);
- 'ntk':      W ~ N(0, 1)         and y = (σ/√fan_in)·W·x + b (Jacot et al., 2018).

Both draw the same normal variates from the same key, so a model built with either
parameterization computes the same function at initialization; what differs is the gradient
flow (the NTK form keeps the kernel finite as width grows). A bias has fan-in 1, so the two
parameterizations coincide for it; biases start at zero. Parameters are always float32; the
forward pass runs in the module's compute `dtype`.
"""

import functools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from l2reg.models.batch_norm import BATCH_NORM_MOMENTUM, BatchNorm

PARAMETERIZATIONS = ("standard", "ntk")
NORMALIZATIONS = (None, "batch", "layer")
# σ that preserves the second moment of ReLU activations layer to layer (He et al., 2015).
RELU_GAIN = math.sqrt(2.0)


def _scaled_kernel(module, shape: tuple[int, ...], fan_in: int) -> jnp.ndarray:
    """Creates the float32 'kernel' of `module` and returns it scaled, in the compute dtype."""
    scale = module.weight_std / math.sqrt(fan_in)
    if module.parameterization == "ntk":
        init_std, multiplier = 1.0, scale
    else:
        init_std, multiplier = scale, 1.0
    kernel = module.param("kernel", nn.initializers.normal(init_std), shape, jnp.float32)
    # Scale in float32 before the cast, so that bfloat16 sees a well-scaled kernel.
    return (kernel * multiplier).astype(module.dtype)


def _add_bias(module, y: jnp.ndarray) -> jnp.ndarray:
    if not module.use_bias:
        return y
    bias = module.param("bias", nn.initializers.zeros, (module.features,), jnp.float32)
    return y + bias.astype(module.dtype)


class Dense(nn.Module):
    """Fully connected layer: (..., fan_in) -> (..., features)."""

    features: int
    use_bias: bool = True
    parameterization: str = "standard"
    weight_std: float = RELU_GAIN
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        fan_in = x.shape[-1]
        kernel = _scaled_kernel(self, (fan_in, self.features), fan_in)
        return _add_bias(self, jnp.dot(x.astype(self.dtype), kernel))


class Conv(nn.Module):
    """Convolution over the middle axes of channels-last inputs (N, *spatial, C).

    `kernel_size` (odd) and `strides` are ints applied to every spatial axis, so the same layer
    serves images (N, H, W, C) and signals (N, L, C). Each side is padded by (kernel_size − 1)/2:
    the output size of 'SAME' padding at any stride, centered as in the original Wide ResNet and
    torchvision's ResNet. ('SAME' pads a strided convolution of an even-sized input on one side
    only, which cuDNN cannot do, so on a GPU XLA would copy the input into a padded buffer in a
    pass of its own.)
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    use_bias: bool = True
    parameterization: str = "standard"
    weight_std: float = RELU_GAIN
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"Conv kernel_size={self.kernel_size} must be odd")
        num_spatial = x.ndim - 2
        window = (self.kernel_size,) * num_spatial
        fan_in = math.prod(window) * x.shape[-1]
        kernel = _scaled_kernel(self, (*window, x.shape[-1], self.features), fan_in)
        spatial = "HWD"[:num_spatial]
        y = lax.conv_general_dilated(
            x.astype(self.dtype),
            kernel,
            window_strides=(self.strides,) * num_spatial,
            padding=((self.kernel_size // 2,) * 2,) * num_spatial,
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
        )
        return _add_bias(self, y)


def normalization(
    kind: str | None,
    *,
    train: bool,
    use_bias: bool,
    axis_name: str | None,
    dtype: Any,
    fused: bool = True,
    relu: bool = False,
) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """Returns a normalization layer over the last (feature) axis, or the identity for None,
    followed by a ReLU when `relu`.

    Batch norm averages its statistics over the mapped axis `axis_name` when given (synchronized
    batch norm under `shard_map`); its learned shift exists only when `use_bias`. With `fused`
    it is `batch_norm.BatchNorm`, which takes the ReLU into its hand-written gradient; else
    flax's `nn.BatchNorm`, differentiated by JAX. Both have the same variables and forward pass.
    """
    if kind not in NORMALIZATIONS:
        raise ValueError(f"normalization={kind!r} is not one of {NORMALIZATIONS}")
    if kind == "batch" and fused:
        return BatchNorm(
            use_running_average=not train,
            relu=relu,
            use_bias=use_bias,
            axis_name=axis_name,
            dtype=dtype,
        )
    if kind == "batch":
        layer = nn.BatchNorm(
            use_running_average=not train,
            momentum=BATCH_NORM_MOMENTUM,
            use_bias=use_bias,
            axis_name=axis_name,
            dtype=dtype,
        )
    elif kind == "layer":
        layer = nn.LayerNorm(use_bias=use_bias, dtype=dtype)
    else:
        layer = _identity
    return (lambda x: nn.relu(layer(x))) if relu else layer


def _identity(x: jnp.ndarray) -> jnp.ndarray:
    return x


def global_average_pool(x: jnp.ndarray) -> jnp.ndarray:
    """(N, *spatial, C) -> (N, C), averaged in float32 and returned in the input dtype."""
    spatial_axes = tuple(range(1, x.ndim - 1))
    return jnp.mean(x, axis=spatial_axes, dtype=jnp.float32).astype(x.dtype)


def hidden(model, layer: type[nn.Module]) -> Callable[..., nn.Module]:
    """`layer` (Dense or Conv) configured from a model's common options, for hidden layers.

    Batch norm subtracts each feature's mean over the batch, which cancels a per-feature bias
    added before it, so with batch norm hidden layers have no biases; otherwise they have them
    when the model has `use_bias`. (Layer norm subtracts the mean over the features of each
    example, which a per-feature bias shifts unevenly: it is not cancelled.)
    """
    return functools.partial(
        layer,
        use_bias=model.use_bias and model.normalization != "batch",
        parameterization=model.parameterization,
        dtype=model.dtype,
    )


def normalizer(model, *, train: bool) -> Callable[..., Callable[[jnp.ndarray], jnp.ndarray]]:
    """Constructor of the model's normalization layer (see `normalization`): call it with
    `relu=True` for the layer followed by a ReLU."""
    return functools.partial(
        normalization,
        model.normalization,
        train=train,
        use_bias=model.use_bias,
        axis_name=model.axis_name,
        dtype=model.dtype,
        fused=model.fused_batch_norm,
    )


def readout(model, x: jnp.ndarray) -> jnp.ndarray:
    """Linear readout (N, features) -> float32 logits (N, model.num_classes)."""
    logits = Dense(
        model.num_classes,
        use_bias=model.use_bias,
        parameterization=model.parameterization,
        weight_std=1.0,
        dtype=model.dtype,
    )(x)
    return logits.astype(jnp.float32)
