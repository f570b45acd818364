"""nnlab: the classic neural-network lecture done right in JAX.

Pure functions over parameter pytrees, jit-compiled and vmapped, with seeds as an axis.
The top level holds what a run needs; the rest lives in namespaces grouped by stage:
`data`, `nn`, `losses`, `optim`, `train`, `evaluation`, `detect`, `study`, `sweep`, `checkpoint`,
`report`, `configs`.
Modules with a leading underscore are private. Importing nnlab changes no global JAX setting.
"""

from . import checkpoint, configs, data, detect, evaluation, losses, nn, optim, report, study, sweep, train
from ._run import RunConfig, build_model, evaluate_checkpoint, load_splits, run, run_detection, run_seeds
from .checkpoint import Checkpointer, load_model
from .data import Dataset, fashion_mnist, mnist
from .evaluation import Evaluation, confusion_matrix, evaluate, predict, predict_labels
from .nn import Model, from_linen, get_model, summary
from .train import FitManyResult, FitResult, TrainConfig, fit, fit_many

__version__ = "0.2.0"

__all__ = [
    "Checkpointer",
    "Dataset",
    "Evaluation",
    "FitManyResult",
    "FitResult",
    "Model",
    "RunConfig",
    "TrainConfig",
    "build_model",
    "checkpoint",
    "configs",
    "confusion_matrix",
    "data",
    "detect",
    "evaluate",
    "evaluate_checkpoint",
    "evaluation",
    "fashion_mnist",
    "fit",
    "fit_many",
    "from_linen",
    "get_model",
    "load_model",
    "load_splits",
    "losses",
    "mnist",
    "nn",
    "optim",
    "predict",
    "predict_labels",
    "report",
    "run",
    "run_detection",
    "run_seeds",
    "study",
    "summary",
    "sweep",
    "train",
]
