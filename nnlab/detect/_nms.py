"""Non-maximum suppression with a fixed number of outputs, so it jits and vmaps; compiled, with
iou_threshold and max_outputs static."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .._checks import check_positive
from ._boxes import box_area


def _iou_row(box: jax.Array, boxes: jax.Array) -> jax.Array:
    lo = jnp.maximum(box[None, :2], boxes[:, :2])
    hi = jnp.minimum(box[None, 2:], boxes[:, 2:])
    wh = jnp.maximum(hi - lo, 0.0)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(box) + box_area(boxes) - inter
    return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


@partial(jax.jit, static_argnames=("iou_threshold", "max_outputs"))
def nms(
    boxes: jax.Array, scores: jax.Array, *, iou_threshold: float, max_outputs: int, valid: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Greedy non-maximum suppression: repeatedly keep the highest-scoring box left and drop every
    box that overlaps it by IoU > iou_threshold; stop after `max_outputs` boxes or when none is left.

    boxes: [n, 4], scores: [n], valid: [n] bool (None: all) -> (indices [max_outputs] int32 into
    `boxes` in decreasing score order, valid [max_outputs] bool). Slots past the last kept box hold
    index 0 and valid False. Equal scores keep the lower index first. Each of the `max_outputs`
    rounds costs O(n), with no n x n matrix.
    """
    check_positive(max_outputs, name="max_outputs", integer=True)
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"boxes, scores: expected shapes [n, 4] and [n], got {boxes.shape} and {scores.shape}")
    live = jnp.isfinite(scores) if valid is None else valid & jnp.isfinite(scores)
    current = jnp.where(live, scores, -jnp.inf)

    def body(i: jax.Array, carry: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        current, indices, kept = carry
        j = jnp.argmax(current)
        ok = current[j] > -jnp.inf
        indices = indices.at[i].set(jnp.where(ok, j, 0).astype(jnp.int32))
        kept = kept.at[i].set(ok)
        drop = (_iou_row(boxes[j], boxes) > iou_threshold) | (jnp.arange(boxes.shape[0]) == j)
        return jnp.where(drop & ok, -jnp.inf, current), indices, kept

    init = (current, jnp.zeros((max_outputs,), jnp.int32), jnp.zeros((max_outputs,), bool))
    _, indices, kept = jax.lax.fori_loop(0, max_outputs, body, init)
    return indices, kept


@partial(jax.jit, static_argnames=("iou_threshold", "max_outputs"))
def batched_nms(
    boxes: jax.Array,
    scores: jax.Array,
    classes: jax.Array,
    *,
    iou_threshold: float,
    max_outputs: int,
    valid: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """`nms` within each class: boxes of different classes never suppress each other.

    Shifts each class's boxes by class * (largest coordinate + 1) along both axes, so boxes of
    different classes cannot overlap, then runs one `nms`. classes: [n] int; the rest as `nms`.
    """
    live = jnp.ones(scores.shape, bool) if valid is None else valid
    extent = jnp.max(jnp.where(live[:, None], jnp.abs(boxes), 0.0)) + 1.0
    shifted = boxes + (classes.astype(boxes.dtype) * extent)[:, None]
    return nms(shifted, scores, iou_threshold=iou_threshold, max_outputs=max_outputs, valid=valid)
