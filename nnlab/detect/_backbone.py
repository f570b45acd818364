"""The convolution-only backbone of the detectors: it takes images of any size."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from ..nn import BatchNorm, MaxPool, conv


class ConvBackbone(nn.Module):
    """Stages of 3x3 convolutions (each with batch norm and ReLU), every stage followed by 2x2 max
    pooling, so stage i's map has stride 2^(i + 1): four stages give the stride-16 map of
    Faster R-CNN. No dense layer, so any image size works.

    x: [batch, h, w, c] -> one map per stage, [batch, h / 2^(i + 1), w / 2^(i + 1), widths[i]]
    """

    widths: Sequence[int] = (16, 32, 64, 128)
    convs_per_stage: int = 1
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> list[jax.Array]:
        maps = []
        h = x
        for s, width in enumerate(self.widths):
            for i in range(self.convs_per_stage):
                h = conv(width, 3, use_bias=not self.batch_norm, name=f"conv{s + 1}_{i + 1}")(h)
                if self.batch_norm:
                    h = BatchNorm(name=f"bn{s + 1}_{i + 1}")(h, train=train)
                h = nn.relu(h)
            h = MaxPool(2, name=f"pool{s + 1}")(h)
            maps.append(h)
        return maps
