"""Detection: box operations, anchors, non-maximum suppression, RoI pooling, proposals, the
two-stage detectors (R-CNN, Faster R-CNN, Mask R-CNN) and the COCO evaluation bridge.

Selective search needs scikit-image and the COCO bridge pycocotools, the optional extra
`pip install -e ".[detect]"`; both are imported only when used.
"""

from ._anchors import anchor_grid
from ._backbone import ConvBackbone
from ._boxes import box_area, clip_boxes, decode_boxes, encode_boxes, iou_matrix
from ._coco import coco_evaluate, coco_ground_truth, coco_results, coco_scores
from ._detector import Detections, Detector
from ._draw import draw_detections
from ._faster_rcnn import FasterRCNN, FasterRCNNConfig, faster_rcnn, mask_rcnn
from ._masks import paste_masks
from ._nms import batched_nms, nms
from ._proposals import propose_regions, selective_search
from ._rcnn import RCNN, LinearSVMs, RCNNClassifier, RCNNConfig, rcnn, svm_targets, warp_crops
from ._roi import roi_align, roi_pool
from ._sampling import label_anchors, match_boxes, sample_balanced, sample_rois
from ._train import DETECTORS, DetectionConfig, train_and_score

__all__ = [
    # boxes, anchors, NMS, RoI pooling, matching and sampling
    "anchor_grid",
    "batched_nms",
    "box_area",
    "clip_boxes",
    "decode_boxes",
    "encode_boxes",
    "iou_matrix",
    "label_anchors",
    "match_boxes",
    "nms",
    "roi_align",
    "roi_pool",
    "sample_balanced",
    "sample_rois",
    # detectors
    "ConvBackbone",
    "Detections",
    "Detector",
    "FasterRCNN",
    "FasterRCNNConfig",
    "LinearSVMs",
    "RCNN",
    "RCNNClassifier",
    "RCNNConfig",
    "faster_rcnn",
    "mask_rcnn",
    "propose_regions",
    "rcnn",
    "selective_search",
    "svm_targets",
    "warp_crops",
    # training and scoring
    "DETECTORS",
    "DetectionConfig",
    "train_and_score",
    # evaluation and pictures
    "coco_evaluate",
    "coco_ground_truth",
    "coco_results",
    "coco_scores",
    "draw_detections",
    "paste_masks",
]
