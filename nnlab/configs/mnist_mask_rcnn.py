"""Mask R-CNN on scenes of MNIST digits: `mnist-detect`'s settings with the mask head, scored for
box mAP and mask AP (COCOeval).

Command: `nnlab train mnist-mask-rcnn` (on a CPU add `--engine step`).
"""

from ..detect import DetectionConfig
from . import mnist_detect


def get_config() -> DetectionConfig:
    return mnist_detect.get_config().replace(model="mask_rcnn")
