"""XOR with the lecture's 2-2-1 network: squared error, full-batch gradient descent with momentum.

Command: `nnlab train xor` (a few seconds on a CPU).
"""

from .._run import RunConfig
from ..train import TrainConfig


def get_config() -> RunConfig:
    return RunConfig(
        model="xor-mlp",
        dataset="xor",
        model_kwargs={"activation": "sigmoid"},
        normalize="none",
        train=TrainConfig(
            epochs=500,
            batch_size=None,
            optimizer="heavy_ball",
            learning_rate=0.5,
            momentum=0.9,
            loss="squared_error",
        ),
    )
