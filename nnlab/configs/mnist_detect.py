"""Faster R-CNN on 128 x 128 scenes of 1-5 MNIST digits, as experiments/detection.py trains it:
3,000 training scenes, 8 epochs of Adam (batch 8, learning rate 2e-3, one warm-up epoch, cosine
decay), scored on 1,000 test scenes with pycocotools' COCOeval.

Command: `nnlab train mnist-detect` (experiments/detection.py's run of these settings on one H200:
box mAP@0.5 0.963; on a CPU add `--engine step`, see docs/detection.md);
`nnlab train mnist-detect --train-subset 200 --test-subset 50 --epochs 1 --engine step` is a quick look.
"""

from ..detect import DetectionConfig
from ..train import TrainConfig


def get_config() -> DetectionConfig:
    return DetectionConfig(
        model="faster_rcnn",
        train=TrainConfig(
            epochs=8,
            batch_size=8,
            optimizer="adam",
            learning_rate=2e-3,
            schedule="cosine",
            warmup_epochs=1,
        ),
        train_scenes=3000,
        test_scenes=1000,
    )
