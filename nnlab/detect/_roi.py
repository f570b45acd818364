"""Regions of interest to fixed-size maps: Fast R-CNN's RoI max pooling and Mask R-CNN's RoI align.

Both take one image's feature map [h, w, c] and boxes [r, 4] in input pixels (x1, y1, x2, y2),
scaled to the map by `spatial_scale` (1 / stride), and give [r, out_h, out_w, c]; `jax.vmap`
them over a batch. Both are separable (a box's grid is a product of rows and columns), so they are
written as two reductions or two small matrix products per box instead of gathers, which jit,
vmap and differentiate without data-dependent shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._checks import check_positive


def _check(features: jax.Array, boxes: jax.Array, output_size: tuple[int, int]) -> None:
    if features.ndim != 3:
        raise ValueError(f"features: expected one image's map [height, width, channels], got shape {features.shape}")
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes: expected [num_boxes, 4] (x1, y1, x2, y2), got shape {boxes.shape}")
    check_positive(output_size[0], name="output_size[0]", integer=True)
    check_positive(output_size[1], name="output_size[1]", integer=True)


def _bins(start: jax.Array, end: jax.Array, bins: int, length: int) -> jax.Array:
    """Which of `length` cells fall in each of `bins` bins of the cells [start, end] (inclusive, as in
    Fast R-CNN): [r, bins, length] bool."""
    size = jnp.maximum(end - start + 1, 1).astype(jnp.float32)[:, None] / bins
    b = jnp.arange(bins, dtype=jnp.float32)[None, :]
    lo = jnp.clip(jnp.floor(b * size).astype(jnp.int32) + start[:, None], 0, length)
    hi = jnp.clip(jnp.ceil((b + 1) * size).astype(jnp.int32) + start[:, None], 0, length)
    cells = jnp.arange(length)[None, None, :]
    return (cells >= lo[..., None]) & (cells < hi[..., None])


def roi_pool(features: jax.Array, boxes: jax.Array, output_size: tuple[int, int], *,
             spatial_scale: float) -> jax.Array:
    """RoI max pooling (Fast R-CNN): each box, rounded to whole cells of the map, is divided into an
    out_h x out_w grid of bins and each bin gives the maximum of its cells, per channel.

    The box covers cells round(x1 s) .. round(x2 s) inclusive (s = spatial_scale, rounding half
    up, at least one cell); bin i of n spans cells floor(i L / n) .. ceil((i + 1) L / n) - 1 of its
    L cells, clipped to the map. A bin with no cell gives 0 (the semantics of the Caffe layer and of
    torchvision.ops.roi_pool). features: [h, w, c], boxes: [r, 4] -> [r, out_h, out_w, c]
    """
    _check(features, boxes, output_size)
    h, w, _ = features.shape
    cells = jnp.floor(boxes * spatial_scale + 0.5).astype(jnp.int32)
    rows = _bins(cells[:, 1], cells[:, 3], output_size[0], h)  # [r, out_h, h]
    cols = _bins(cells[:, 0], cells[:, 2], output_size[1], w)  # [r, out_w, w]
    low = jnp.finfo(features.dtype).min
    # max over the columns of each column bin, then over the rows of each row bin
    by_col = jnp.max(jnp.where(cols[:, None, :, :, None], features[None, :, None, :, :], low), axis=3)  # [r, h, out_w, c]
    pooled = jnp.max(jnp.where(rows[:, :, :, None, None], by_col[:, None, :, :, :], low), axis=2)  # [r, out_h, out_w, c]
    empty = ~(jnp.any(rows, axis=-1)[:, :, None] & jnp.any(cols, axis=-1)[:, None, :])
    return jnp.where(empty[..., None], jnp.zeros((), features.dtype), pooled)


def _interpolation(start: jax.Array, size: jax.Array, bins: int, sampling: int, length: int) -> jax.Array:
    """Bilinear weights of bins * sampling points evenly inside each bin, over `length` cells:
    [r, bins * sampling, length]. A point outside [-1, length] weighs nothing; points in
    [-1, 0] and [length - 1, length] take the edge cell (torchvision's roi_align conventions)."""
    step = size[:, None] / bins
    k = jnp.arange(bins * sampling, dtype=jnp.float32)[None, :]
    point = start[:, None] + (jnp.floor(k / sampling) + (k % sampling + 0.5) / sampling) * step  # [r, n]
    inside = (point >= -1.0) & (point <= length)
    point = jnp.clip(point, 0.0, length - 1)
    low = jnp.floor(point)
    frac = point - low
    high = jnp.minimum(low + 1, length - 1)
    cells = jnp.arange(length, dtype=jnp.float32)[None, None, :]
    weights = (jnp.where(cells == low[..., None], 1.0 - frac[..., None], 0.0)
               + jnp.where(cells == high[..., None], frac[..., None], 0.0))
    return jnp.where(inside[..., None], weights, 0.0)


def roi_align(features: jax.Array, boxes: jax.Array, output_size: tuple[int, int], *, spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = True) -> jax.Array:
    """RoI align (Mask R-CNN): each box, in continuous map coordinates (no rounding), is divided into
    out_h x out_w bins; each bin is the mean of sampling_ratio x sampling_ratio bilinearly
    interpolated points spaced evenly inside it.

    aligned: shift the box by half a cell (x s - 0.5), so that a map cell's centre is at the centre
    of the pixels it summarises (torchvision's aligned=True); False keeps the box as x s and
    enlarges boxes smaller than one cell to one cell (the original definition).
    A fixed sampling_ratio keeps shapes static (torchvision's adaptive default is not).
    features: [h, w, c], boxes: [r, 4] -> [r, out_h, out_w, c]
    """
    _check(features, boxes, output_size)
    check_positive(sampling_ratio, name="sampling_ratio", integer=True)
    h, w, c = features.shape
    scaled = boxes * spatial_scale - (0.5 if aligned else 0.0)
    size = scaled[:, 2:] - scaled[:, :2]
    if not aligned:
        size = jnp.maximum(size, 1.0)
    out_h, out_w = output_size
    wy = _interpolation(scaled[:, 1], size[:, 1], out_h, sampling_ratio, h).astype(features.dtype)
    wx = _interpolation(scaled[:, 0], size[:, 0], out_w, sampling_ratio, w).astype(features.dtype)
    points = jnp.einsum("rah,hwc,rbw->rabc", wy, features, wx)  # [r, out_h * s, out_w * s, c]
    points = points.reshape(boxes.shape[0], out_h, sampling_ratio, out_w, sampling_ratio, c)
    return jnp.mean(points, axis=(2, 4))
