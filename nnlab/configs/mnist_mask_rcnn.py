"""Mask R-CNN on scenes of MNIST digits: `mnist-detect`'s settings with the mask head, scored for
box mAP and mask AP (COCOeval).

Command: `nnlab train mnist-mask-rcnn` (experiments/detection.py's run of these settings on one H200:
box mAP@0.5 0.967, mask AP 0.316; on a CPU add `--engine step`).
"""

from ..detect import DetectionConfig
from . import mnist_detect


def get_config() -> DetectionConfig:
    return mnist_detect.get_config().replace(model="mask_rcnn")
