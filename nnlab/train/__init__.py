"""Training: config, state, pure steps and the `fit` loop."""

from ._config import COMPUTE_DTYPES, ENGINES, TrainConfig
from ._engine import Engine, make_engine, pick_engine
from ._guards import DivergenceError
from ._loop import FitResult, fit, make_tx
from ._parallel import DataParallel, data_parallel
from ._precision import cast_floating, with_compute_dtype
from ._progress import Progress
from ._state import TrainState, as_key, init_state
from ._step import epoch_order, make_train_step, objective

__all__ = [
    "COMPUTE_DTYPES", "DataParallel", "DivergenceError", "ENGINES", "Engine", "FitResult", "Progress", "TrainConfig",
    "TrainState", "as_key", "cast_floating", "data_parallel", "epoch_order", "fit", "init_state",
    "make_engine", "make_train_step", "make_tx", "objective", "pick_engine", "with_compute_dtype",
]
