"""nnlab: the classic neural-network lecture done right in JAX.

Pure functions over parameter pytrees, jit-compiled and vmapped, with seeds as an axis.
The whole public API is re-exported here; modules with a leading underscore are private.
Importing nnlab changes no global JAX setting.
"""

from . import checkpoint, configs, data, detect, losses, nn, optim, report, seeds, sweep, train
from ._run import RunConfig, build_model, evaluate_checkpoint, load_splits, run
from .checkpoint import Checkpoint, CheckpointError, Checkpointer, LoadedModel, load_model, read_checkpoint
from .data import (
    ChecksumError, DataNotFoundError, Dataset, IdxFormatError, Normalization, Splits, blobs,
    fashion_mnist, fit_normalization, fixed_normalization, load_dataset, load_idx_folder,
    make_dataset, mnist, read_idx, spirals, train_val_test, write_idx, xor,
)
from .evaluate import (
    Evaluation, accuracy, confusion_matrix, error_rate, evaluate, misclassified, predict,
    predict_labels,
)
from .losses import (
    l1_penalty, l2_penalty, sigmoid_cross_entropy, softmax_cross_entropy, squared_error,
)
from .nn import (
    MLP, LayerCost, Model, Summary, from_linen, get_model, mlp, mlp_apply, mlp_init, summary,
    with_normalization,
)
from .optim import adam, adamw, freeze, gd, make_optimizer, momentum, schedule, sgd
from .report import count_params, environment, format_table, params_sha256, write_json
from .seeds import FitManyResult, ensemble_outputs, fit_many, init_many, predict_many, run_seeds, seed_study
from .sweep import grid, random_search
from .train import FitResult, TrainConfig, TrainState, fit, init_state

__version__ = "0.1.0"

__all__ = [
    "ChecksumError", "DataNotFoundError", "Dataset", "Evaluation", "FitResult", "IdxFormatError",
    "LayerCost", "MLP", "Model", "Normalization", "RunConfig", "Splits", "TrainConfig", "TrainState",
    "accuracy", "adam", "adamw", "blobs", "build_model", "configs", "confusion_matrix",
    "count_params", "data", "detect", "environment", "error_rate", "evaluate", "fashion_mnist", "fit",
    "fit_normalization", "fixed_normalization", "format_table", "freeze", "from_linen", "gd",
    "get_model", "init_state", "l1_penalty", "l2_penalty", "load_dataset", "load_idx_folder",
    "load_splits", "losses", "make_dataset", "make_optimizer", "misclassified", "mlp",
    "mlp_apply", "mlp_init", "mnist", "momentum", "nn", "optim", "params_sha256", "predict",
    "predict_labels", "read_idx", "report", "run", "schedule", "sgd", "sigmoid_cross_entropy",
    "softmax_cross_entropy", "spirals", "squared_error", "summary", "Summary", "train", "train_val_test",
    "with_normalization", "write_json", "write_idx", "xor",
    # checkpoints
    "Checkpoint", "CheckpointError", "Checkpointer", "LoadedModel", "checkpoint", "evaluate_checkpoint",
    "load_model", "read_checkpoint",
    # seeds and sweeps
    "FitManyResult", "ensemble_outputs", "fit_many", "grid", "init_many", "predict_many", "random_search",
    "run_seeds", "seed_study", "seeds", "sweep",
]
