"""Detection: box operations, anchors, non-maximum suppression, RoI pooling, proposals, the
two-stage detectors (R-CNN, Faster R-CNN, Mask R-CNN) and the COCO evaluation bridge."""

from ._anchors import anchor_grid
from ._boxes import box_area, clip_boxes, decode_boxes, encode_boxes, iou_matrix
from ._nms import batched_nms, nms
from ._roi import roi_align, roi_pool

__all__ = [
    "anchor_grid", "batched_nms", "box_area", "clip_boxes", "decode_boxes", "encode_boxes", "iou_matrix", "nms",
    "roi_align", "roi_pool",
]
