"""Matching boxes to ground truth and drawing balanced training samples, with static shapes.

Ground truth comes padded: gt_boxes [k, 4] with gt_valid [k] bool; padded slots never match.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._boxes import iou_matrix


def per_image_keys(key: jax.Array, n: int) -> jax.Array:
    """Key i = fold_in(key, i) for image i of a batch of n: image i's samples do not depend on n."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))


def match_boxes(boxes: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each box's best ground-truth box by IoU.

    boxes: [n, 4], gt_boxes: [k, 4], gt_valid: [k] -> (index [n] int32 of the best valid gt box,
    its IoU [n] (-1 where no gt box is valid), the masked IoU matrix [n, k] (-1 in padded columns)).
    """
    iou = jnp.where(gt_valid[None, :], iou_matrix(boxes, gt_boxes), -1.0)
    return jnp.argmax(iou, axis=1).astype(jnp.int32), jnp.max(iou, axis=1), iou


def label_anchors(
    anchors: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array, *, positive_iou: float, negative_iou: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The region proposal network's anchor labels (Faster R-CNN): an anchor is positive if it
    overlaps some gt box by IoU >= positive_iou or is (one of) the best anchor(s) of a gt box, and
    negative if its best IoU is < negative_iou and it is not positive; the rest are ignored.
    A positive anchor regresses towards the gt box it overlaps most.

    anchors: [n, 4] -> (positive [n] bool, negative [n] bool, matched gt index [n] int32).
    """
    index, best, iou = match_boxes(anchors, gt_boxes, gt_valid)
    best_per_gt = jnp.max(iou, axis=0)  # [k]
    is_best = (iou == best_per_gt[None, :]) & gt_valid[None, :] & (best_per_gt[None, :] > 0)
    positive = (best >= positive_iou) | jnp.any(is_best, axis=1)
    negative = (best < negative_iou) & ~positive  # best is -1 when the image has no gt box
    return positive, negative, index


def sample_balanced(
    key: jax.Array, positive: jax.Array, negative: jax.Array, *, num_samples: int, positive_fraction: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A random sample of `num_samples` entries with at most num_samples * positive_fraction
    positives, filled up with negatives (Faster R-CNN's minibatch of anchors or RoIs).

    positive, negative: [n] bool (disjoint) -> (indices [num_samples] int32, is_positive
    [num_samples] bool, valid [num_samples] bool). The sample lists its positives first, so the
    positives are always among the first floor(num_samples * positive_fraction) entries; slots
    with nothing left to draw are not valid.
    """
    n = positive.shape[0]
    if num_samples > n:
        raise ValueError(f"num_samples: expected at most the {n} candidates, got {num_samples}")
    max_positive = int(num_samples * positive_fraction)
    u = jax.random.uniform(key, (n,))
    positive_rank = jnp.argsort(jnp.argsort(jnp.where(positive, u, 2.0)))
    kept_positive = positive & (positive_rank < max_positive)
    # order: kept positives, then negatives, then the rest, each group in random order
    order = jnp.where(kept_positive, 0.0, jnp.where(negative, 1.0, 2.0)) + u
    indices = jnp.argsort(order)[:num_samples].astype(jnp.int32)
    return indices, kept_positive[indices], order[indices] < 2.0


def sample_rois(
    key: jax.Array,
    rois: jax.Array,
    rois_valid: jax.Array,
    gt_boxes: jax.Array,
    gt_labels: jax.Array,
    gt_valid: jax.Array,
    *,
    num_samples: int,
    positive_fraction: float,
    positive_iou: float = 0.5,
    negative_iou: float = 0.5,
) -> dict[str, jax.Array]:
    """Fast R-CNN's minibatch of regions for the classification head: regions overlapping a gt box
    by IoU >= positive_iou are that box's class (label + 1), regions below negative_iou are
    background (0); at most num_samples * positive_fraction positives, positives first.

    rois: [p, 4] (usually proposals with the gt boxes appended), rois_valid: [p] ->
    dict with boxes [num_samples, 4], classes [num_samples] int32 (0 = background),
    gt_index [num_samples] int32 (the matched gt box), valid [num_samples] bool.
    """
    index, best, _ = match_boxes(rois, gt_boxes, gt_valid)
    positive = rois_valid & (best >= positive_iou)
    negative = rois_valid & (best < negative_iou)
    picked, is_positive, valid = sample_balanced(
        key, positive, negative, num_samples=num_samples, positive_fraction=positive_fraction
    )
    gt_index = index[picked]
    classes = jnp.where(is_positive & valid, gt_labels[gt_index] + 1, 0).astype(jnp.int32)
    return {"boxes": rois[picked], "classes": classes, "gt_index": gt_index, "valid": valid}
