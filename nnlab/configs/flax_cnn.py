"""Flax's MNIST example, like for like: its CNN, SGD with heavy-ball momentum 0.9 at
learning rate 0.1, batch 128, 10 epochs, pixels in [0, 1] without normalization.

Command: `nnlab train flax-cnn` (10 epochs of about 26 s on a 2-core CPU, 8 min when the CPU
was shared: 1.10% test error); add `--compute-dtype bfloat16` for mixed precision,
`--devices 0` for data parallelism over all devices.
"""

from .._run import RunConfig
from ..train import TrainConfig


def get_config() -> RunConfig:
    return RunConfig(
        model="flax-cnn",
        dataset="mnist",
        normalize="none",
        train=TrainConfig(
            epochs=10,
            batch_size=128,
            optimizer="heavy_ball",
            learning_rate=0.1,
            momentum=0.9,
            loss="softmax_cross_entropy",
        ),
    )
