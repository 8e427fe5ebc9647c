"""Fully connected ReLU network (the paper's FC net and the theory's L-layer network)."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from l2reg.models import layers


class MLP(nn.Module):
    """Dense → [normalization] → ReLU for each hidden width, then a linear readout.

    Inputs of any per-example shape are flattened: (N, ...) -> logits (N, num_classes) float32.
    Hidden layers have σ_w = √2 and the readout σ_w = 1 (see `layers`), like neural-tangents'
    `stax.Dense(W_std=σ_w)` in the same parameterization. Without biases and normalization the
    output is homogeneous of degree len(widths) + 1 in the parameters:
    f(a·θ) = a^(len(widths)+1)·f(θ). Hidden biases exist when `use_bias` and
    `normalization` is not 'batch' (batch norm would cancel them; layer norm does not).
    """

    num_classes: int
    widths: Sequence[int] = (256, 256)
    normalization: str | None = None
    parameterization: str = "standard"
    use_bias: bool = True
    dtype: Any = jnp.float32
    axis_name: str | None = None
    fused_batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        dense = layers.hidden(self, layers.Dense)
        norm = layers.normalizer(self, train=train)
        x = x.reshape(x.shape[0], -1)
        for width in self.widths:
            x = norm(relu=True)(dense(width)(x))
        return layers.readout(self, x)
