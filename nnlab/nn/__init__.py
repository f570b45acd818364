"""Networks: activations, the functional MLP, Linen modules and the model contract."""

from ._activations import identity, prelu, relu, sigmoid, softmax, tanh
from ._functional import dense_apply, dense_init, mlp, mlp_apply, mlp_init
from ._linen import MLP, PReLU
from ._model import Model, from_linen, with_normalization
from ._models import MODELS, get_model

__all__ = [
    "MLP", "MODELS", "Model", "PReLU", "dense_apply", "dense_init", "from_linen", "get_model",
    "identity", "mlp", "mlp_apply", "mlp_init", "prelu", "relu", "sigmoid", "softmax", "tanh",
    "with_normalization",
]
