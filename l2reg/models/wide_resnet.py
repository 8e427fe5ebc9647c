"""Wide ResNet WRN-depth-width (Zagoruyko & Komodakis, 2016), pre-activation, channels-last."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from l2reg.models import layers


class WideBlock(nn.Module):
    """[norm] → ReLU → 3×3 conv (stride) → [norm] → ReLU → 3×3 conv, plus the shortcut.

    The shortcut is the identity when shapes agree, else a 1×1 conv of the activated input.
    """

    features: int
    strides: int
    conv: Any
    norm: Any

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = self.norm(relu=True)(x)
        if x.shape[-1] == self.features and self.strides == 1:
            shortcut = x
        else:
            shortcut = self.conv(self.features, kernel_size=1, strides=self.strides)(y)
        y = self.conv(self.features, strides=self.strides)(y)
        y = self.norm(relu=True)(y)
        y = self.conv(self.features)(y)
        return shortcut + y


class WideResNet(nn.Module):
    """WRN-depth-width on (N, H, W, C) images -> logits (N, num_classes) float32.

    depth = 6n + 4: a 3×3 stem conv with 16 channels, three groups of n blocks with 16·width,
    32·width and 64·width channels (strides 1, 2, 2), a final [norm] → ReLU, global average
    pool and a linear readout. WRN-28-10 has about 36.5M parameters. Convolution biases
    exist only when `use_bias` and `normalization` is None (batch norm cancels them).
    """

    num_classes: int
    depth: int = 28
    width: int = 10
    normalization: str | None = "batch"
    parameterization: str = "standard"
    use_bias: bool = True
    dtype: Any = jnp.float32
    axis_name: str | None = None
    fused_batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        if (self.depth - 4) % 6 or self.depth < 10:
            raise ValueError(f"WideResNet depth={self.depth} is not 6n+4 with n >= 1")
        blocks_per_group = (self.depth - 4) // 6
        conv = layers.hidden(self, layers.Conv)
        norm = layers.normalizer(self, train=train)
        x = conv(16)(x)
        for group, strides in enumerate((1, 2, 2)):
            features = 16 * 2**group * self.width
            for block in range(blocks_per_group):
                x = WideBlock(features, strides if block == 0 else 1, conv, norm)(x)
        x = norm(relu=True)(x)
        x = layers.global_average_pool(x)
        return layers.readout(self, x)
