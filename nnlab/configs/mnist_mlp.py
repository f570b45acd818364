"""The lecture's "3-layer network" 784-100-100-10 on MNIST (the lecture: 2.4% test error).

Command: `nnlab train mnist-mlp` (1.34% test error, 134/10,000; 60-85 s of training on a 2-core
CPU with nnlab 0.2.0; nnlab 0.1.0 gave 1.21% in 18 s: docs/results.md).
"""

from .._run import RunConfig
from ..data import Augmentation
from ..train import TrainConfig


def get_config() -> RunConfig:
    return RunConfig(
        model="mnist-mlp",
        dataset="mnist",
        model_kwargs={"activation": "relu"},
        n_val=10_000,
        normalize="per_feature",
        train=TrainConfig(
            epochs=60,
            batch_size=128,
            optimizer="adam",
            learning_rate=1e-3,
            schedule="cosine",
            loss="softmax_cross_entropy",
            weight_decay=1e-4,
            patience=15,
            augmentation=Augmentation(shift=2.0, rotate=10.0, zoom=0.1),
        ),
    )
