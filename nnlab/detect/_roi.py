"""Regions of interest to fixed-size maps: Fast R-CNN's RoI max pooling and Mask R-CNN's RoI align.

Both take one image's feature map [h, w, c] and boxes [r, 4] in input pixels (x1, y1, x2, y2),
scaled to the map by `spatial_scale` (1 / stride), and give [r, out_h, out_w, c]; `jax.vmap`
them over a batch. Both are compiled (output_size, spatial_scale and the options are static, so
output_size must be a tuple); inside another jit they are inlined. Neither has a data-dependent
shape, so both jit, vmap and differentiate:
RoI pooling looks each bin up in a table of rectangle maxima, RoI align is separable (a box's
sampling grid is a product of rows and columns) and so two small matrix products per box.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .._checks import check_positive

_MAX_POOL_CELLS = 1024


def _check(features: jax.Array, boxes: jax.Array, output_size: tuple[int, int]) -> None:
    if features.ndim != 3:
        raise ValueError(f"features: expected one image's map [height, width, channels], got shape {features.shape}")
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes: expected [num_boxes, 4] (x1, y1, x2, y2), got shape {boxes.shape}")
    check_positive(output_size[0], name="output_size[0]", integer=True)
    check_positive(output_size[1], name="output_size[1]", integer=True)


def _bin_ranges(start: jax.Array, end: jax.Array, bins: int, length: int) -> tuple[jax.Array, jax.Array]:
    """The cells [lo, hi) of each of `bins` bins of the cells start .. end (inclusive, as in
    Fast R-CNN), clipped to [0, length): start, end: [r] -> lo, hi: [r, bins] int32."""
    size = jnp.maximum(end - start + 1, 1).astype(jnp.float32)[:, None] / bins
    b = jnp.arange(bins, dtype=jnp.float32)[None, :]
    lo = jnp.clip(jnp.floor(b * size).astype(jnp.int32) + start[:, None], 0, length)
    hi = jnp.clip(jnp.ceil((b + 1) * size).astype(jnp.int32) + start[:, None], 0, length)
    return lo, hi


def _run_argmax(values: jax.Array, index: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """The maximum, and `index` where it is, of every run of cells along `axis`:
    [..., n, ...] -> [..., n (first cell), n (length - 1), ...]; runs past the end see only the
    cells inside. Ties keep the earlier cell."""
    n = values.shape[axis]
    low = jnp.finfo(values.dtype).min
    v, ix = jnp.moveaxis(values, axis, 0), jnp.moveaxis(index, axis, 0)
    best_v, best_i = v, ix
    out_v, out_i = [v], [ix]
    for length in range(1, n):
        next_v = jnp.concatenate([v[length:], jnp.full((length, *v.shape[1:]), low, v.dtype)], axis=0)
        next_i = jnp.concatenate([ix[length:], jnp.zeros((length, *ix.shape[1:]), ix.dtype)], axis=0)
        take = next_v > best_v
        best_v, best_i = jnp.where(take, next_v, best_v), jnp.where(take, next_i, best_i)
        out_v.append(best_v)
        out_i.append(best_i)

    def stack(parts: list[jax.Array]) -> jax.Array:
        return jnp.moveaxis(jnp.stack(parts, axis=1), (0, 1), (axis, axis + 1))

    return stack(out_v), stack(out_i)


@partial(jax.jit, static_argnames=("output_size", "spatial_scale"))
def roi_pool(features: jax.Array, boxes: jax.Array, output_size: tuple[int, int], *, spatial_scale: float) -> jax.Array:
    """RoI max pooling (Fast R-CNN): each box, rounded to whole cells of the map, is divided into an
    out_h x out_w grid of bins and each bin gives the maximum of its cells, per channel.

    The box covers cells round(x1 s) .. round(x2 s) inclusive (s = spatial_scale, rounding half
    up, at least one cell); bin i of n spans cells floor(i L / n) .. ceil((i + 1) L / n) - 1 of its
    L cells, clipped to the map. A bin with no cell gives 0 (the semantics of the Caffe layer and of
    torchvision.ops.roi_pool); the gradient goes to each bin's maximum.
    A table of where the maximum of every rectangle of cells is (h^2 w^2 c entries) makes each bin
    one lookup, fast forwards and backwards for the small maps of a detection head (8 x 8 at stride
    16 on 128 x 128 images); it is not meant for maps much larger than 16 x 16.
    features: [h, w, c], boxes: [r, 4] -> [r, out_h, out_w, c]
    """
    _check(features, boxes, output_size)
    h, w, c = features.shape
    if h * w > _MAX_POOL_CELLS:
        raise ValueError(
            f"features: roi_pool's table grows as h^2 w^2 c, so it takes maps of at most "
            f"{_MAX_POOL_CELLS} cells (e.g. 32 x 32), got {h} x {w}; use roi_align for larger maps"
        )
    cells = jnp.floor(boxes * spatial_scale + 0.5).astype(jnp.int32)
    y_lo, y_hi = _bin_ranges(cells[:, 1], cells[:, 3], output_size[0], h)  # [r, out_h]
    x_lo, x_hi = _bin_ranges(cells[:, 0], cells[:, 2], output_size[1], w)  # [r, out_w]
    cell = jnp.broadcast_to(jnp.arange(h * w, dtype=jnp.int32).reshape(h, w, 1), (h, w, c))
    table, where = _run_argmax(jax.lax.stop_gradient(features), cell, 0)  # [h, h, w, c]
    _, where = _run_argmax(table, where, 2)  # [h, h, w, w, c]
    y_len, x_len = jnp.clip(y_hi - y_lo - 1, 0, h - 1), jnp.clip(x_hi - x_lo - 1, 0, w - 1)
    y0, x0 = jnp.clip(y_lo, 0, h - 1), jnp.clip(x_lo, 0, w - 1)
    argmax = where[y0[:, :, None], y_len[:, :, None], x0[:, None, :], x_len[:, None, :]]  # [r, out_h, out_w, c]
    flat = features.reshape(1, h * w, c)
    pooled = jnp.take_along_axis(flat, argmax.reshape(1, -1, c), axis=1).reshape(argmax.shape)
    empty = ~((y_hi > y_lo)[:, :, None] & (x_hi > x_lo)[:, None, :])
    return jnp.where(empty[..., None], jnp.zeros((), features.dtype), pooled)


def linear_weights(points: jax.Array, length: int) -> jax.Array:
    """Linear interpolation weights of `points` (cell coordinates, clamped to [0, length - 1]) over
    `length` cells: [..., n] -> [..., n, length], at most two non-zero weights per point, summing to 1."""
    points = jnp.clip(points, 0.0, length - 1)
    low = jnp.floor(points)
    frac = points - low
    high = jnp.minimum(low + 1, length - 1)
    cells = jnp.arange(length, dtype=jnp.float32).reshape((1,) * points.ndim + (length,))
    return jnp.where(cells == low[..., None], 1.0 - frac[..., None], 0.0) + jnp.where(
        cells == high[..., None], frac[..., None], 0.0
    )


def _interpolation(start: jax.Array, size: jax.Array, bins: int, sampling: int, length: int) -> jax.Array:
    """Bilinear weights of bins * sampling points evenly inside each bin, over `length` cells:
    [r, bins * sampling, length]. A point outside [-1, length] weighs nothing; points in
    [-1, 0] and [length - 1, length] take the edge cell (torchvision's roi_align conventions)."""
    step = size[:, None] / bins
    k = jnp.arange(bins * sampling, dtype=jnp.float32)[None, :]
    point = start[:, None] + (jnp.floor(k / sampling) + (k % sampling + 0.5) / sampling) * step  # [r, n]
    inside = (point >= -1.0) & (point <= length)
    return jnp.where(inside[..., None], linear_weights(point, length), 0.0)


@partial(jax.jit, static_argnames=("output_size", "spatial_scale", "sampling_ratio", "aligned"))
def roi_align(
    features: jax.Array,
    boxes: jax.Array,
    output_size: tuple[int, int],
    *,
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> jax.Array:
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
