"""Plain convolutional network: no residual connections, no normalization by default."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from l2reg.models import layers


class CNN(nn.Module):
    """Per stage: 3-wide conv → [normalization] → ReLU → 2-wide average pool (stride 2).

    After the stages: global average pool and a linear readout. Inputs are channels-last,
    images (N, H, W, C) or signals (N, L, C); (N, L) signals get a channel axis. Each stage
    halves the spatial size (pooling is skipped on axes already of size 1). Without biases and
    normalization the output is homogeneous of degree len(channels) + 1 in the parameters
    (average pooling is linear, ReLU positively homogeneous). Conv biases exist when `use_bias`
    and `normalization` is not 'batch' (batch norm would cancel them; layer norm does not).
    """

    num_classes: int
    channels: Sequence[int] = (32, 64, 128)
    normalization: str | None = None
    parameterization: str = "standard"
    use_bias: bool = True
    dtype: Any = jnp.float32
    axis_name: str | None = None
    fused_batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        conv = layers.hidden(self, layers.Conv)
        norm = layers.normalizer(self, train=train)
        if x.ndim == 2:
            x = x[..., None]
        for features in self.channels:
            x = norm(relu=True)(conv(features)(x))
            window = tuple(min(2, size) for size in x.shape[1:-1])
            x = nn.avg_pool(x, window, strides=window)
        x = layers.global_average_pool(x)
        return layers.readout(self, x)
