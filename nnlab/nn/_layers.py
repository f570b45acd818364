"""The lecture's convolutional building blocks as Flax Linen modules.

Every module maps images x: [batch, height, width, channels] (NHWC) and takes the
keyword-only `train: bool` where it behaves differently while training. Convolutions are
Flax's `nn.Conv` (`conv` and `conv1x1` name the lecture's forms), with the kernel gradient
computed as a matrix product on CPU (see `_conv`); `from_linen` turns any
network built from these into an nnlab `Model`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from .._checks import check_positive
from ._conv import conv_general_dilated


def conv(
    features: int,
    kernel: int = 3,
    *,
    stride: int = 1,
    padding: str | int = "SAME",
    use_bias: bool = True,
    name: str | None = None,
) -> nn.Conv:
    """A k x k convolution with `features` filters: k^2 * L0 * L1 weights (+ L1 biases).

    padding: 'SAME' (output size ceil(n / stride)), 'VALID' (no padding) or a number of pixels.
    """
    check_positive(features, name="features", integer=True)
    check_positive(kernel, name="kernel", integer=True)
    check_positive(stride, name="stride", integer=True)
    pad = ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=pad,
        use_bias=use_bias,
        name=name,
        conv_general_dilated=conv_general_dilated,
    )


def conv1x1(features: int, *, stride: int = 1, name: str | None = None) -> nn.Conv:
    """A 1x1 convolution: a dense layer across channels at every pixel (L0 * L1 weights)."""
    return conv(features, 1, stride=stride, padding="VALID", name=name)


def _check_window(x: jax.Array, window: int, stride: int, padding: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"x: expected images [batch, height, width, channels], got shape {x.shape}")
    check_positive(window, name="window", integer=True)
    check_positive(stride, name="stride", integer=True)
    if padding not in ("VALID", "SAME"):
        raise ValueError(f"padding: expected 'VALID' or 'SAME', got {padding!r}")
    if padding == "VALID" and (x.shape[1] < window or x.shape[2] < window):
        raise ValueError(f"window: expected at most the map size {x.shape[1:3]}, got {window}")


def _tiles(x: jax.Array, window: int, stride: int, padding: str) -> jax.Array | None:
    """x: [b, h, w, c] -> [b, h / window, window, w / window, window, c] where non-overlapping
    windows tile the map exactly (a pool is then a reduction over axes 2 and 4); else None."""
    b, h, w, c = x.shape
    if stride == window and padding == "VALID" and h % window == 0 and w % window == 0:
        return x.reshape(b, h // window, window, w // window, window, c)
    return None


def max_pool(x: jax.Array, window: int, stride: int | None = None, padding: str = "VALID") -> jax.Array:
    """The maximum of every `window` x `window` patch, `stride` apart (default: the window).

    x: [batch, h, w, c] -> [batch, (h - window) // stride + 1, (w - window) // stride + 1, c] with
    'VALID' (3x3 windows with stride 2 turn a 7x5 map into 3x2), ceil(h / stride) with 'SAME'.
    Non-overlapping windows that tile the map take the maximum over a reshape: on XLA:CPU its
    gradient beats a reduce-window's (a small CNN's training step 1.4-1.75x faster,
    benchmarks/pooling_cpu.py).
    """
    stride = window if stride is None else stride
    _check_window(x, window, stride, padding)
    tiles = _tiles(x, window, stride, padding)
    if tiles is not None:
        return tiles.max(axis=(2, 4))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


def avg_pool(x: jax.Array, window: int, stride: int | None = None, padding: str = "VALID") -> jax.Array:
    """The mean of every `window` x `window` patch, `stride` apart; shapes as `max_pool`
    ('SAME' averages over the pixels inside the map only). Windows that tile the map take the
    mean over a reshape, as `max_pool` does (on XLA:CPU a reduce-window's gradient took 3x as
    long, 5.9 vs 1.9 ms on 28 x 28 x 32 maps: benchmarks/README.md)."""
    stride = window if stride is None else stride
    _check_window(x, window, stride, padding)
    tiles = _tiles(x, window, stride, padding)
    if tiles is not None:
        return tiles.mean(axis=(2, 4))
    return nn.avg_pool(x, (window, window), strides=(stride, stride), padding=padding, count_include_pad=False)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """The mean of every channel over the whole map: x: [batch, h, w, c] -> [batch, c]."""
    if x.ndim != 4:
        raise ValueError(f"x: expected images [batch, height, width, channels], got shape {x.shape}")
    return jnp.mean(x, axis=(1, 2))


class MaxPool(nn.Module):
    """`max_pool` as a layer: x: [batch, h, w, c] -> [batch, h', w', c]."""

    window: int = 2
    stride: int | None = None
    padding: str = "VALID"

    def __call__(self, x: jax.Array) -> jax.Array:
        return max_pool(x, self.window, self.stride, self.padding)


class AvgPool(nn.Module):
    """`avg_pool` as a layer: x: [batch, h, w, c] -> [batch, h', w', c]."""

    window: int = 2
    stride: int | None = None
    padding: str = "VALID"

    def __call__(self, x: jax.Array) -> jax.Array:
        return avg_pool(x, self.window, self.stride, self.padding)


class GlobalAvgPool(nn.Module):
    """One number per channel, the map's mean: x: [batch, h, w, c] -> [batch, c]."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return global_avg_pool(x)


class BatchNorm(nn.Module):
    """y = scale * (x - mean) / sqrt(var + epsilon) + bias per channel (last axis).

    While training the mean and variance are the batch's, and the running averages in the
    'batch_stats' collection move towards them by (1 - momentum); when evaluating the
    running averages are used, so a sample's output does not depend on its batch.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        return nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon, name="bn")(x)


class Dropout(nn.Module):
    """Sets a fraction `drop_rate` of the activations to zero while training and scales the
    rest by 1 / (1 - drop_rate) (inverted dropout), so evaluation is the identity.

    The mask comes from the 'dropout' PRNG stream (`Model.apply(..., key=key)`): the same
    key gives the same mask.
    """

    drop_rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if not 0 <= self.drop_rate < 1:
            raise ValueError(f"drop_rate: expected a fraction in [0, 1), got {self.drop_rate!r}")
        if not train or self.drop_rate == 0:
            return x
        keep = 1.0 - self.drop_rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, x.shape)
        return jnp.where(mask, x / keep, jnp.zeros_like(x))


class ResidualBlock(nn.Module):
    """y = shortcut(x) + F(x), F = two 3x3 convolutions, each after batch norm and ReLU
    (pre-activation form, so a block whose last convolution is zero is the identity).

    The shortcut is the identity, or a 1x1 convolution with `stride` where the block changes
    the number of channels or the resolution. x: [b, h, w, c] -> [b, h / stride, w / stride, features]
    """

    features: int
    stride: int = 1
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        def pre(h: jax.Array, name: str) -> jax.Array:
            return nn.relu(BatchNorm(name=f"{name}_bn")(h, train=train) if self.batch_norm else h)

        h = conv(self.features, 3, stride=self.stride, name="conv1")(pre(x, "pre1"))
        h = conv(self.features, 3, name="conv2")(pre(h, "pre2"))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = conv1x1(self.features, stride=self.stride, name="projection")(x)
        return shortcut + h


class InceptionBlock(nn.Module):
    """Parallel branches concatenated along the channels (GoogLeNet's Inception module):
    1x1 | 1x1 reduction -> 3x3 | 1x1 reduction -> 5x5 | 3x3 max pool (stride 1) -> 1x1.

    The 1x1 reductions make the larger convolutions cheap (see `nnlab.summary`).
    x: [b, h, w, c] -> [b, h, w, b1 + b3 + b5 + pool_proj]
    """

    b1: int
    b3_reduce: int
    b3: int
    b5_reduce: int
    b5: int
    pool_proj: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch1 = nn.relu(conv1x1(self.b1, name="b1")(x))
        branch3 = nn.relu(conv1x1(self.b3_reduce, name="b3_reduce")(x))
        branch3 = nn.relu(conv(self.b3, 3, name="b3")(branch3))
        branch5 = nn.relu(conv1x1(self.b5_reduce, name="b5_reduce")(x))
        branch5 = nn.relu(conv(self.b5, 5, name="b5")(branch5))
        pooled = MaxPool(3, 1, "SAME", name="pool")(x)
        branch_pool = nn.relu(conv1x1(self.pool_proj, name="pool_proj")(pooled))
        return jnp.concatenate([branch1, branch3, branch5, branch_pool], axis=-1)


class SqueezeExcite(nn.Module):
    """Reweights the channels: s = sigmoid(W2 relu(W1 gap(x))), y = x * s per channel,
    with a bottleneck of c / ratio units. x: [b, h, w, c] -> [b, h, w, c]"""

    ratio: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        s = nn.relu(nn.Dense(max(1, c // self.ratio), name="squeeze")(global_avg_pool(x)))
        s = nn.sigmoid(nn.Dense(c, name="excite")(s))
        return x * s[:, None, None, :]


def upsample(features: int, *, name: str | None = None) -> nn.ConvTranspose:
    """The lecture's learnable 2x2 "deconvolution": a transposed convolution with stride 2,
    each input pixel spreads into a 2x2 output patch. x: [b, h, w, c] -> [b, 2h, 2w, features]"""
    check_positive(features, name="features", integer=True)
    return nn.ConvTranspose(features, (2, 2), strides=(2, 2), padding="VALID", name=name)


class FunnelCNN(nn.Module):
    """The lecture's funnel: stages of convolutions (batch norm, ReLU) each followed by a
    reduction of the resolution, then fully connected layers with dropout to the classes.

    stages: per stage, the filters of its 3x3 convolutions (the very first is `first_kernel`
      x `first_kernel`); after each stage 2x2 max pooling, except the last stage, whose last
      convolution is unpadded and followed by 3x3 max pooling with stride 2.
    x: [batch, 28, 28, 1] -> logits [batch, classes]
    """

    stages: Sequence[Sequence[int]] = ((32,), (64,), (128,))
    first_kernel: int = 5
    hidden: Sequence[int] = (150,)
    classes: int = 10
    drop_rate: float = 0.5
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        h = x
        for s, filters in enumerate(self.stages):
            last_stage = s == len(self.stages) - 1
            for i, features in enumerate(filters):
                first, last = s == 0 and i == 0, last_stage and i == len(filters) - 1
                h = conv(
                    features,
                    self.first_kernel if first else 3,
                    padding="VALID" if last else "SAME",
                    use_bias=not self.batch_norm,
                    name=f"conv{s + 1}_{i + 1}",
                )(h)
                if self.batch_norm:
                    h = BatchNorm(name=f"bn{s + 1}_{i + 1}")(h, train=train)
                h = nn.relu(h)
            h = MaxPool(3, 2, name="pool_last")(h) if last_stage else MaxPool(2, name=f"pool{s + 1}")(h)
        h = h.reshape(h.shape[0], -1)
        for i, width in enumerate(self.hidden):
            h = Dropout(self.drop_rate, name=f"dropout{i + 1}")(h, train=train)
            h = nn.relu(nn.Dense(width, name=f"fc{i + 1}")(h))
        h = Dropout(self.drop_rate, name="dropout_out")(h, train=train)
        return nn.Dense(self.classes, name="logits")(h)
