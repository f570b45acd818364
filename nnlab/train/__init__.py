"""Training: config, state with a member axis, the pure step, loop strategies and the one loop
behind `fit` (one model) and `fit_many` (S models as one vmapped program)."""

from .._signals import Interrupted
from ._allocator import keep_freed_memory
from ._config import COMPUTE_DTYPES, ENGINES, TrainConfig
from ._engine import Engine, make_engine, members_step, pick_engine, unrolled_steps
from ._keys import STREAMS, as_key, member_keys, stream
from ._logging import Logger, read_jsonl
from ._loop import FitManyResult, FitResult, fit, fit_many
from ._precision import with_compute_dtype
from ._state import TrainState, init_members, init_state, member, stack
from ._step import classification_objective, epoch_order, make_train_step, model_objective
from ._tracking import DivergenceError
from ._tx import MEMBER_HPARAMS, make_tx

__all__ = [
    "COMPUTE_DTYPES",
    "DivergenceError",
    "ENGINES",
    "Engine",
    "FitManyResult",
    "FitResult",
    "Interrupted",
    "Logger",
    "MEMBER_HPARAMS",
    "STREAMS",
    "TrainConfig",
    "TrainState",
    "as_key",
    "classification_objective",
    "epoch_order",
    "fit",
    "fit_many",
    "init_members",
    "init_state",
    "keep_freed_memory",
    "make_engine",
    "make_train_step",
    "make_tx",
    "member",
    "member_keys",
    "members_step",
    "model_objective",
    "pick_engine",
    "read_jsonl",
    "stack",
    "stream",
    "unrolled_steps",
    "with_compute_dtype",
]
