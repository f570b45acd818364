"""Every hyperparameter of a training run, as one frozen config saved with its results."""

from __future__ import annotations

import dataclasses
from typing import Any

from .._checks import check_non_negative, check_positive
from ..data import Augmentation
from ..losses import LOSSES
from ..optim import OPTIMIZERS

ENGINES = ("auto", "step", "unroll", "scan")
"""Loop strategies of `TrainConfig.engine` (see docs/training.md: the training engine)."""
COMPUTE_DTYPES = ("float32", "bfloat16")
"""Values of `TrainConfig.compute_dtype`: the dtype of the training step's parameters and inputs."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How `fit` trains.

    batch_size None means full-batch gradient descent. weight_decay and l1 are the lambdas
    of the explicit L2 / L1 terms added to the loss (for 'adamw', weight_decay is the
    decoupled decay instead). With validation data, `fit` returns the parameters of the
    epoch with the best validation error; patience None trains all epochs, otherwise
    training stops after `patience` epochs without a better validation error. `augmentation`
    draws a fresh variant of every training image inside each step (evaluation never augments).

    engine: how an epoch's steps run (see nnlab.train.ENGINES): 'auto' picks per backend,
      'step' dispatches one compiled step per batch, 'unroll' compiles `unroll` steps as one
      call, 'scan' compiles the whole epoch as one `lax.scan`. They agree to float rounding per
      step (XLA may fuse differently), not bit for bit over a long run.
    compute_dtype: 'float32', or 'bfloat16' to compute the training steps' forward and
      backward passes in bfloat16 while parameters, optimizer state and loss stay float32.
    devices: how many of `jax.devices()` to train on (0: all). member_shards of them split the
      member axis of `fit_many` (each group trains S / member_shards members), the rest shard
      every batch (data parallelism, parameters replicated); S and batch_size must divide evenly.
    """

    epochs: int = 10
    batch_size: int | None = 128
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_epochs: int = 0
    loss: str = "softmax_cross_entropy"
    weight_decay: float = 0.0
    l1: float = 0.0
    decay_biases: bool = False
    patience: int | None = None
    eval_batch_size: int = 1000
    augmentation: Augmentation = Augmentation()
    engine: str = "auto"
    unroll: int = 8
    compute_dtype: str = "float32"
    devices: int = 1
    member_shards: int = 1

    def __post_init__(self) -> None:
        check_positive(self.epochs, name="epochs", integer=True)
        if self.batch_size is not None:
            check_positive(self.batch_size, name="batch_size", integer=True)
        for name, choices in (
            ("optimizer", OPTIMIZERS),
            ("loss", sorted(LOSSES)),
            ("engine", ENGINES),
            ("compute_dtype", COMPUTE_DTYPES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}: expected one of {list(choices)}, got {getattr(self, name)!r}")
        check_positive(self.learning_rate, name="learning_rate")
        if isinstance(self.momentum, bool) or not isinstance(self.momentum, (int, float)) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum: expected a momentum in [0, 1), got {self.momentum!r}")
        for name in ("weight_decay", "l1", "warmup_epochs"):
            check_non_negative(getattr(self, name), name=name)
        if self.patience is not None:
            check_positive(self.patience, name="patience", integer=True)
        check_positive(self.eval_batch_size, name="eval_batch_size", integer=True)
        check_positive(self.unroll, name="unroll", integer=True)
        if isinstance(self.devices, bool) or not isinstance(self.devices, int) or self.devices < 0:
            raise ValueError(f"devices: expected an int >= 0 (0: all devices), got {self.devices!r}")
        check_positive(self.member_shards, name="member_shards", integer=True)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` (field=value) applied and checked again."""
        return dataclasses.replace(self, **changes)
