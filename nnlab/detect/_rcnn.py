"""R-CNN (Girshick et al. 2014): region proposals from selective search, each warped to a fixed
size and passed through a plain CNN; the CNN's features scored by one linear SVM per class;
non-maximum suppression per class at IoU 0.3. Slow by design: the CNN runs once per proposal.

The CNN is trained as a classifier of warped proposals (num_classes + 1 outputs, 0 =
background), then the SVMs on its features with the hinge loss. Both objectives are pure
functions with static shapes; the proposals come precomputed in the targets (`propose_regions`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from .._checks import check_positive
from ..nn import Model
from ._backbone import ConvBackbone
from ._detector import Detections, Variables, compiled_init, model_objective
from ._nms import batched_nms
from ._roi import roi_align
from ._sampling import match_boxes, per_image_keys, sample_rois


@dataclass(frozen=True)
class RCNNConfig:
    """R-CNN's hyperparameters.

    Crops: each box grown by `context` of its width and height on every side, warped to
    crop_size x crop_size (bilinear, 2 x 2 samples per output pixel).
    CNN: `backbone` stages (3x3 convolution, batch norm, ReLU, 2x2 max pooling), one dense layer
    of `feature_width` units (the features the SVMs see), logits over num_classes + 1.
    Fine-tuning: `roi_samples` regions per image from the proposals and gt boxes, at most
    roi_positive_fraction of them with IoU >= roi_positive_iou (the rest background).
    SVMs: positives are the gt boxes of a class, negatives the regions overlapping no gt box of
    that class by IoU >= svm_negative_iou; hinge loss + svm_l2 / 2 * |W|^2.
    Detection: scores above score_threshold, NMS per class at nms_iou, max_detections per image.
    """

    num_classes: int = 10
    crop_size: int = 32
    context: float = 0.1
    backbone: Sequence[int] = (16, 32, 64)
    feature_width: int = 128
    roi_samples: int = 32
    roi_positive_fraction: float = 0.25
    roi_positive_iou: float = 0.5
    svm_negative_iou: float = 0.3
    svm_l2: float = 1e-3
    score_threshold: float = -1.0
    nms_iou: float = 0.3
    max_detections: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "backbone", tuple(self.backbone))  # hashable, whatever sequence was given
        for name in ("num_classes", "crop_size", "feature_width", "roi_samples", "max_detections"):
            check_positive(getattr(self, name), name=name, integer=True)
        if not self.backbone:
            raise ValueError(f"backbone: expected at least one stage width, got {self.backbone!r}")
        if self.crop_size % 2 ** len(self.backbone):
            raise ValueError(
                f"crop_size: expected a multiple of 2^{len(self.backbone)} (one halving per backbone "
                f"stage), got {self.crop_size}"
            )
        if self.context < 0:
            raise ValueError(f"context: expected a fraction >= 0, got {self.context!r}")


class RCNNClassifier(nn.Module):
    """The CNN over warped proposals: crops [n, s, s, 1] -> (logits [n, num_classes + 1], features [n, D])."""

    config: RCNNConfig

    @nn.compact
    def __call__(self, crops: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        c = self.config
        h = ConvBackbone(tuple(c.backbone), name="backbone")(crops, train=train)[-1]
        features = nn.relu(nn.Dense(c.feature_width, name="features")(h.reshape(h.shape[0], -1)))
        return nn.Dense(c.num_classes + 1, name="logits")(features), features


class LinearSVMs(nn.Module):
    """One linear SVM per class over the CNN's features: features [n, D] -> scores [n, num_classes]."""

    num_classes: int

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="svm")(features)


def warp_crops(image: jax.Array, boxes: jax.Array, size: int, *, context: float = 0.0) -> jax.Array:
    """Each box of one image [h, w, c], grown by `context` x its size on every side, warped to
    size x size by bilinear sampling (the mean of 2 x 2 samples per output pixel), whatever its
    aspect ratio: boxes [r, 4] -> crops [r, size, size, c]."""
    grow = context * (boxes[:, 2:] - boxes[:, :2])
    grown = jnp.concatenate([boxes[:, :2] - grow, boxes[:, 2:] + grow], axis=1)
    return roi_align(image, grown, (size, size), spatial_scale=1.0, sampling_ratio=2)


def svm_targets(
    boxes: jax.Array,
    gt_boxes: jax.Array,
    gt_labels: jax.Array,
    gt_valid: jax.Array,
    *,
    num_classes: int,
    negative_iou: float,
    is_gt: jax.Array,
) -> jax.Array:
    """Per region and class: +1 for a gt box of that class, -1 for a region overlapping no gt box of
    that class by IoU >= negative_iou, 0 (ignored) otherwise (R-CNN's SVM training set).

    boxes [n, 4] with is_gt [n] bool marking the entries that are gt boxes themselves ->
    targets [n, num_classes] float32 in {-1, 0, +1}.
    """
    index, _, iou = match_boxes(boxes, gt_boxes, gt_valid)  # iou [n, k], -1 in padded columns
    of_class = gt_labels[None, :, None] == jnp.arange(num_classes)[None, None, :]  # [1, k, C]
    best = jnp.max(jnp.where(of_class, iou[:, :, None], -1.0), axis=1)  # [n, C]
    positive = is_gt[:, None] & (gt_labels[index][:, None] == jnp.arange(num_classes)[None, :])
    return jnp.where(positive, 1.0, jnp.where(best < negative_iou, -1.0, 0.0))


class RCNN(NamedTuple):
    """R-CNN as pure functions; variables of the CNN and of the SVMs are separate pytrees.

    init(key, images) -> CNN variables
    objective(variables, images, targets, *, train, key) -> (per_image_loss [b], updates): the
      CNN's cross-entropy on sampled warped regions; targets as `Scenes.targets()` plus
      proposals [b, P, 4] and proposals_valid [b, P] (from `propose_regions`).
    svm_data(variables, images, targets) -> (features [b, K + P, D], svm targets [b, K + P, C],
      valid [b, K + P]): the gt boxes and proposals of each image, with `svm_targets`.
    svm_init(key, features [n, D]) -> SVM variables
    svm_objective(svm_variables, features [n, D], targets [n, C], *, train, key) ->
      (per_sample_loss [n], {}): sum over classes of the hinge loss max(0, 1 - t s) where t != 0,
      plus svm_l2 / 2 * |W|^2 (so the mean over samples is the SVM primal).
    detect(variables, svm_variables, images, proposals, proposals_valid) -> Detections
    apply_cnn(variables, crops, train) -> (class logits [n, num_classes + 1], updates)
    """

    init: Callable
    objective: Callable
    svm_data: Callable
    svm_init: Callable
    svm_objective: Callable
    detect: Callable
    apply_cnn: Callable
    config: RCNNConfig
    name: str = "rcnn"

    def as_model(self) -> Model:
        """The CNN stage as an nnlab `Model`, for `nnlab.fit` on a `Dataset` whose y is the targets
        pytree with proposals: apply(variables, crops [n, crop, crop, c], *, train, key) ->
        (class logits [n, num_classes + 1], updates) classifies warped regions; objective as
        `objective`, with no error rate, and samples from the fixed key(0) when key is None."""
        cnn_apply = self.apply_cnn

        def apply(
            variables: Variables, crops: jax.Array, *, train: bool, key: jax.Array | None = None
        ) -> tuple[jax.Array, Variables]:
            del key
            return cnn_apply(variables, crops, train)

        return Model(self.init, apply, None, self.name, model_objective(self.objective))


def rcnn(config: RCNNConfig | None = None, **overrides: Any) -> RCNN:
    """R-CNN's functions for `config` (see `RCNN`)."""
    c = dataclasses.replace(config or RCNNConfig(), **overrides)
    cnn = RCNNClassifier(c)
    svms = LinearSVMs(c.num_classes)
    warp = jax.vmap(partial(warp_crops, size=c.crop_size, context=c.context))

    def init(key: jax.Array, images: jax.Array) -> Variables:
        crops = jnp.zeros((1, c.crop_size, c.crop_size, images.shape[-1]), images.dtype)
        return dict(compiled_init(partial(cnn.init, train=False), key, crops))

    def run_cnn(variables: Variables, crops: jax.Array, train: bool) -> tuple[jax.Array, jax.Array, Variables]:
        mutable = [k for k in variables if k != "params"] if train else False
        if mutable:
            (logits, features), updates = cnn.apply(variables, crops, train=True, mutable=mutable)
            return logits, features, dict(updates)
        return (*cnn.apply(variables, crops, train=train), {})

    def objective(
        variables: Variables, images: jax.Array, targets: dict, *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, Variables]:
        b = images.shape[0]
        gt_boxes, gt_valid = targets["boxes"].astype(jnp.float32), targets["valid"].astype(bool)
        rois = jnp.concatenate([targets["proposals"].astype(jnp.float32), gt_boxes], axis=1)
        rois_valid = jnp.concatenate([targets["proposals_valid"].astype(bool), gt_valid], axis=1)
        sample = partial(
            sample_rois,
            num_samples=c.roi_samples,
            positive_fraction=c.roi_positive_fraction,
            positive_iou=c.roi_positive_iou,
            negative_iou=c.roi_positive_iou,
        )
        s = jax.vmap(sample)(
            per_image_keys(key, b), rois, rois_valid, gt_boxes, targets["labels"].astype(jnp.int32), gt_valid
        )
        crops = warp(images, s["boxes"])
        logits, _, updates = run_cnn(variables, crops.reshape(-1, *crops.shape[2:]), train)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits.reshape(b, c.roi_samples, -1), s["classes"])
        loss = jnp.sum(jnp.where(s["valid"], ce, 0.0), axis=1) / jnp.maximum(jnp.sum(s["valid"], axis=1), 1).astype(
            jnp.float32
        )
        return loss, updates

    def features_of(variables: Variables, images: jax.Array, boxes: jax.Array) -> jax.Array:
        crops = warp(images, boxes)
        _, features, _ = run_cnn(variables, crops.reshape(-1, *crops.shape[2:]), False)
        return features.reshape(*boxes.shape[:2], -1)

    def svm_data(variables: Variables, images: jax.Array, targets: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
        gt_boxes, gt_valid = targets["boxes"].astype(jnp.float32), targets["valid"].astype(bool)
        boxes = jnp.concatenate([gt_boxes, targets["proposals"].astype(jnp.float32)], axis=1)
        valid = jnp.concatenate([gt_valid, targets["proposals_valid"].astype(bool)], axis=1)
        is_gt = jnp.arange(boxes.shape[1]) < gt_boxes.shape[1]
        label = partial(svm_targets, num_classes=c.num_classes, negative_iou=c.svm_negative_iou, is_gt=is_gt)
        t = jax.vmap(label)(boxes, gt_boxes, targets["labels"].astype(jnp.int32), gt_valid)
        return features_of(variables, images, boxes), t, valid

    def svm_init(key: jax.Array, features: jax.Array) -> Variables:
        return dict(svms.init({"params": key}, features))

    def svm_objective(
        svm_variables: Variables, features: jax.Array, targets: jax.Array, *, train: bool, key: jax.Array | None = None
    ) -> tuple[jax.Array, Variables]:
        del train, key
        scores = cast(jax.Array, svms.apply(svm_variables, features))  # no mutable collections: the output alone
        hinge = jnp.sum(jnp.where(targets != 0, jnp.maximum(0.0, 1.0 - targets * scores), 0.0), axis=1)
        w = svm_variables["params"]["svm"]["kernel"]
        return hinge + 0.5 * c.svm_l2 * jnp.sum(w * w), {}

    def detect(
        variables: Variables,
        svm_variables: Variables,
        images: jax.Array,
        proposals: jax.Array,
        proposals_valid: jax.Array,
    ) -> Detections:
        features = features_of(variables, images, proposals.astype(jnp.float32))
        scores = cast(jax.Array, svms.apply(svm_variables, features))  # [b, P, C]

        def per_image(
            boxes: jax.Array, valid: jax.Array, scores: jax.Array
        ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
            p = boxes.shape[0]
            labels = jnp.broadcast_to(jnp.arange(c.num_classes, dtype=jnp.int32)[None, :], (p, c.num_classes))
            flat_boxes = jnp.broadcast_to(boxes[:, None, :], (p, c.num_classes, 4)).reshape(-1, 4)
            ok = (valid[:, None] & (scores > c.score_threshold)).reshape(-1)
            keep, kept = batched_nms(
                flat_boxes,
                scores.reshape(-1),
                labels.reshape(-1),
                iou_threshold=c.nms_iou,
                max_outputs=c.max_detections,
                valid=ok,
            )
            return flat_boxes[keep], jnp.where(kept, scores.reshape(-1)[keep], 0.0), labels.reshape(-1)[keep], kept

        return Detections(*jax.vmap(per_image)(proposals.astype(jnp.float32), proposals_valid.astype(bool), scores))

    def apply_cnn(variables: Variables, crops: jax.Array, train: bool) -> tuple[jax.Array, Variables]:
        logits, _, updates = run_cnn(variables, crops, train)
        return logits, updates

    return RCNN(init, objective, svm_data, svm_init, svm_objective, detect, apply_cnn, c)
