"""From a mask predicted on a box's m x m grid to a mask of the whole image."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ._roi import linear_weights


def _weights(start: jax.Array, size: jax.Array, cells: int, length: int) -> jax.Array:
    """Bilinear weights [d, length, cells] that sample a box's `cells`-cell grid at the centres of
    the image's `length` pixels (edge cells repeat), zero for pixels whose centre is outside the box."""
    centre = jnp.arange(length, dtype=jnp.float32)[None, :] + 0.5  # [1, length]
    u = (centre - start[:, None]) / jnp.maximum(size[:, None], 1e-6) * cells - 0.5  # [d, length]
    inside = (centre >= start[:, None]) & (centre < start[:, None] + size[:, None])
    return jnp.where(inside[..., None], linear_weights(u, cells), 0.0)


@partial(jax.jit, static_argnames=("height", "width", "threshold"))
def paste_masks(masks: jax.Array, boxes: jax.Array, height: int, width: int, *, threshold: float = 0.5) -> jax.Array:
    """Each box's mask probabilities, resampled bilinearly onto the image and thresholded.

    masks: [..., d, m, m] on the boxes' grids, boxes: [..., d, 4] in pixels ->
    [..., d, height, width] bool (pixel centres outside a box are False).
    """
    if masks.shape[:-2] != boxes.shape[:-1] or boxes.shape[-1] != 4:
        raise ValueError(
            f"masks, boxes: expected shapes [..., d, m, m] and [..., d, 4], got {masks.shape} and {boxes.shape}"
        )
    lead = masks.shape[:-2]
    m_h, m_w = masks.shape[-2:]
    masks = masks.reshape(-1, m_h, m_w).astype(jnp.float32)
    boxes = boxes.reshape(-1, 4).astype(jnp.float32)
    wy = _weights(boxes[:, 1], boxes[:, 3] - boxes[:, 1], m_h, height)  # [d, height, m_h]
    wx = _weights(boxes[:, 0], boxes[:, 2] - boxes[:, 0], m_w, width)  # [d, width, m_w]
    image = jnp.einsum("dya,dab,dxb->dyx", wy, masks, wx)
    return (image >= threshold).reshape(*lead, height, width)
