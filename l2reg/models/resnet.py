"""ResNet v1.5 (He et al., 2016) for ImageNet-sized images, channels-last."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from l2reg.models import layers


class BasicBlock(nn.Module):
    """3×3 conv (stride) → [norm] → ReLU → 3×3 conv → [norm], plus shortcut, then ReLU."""

    features: int
    strides: int
    conv: Any
    norm: Any
    expansion = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = self.norm(relu=True)(self.conv(self.features, strides=self.strides)(x))
        y = self.norm()(self.conv(self.features)(y))
        return nn.relu(_shortcut(self, x, y.shape[-1]) + y)


class BottleneckBlock(nn.Module):
    """1×1 conv → 3×3 conv (stride) → 1×1 conv to 4·features, each with [norm], ReLU between."""

    features: int
    strides: int
    conv: Any
    norm: Any
    expansion = 4

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = self.norm(relu=True)(self.conv(self.features, kernel_size=1)(x))
        y = self.norm(relu=True)(self.conv(self.features, strides=self.strides)(y))
        y = self.norm()(self.conv(self.features * self.expansion, kernel_size=1)(y))
        return nn.relu(_shortcut(self, x, y.shape[-1]) + y)


def _shortcut(block, x: jnp.ndarray, features: int) -> jnp.ndarray:
    """Identity when shapes agree, else a strided 1×1 conv → [norm] projection."""
    if x.shape[-1] == features and block.strides == 1:
        return x
    return block.norm()(block.conv(features, kernel_size=1, strides=block.strides)(x))


STAGE_SIZES = {
    18: ((2, 2, 2, 2), BasicBlock),
    34: ((3, 4, 6, 3), BasicBlock),
    50: ((3, 4, 6, 3), BottleneckBlock),
    101: ((3, 4, 23, 3), BottleneckBlock),
    152: ((3, 8, 36, 3), BottleneckBlock),
}


class ResNet(nn.Module):
    """ResNet-depth on (N, H, W, C) images -> logits (N, num_classes) float32.

    7×7 stride-2 stem with 64 channels → [norm] → ReLU → 3×3 stride-2 max pool, four stages of
    64, 128, 256, 512 base channels (stride 2 from the second stage on, in the 3×3 conv),
    global average pool and a linear readout. ResNet-18 has about 11.7M parameters and
    ResNet-50 about 25.6M with 1000 classes. depth is one of STAGE_SIZES.
    """

    num_classes: int
    depth: int = 50
    normalization: str | None = "batch"
    parameterization: str = "standard"
    use_bias: bool = True
    dtype: Any = jnp.float32
    axis_name: str | None = None
    fused_batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        if self.depth not in STAGE_SIZES:
            raise ValueError(f"ResNet depth={self.depth} is not one of {sorted(STAGE_SIZES)}")
        stage_sizes, block = STAGE_SIZES[self.depth]
        conv = layers.hidden(self, layers.Conv)
        norm = layers.normalizer(self, train=train)
        x = norm(relu=True)(conv(64, kernel_size=7, strides=2)(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for stage, num_blocks in enumerate(stage_sizes):
            for index in range(num_blocks):
                strides = 2 if stage > 0 and index == 0 else 1
                x = block(64 * 2**stage, strides, conv, norm)(x)
        x = layers.global_average_pool(x)
        return layers.readout(self, x)
