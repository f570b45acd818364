"""Named models, as the CLI and the experiments refer to them."""

from __future__ import annotations

from typing import Callable

from ._functional import mlp
from ._model import Model


def xor_mlp(activation: str = "sigmoid") -> Model:
    """The lecture's 2-2-1 network for XOR; one sigmoid output read as P(class 1)."""
    return mlp([2, 2, 1], activation=activation, output_activation="sigmoid", input_shape=(2,), name="xor-mlp")


def mnist_mlp(activation: str = "relu", width: int = 100, depth: int = 2, drop_rate: float = 0.0) -> Model:
    """The lecture's "3-layer network" 784-100-100-10 (89,610 parameters), softmax logits out."""
    return mlp([784, *[width] * depth, 10], activation=activation, input_shape=(28, 28, 1), drop_rate=drop_rate,
               name="mnist-mlp")


MODELS: dict[str, Callable[..., Model]] = {"xor-mlp": xor_mlp, "mnist-mlp": mnist_mlp}


def get_model(name: str, **kwargs) -> Model:
    """The named model (see MODELS), built with `kwargs`."""
    if name not in MODELS:
        raise ValueError(f"model: expected one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](**kwargs)
