"""Detection: box operations, anchors, non-maximum suppression, RoI pooling, proposals, the
two-stage detectors (R-CNN, Faster R-CNN, Mask R-CNN) and the COCO evaluation bridge."""

from ._anchors import anchor_grid
from ._backbone import ConvBackbone
from ._boxes import box_area, clip_boxes, decode_boxes, encode_boxes, iou_matrix
from ._coco import coco_evaluate, coco_ground_truth, coco_results
from ._detector import Detections, Detector
from ._draw import draw_detections
from ._faster_rcnn import FasterRCNN, FasterRCNNConfig, faster_rcnn, mask_rcnn
from ._masks import paste_masks
from ._nms import batched_nms, nms
from ._proposals import propose_regions, selective_search
from ._rcnn import RCNN, LinearSVMs, RCNNClassifier, RCNNConfig, rcnn, svm_targets, warp_crops
from ._roi import roi_align, roi_pool
from ._sampling import label_anchors, match_boxes, sample_balanced, sample_rois

__all__ = [
    "ConvBackbone", "Detections", "Detector", "FasterRCNN", "FasterRCNNConfig", "faster_rcnn", "label_anchors",
    "mask_rcnn", "match_boxes", "sample_balanced", "sample_rois", "coco_evaluate", "coco_ground_truth", "coco_results",
    "draw_detections", "paste_masks", "LinearSVMs", "RCNN", "RCNNClassifier", "RCNNConfig", "propose_regions", "rcnn",
    "selective_search", "svm_targets", "warp_crops",
    "anchor_grid", "batched_nms", "box_area", "clip_boxes", "decode_boxes", "encode_boxes", "iou_matrix", "nms",
    "roi_align", "roi_pool",
]
