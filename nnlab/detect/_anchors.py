"""Anchor boxes: at every position of a feature map, one box per (scale, aspect ratio)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive


def anchor_grid(
    feature_shape: tuple[int, int], *, stride: int, scales: Sequence[float], ratios: Sequence[float]
) -> jax.Array:
    """All anchors of a feature map of `feature_shape` = (h, w) whose cells are `stride` pixels apart.

    Every cell (row i, column j) gets A = len(scales) * len(ratios) anchors centred on the cell's
    centre ((j + 0.5) stride, (i + 0.5) stride) in pixels; the anchor of scale s and ratio r
    (height / width) has width s / sqrt(r) and height s sqrt(r), so its area is s^2.
    Returns [h * w * A, 4] (x1, y1, x2, y2), anchor a of cell (i, j) at row (i * w + j) * A + a with
    a = scale index * len(ratios) + ratio index: the order of a convolution's output
    [batch, h, w, A] reshaped to [batch, h * w * A].
    """
    h, w = feature_shape
    check_positive(h, name="feature_shape[0]", integer=True)
    check_positive(w, name="feature_shape[1]", integer=True)
    check_positive(stride, name="stride", integer=True)
    if not scales or not ratios:
        raise ValueError(f"scales, ratios: expected non-empty sequences, got {scales!r}, {ratios!r}")
    for name, values in (("scales", scales), ("ratios", ratios)):
        for v in values:
            check_positive(v, name=name)
    s = np.asarray(scales, np.float64)[:, None]
    r = np.asarray(ratios, np.float64)[None, :]
    half_w = (s / np.sqrt(r) / 2).reshape(-1)
    half_h = (s * np.sqrt(r) / 2).reshape(-1)
    cy, cx = np.meshgrid((np.arange(h) + 0.5) * stride, (np.arange(w) + 0.5) * stride, indexing="ij")
    cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
    return jnp.asarray(boxes.reshape(-1, 4), jnp.float32)
