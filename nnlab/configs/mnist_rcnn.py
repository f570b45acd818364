"""R-CNN on scenes of MNIST digits: selective-search proposals of 500 training scenes (about 0.13 s
per scene on one CPU core), its CNN fine-tuned on them for 2 epochs (otherwise `mnist-detect`'s
optimizer), 300 Adam steps of the per-class linear SVMs, scored on 1,000 test scenes.

Command: `nnlab train mnist-rcnn` (experiments/detection.py's run of these settings on one H200, its
CNN on the same 500 scenes: box mAP@0.5 0.853; on a CPU add `--engine step`).
"""

from ..detect import DetectionConfig
from . import mnist_detect


def get_config() -> DetectionConfig:
    base = mnist_detect.get_config()
    return base.replace(model="rcnn", train=base.train.replace(epochs=2), train_scenes=500)
