"""Networks: activations, the functional MLP, Linen modules (dense and convolutional), the model
contract, adapters for Flax NNX and Equinox models, and the cost model."""

from ._activations import identity, prelu, relu, sigmoid, softmax, tanh
from ._equinox import from_equinox, to_equinox
from ._functional import dense_apply, dense_init, mlp, mlp_apply, mlp_init
from ._layers import (
    AvgPool,
    BatchNorm,
    Dropout,
    FunnelCNN,
    GlobalAvgPool,
    InceptionBlock,
    MaxPool,
    ResidualBlock,
    SqueezeExcite,
    avg_pool,
    conv,
    conv1x1,
    global_avg_pool,
    max_pool,
    upsample,
)
from ._linen import MLP, PReLU
from ._model import Model, from_linen, with_normalization
from ._models import MODELS, get_model
from ._nnx import from_nnx, to_nnx
from ._summary import LayerCost, Summary, summary

__all__ = [
    "AvgPool",
    "BatchNorm",
    "Dropout",
    "FunnelCNN",
    "GlobalAvgPool",
    "InceptionBlock",
    "LayerCost",
    "MLP",
    "MODELS",
    "MaxPool",
    "Model",
    "PReLU",
    "ResidualBlock",
    "SqueezeExcite",
    "Summary",
    "avg_pool",
    "conv",
    "conv1x1",
    "dense_apply",
    "dense_init",
    "from_equinox",
    "from_linen",
    "from_nnx",
    "get_model",
    "global_avg_pool",
    "identity",
    "max_pool",
    "mlp",
    "mlp_apply",
    "mlp_init",
    "prelu",
    "relu",
    "sigmoid",
    "softmax",
    "summary",
    "tanh",
    "to_equinox",
    "to_nnx",
    "upsample",
    "with_normalization",
]
