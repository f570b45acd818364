"""Training: config, state, pure steps and the `fit` loop."""

from ._config import TrainConfig
from ._loop import FitResult, fit, make_tx
from ._progress import Progress
from ._state import TrainState, as_key, init_state
from ._step import epoch_order, make_train_step, objective

__all__ = [
    "FitResult", "Progress", "TrainConfig", "TrainState", "as_key", "epoch_order", "fit",
    "init_state", "make_train_step", "make_tx", "objective",
]
