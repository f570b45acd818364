"""Boxes as arrays [..., 4] = (x1, y1, x2, y2) in pixels (x2 - x1 is the width): areas, the
intersection-over-union matrix and the (dx, dy, dw, dh) box coder of R-CNN.

Pure jnp functions with static shapes: they jit, vmap and differentiate.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Largest dw, dh a decoder turns into a size: exp(4.135) = 1000 / 16, as in Detectron and torchvision,
# so an untrained network's large outputs cannot overflow.
MAX_LOG_SCALE = float(np.log(1000.0 / 16))


def box_area(boxes: jax.Array) -> jax.Array:
    """(x2 - x1) * (y2 - y1), zero for empty boxes: [..., 4] -> [...]."""
    w = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    h = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return w * h


def iou_matrix(a: jax.Array, b: jax.Array) -> jax.Array:
    """Intersection over union of every box of `a` with every box of `b`: a: [n, 4], b: [m, 4] -> [n, m].

    IoU = |A and B| / |A or B|, in [0, 1]; 0 where the union is empty.
    """
    lo = jnp.maximum(a[:, None, :2], b[None, :, :2])
    hi = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = jnp.maximum(hi - lo, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def _centre_size(boxes: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(boxes: jax.Array, anchors: jax.Array, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> jax.Array:
    """Regression targets of `boxes` relative to `anchors` (both [..., 4]) -> deltas [..., 4]:

    dx = wx (x - xa) / wa, dy = wy (y - ya) / ha, dw = ww log(w / wa), dh = wh log(h / ha)

    with (x, y) the centre and (w, h) the size. Sizes are floored at 1e-6 pixels so that a padded,
    empty box gives finite (if meaningless) targets instead of NaN gradients.
    """
    wx, wy, ww, wh = weights
    x, y, w, h = _centre_size(boxes)
    xa, ya, wa, ha = _centre_size(anchors)
    w, h, wa, ha = (jnp.maximum(v, 1e-6) for v in (w, h, wa, ha))
    return jnp.stack([wx * (x - xa) / wa, wy * (y - ya) / ha, ww * jnp.log(w / wa), wh * jnp.log(h / ha)], axis=-1)


def decode_boxes(deltas: jax.Array, anchors: jax.Array, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> jax.Array:
    """The inverse of `encode_boxes`: deltas [..., 4] against anchors [..., 4] -> boxes [..., 4].

    dw / ww and dh / wh are clipped at log(1000 / 16) before exp.
    """
    wx, wy, ww, wh = weights
    xa, ya, wa, ha = _centre_size(anchors)
    x = xa + deltas[..., 0] / wx * wa
    y = ya + deltas[..., 1] / wy * ha
    w = wa * jnp.exp(jnp.minimum(deltas[..., 2] / ww, MAX_LOG_SCALE))
    h = ha * jnp.exp(jnp.minimum(deltas[..., 3] / wh, MAX_LOG_SCALE))
    return jnp.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], axis=-1)


def clip_boxes(boxes: jax.Array, height: float, width: float) -> jax.Array:
    """Boxes [..., 4] clipped to the image [0, width] x [0, height]."""
    x = jnp.clip(boxes[..., 0::2], 0.0, width)
    y = jnp.clip(boxes[..., 1::2], 0.0, height)
    return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)
