"""Named models, as the CLI and the experiments refer to them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax

from ._functional import mlp
from ._layers import FunnelCNN, avg_pool, conv
from ._model import Model, from_linen


def xor_mlp(activation: str = "sigmoid") -> Model:
    """The lecture's 2-2-1 network for XOR; one sigmoid output read as P(class 1)."""
    return mlp([2, 2, 1], activation=activation, output_activation="sigmoid", input_shape=(2,), name="xor-mlp")


def mnist_mlp(activation: str = "relu", width: int = 100, depth: int = 2, drop_rate: float = 0.0) -> Model:
    """The lecture's "3-layer network" 784-100-100-10 (89,610 parameters), softmax logits out."""
    return mlp(
        [784, *[width] * depth, 10],
        activation=activation,
        input_shape=(28, 28, 1),
        drop_rate=drop_rate,
        name="mnist-mlp",
    )


class FlaxExampleCNN(nn.Module):
    """The CNN of Flax's MNIST example, layer for layer (Flax's default initializers, 'SAME' padding).

    x: [batch, 28, 28, 1] -> conv3x3 32, relu, avgpool 2 -> conv3x3 64, relu, avgpool 2
    -> dense 256, relu -> dense 10: logits [batch, 10] (824,458 parameters).
    """

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        del train
        x = avg_pool(nn.relu(conv(32, 3)(x)), 2)
        x = avg_pool(nn.relu(conv(64, 3)(x)), 2)
        x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


def flax_cnn() -> Model:
    """Flax's MNIST example CNN (see FlaxExampleCNN), the model of nnlab's speed benchmarks."""
    return from_linen(FlaxExampleCNN(), input_shape=(28, 28, 1), name="flax-cnn")


def mnist_cnn(
    stages: Sequence[Sequence[int]] = ((32,), (64,), (128,)),
    first_kernel: int = 5,
    hidden: Sequence[int] = (150,),
    drop_rate: float = 0.5,
    batch_norm: bool = True,
) -> Model:
    """The lecture's deep CNN for MNIST, a funnel of 171,868 parameters (see `FunnelCNN`):
    5x5 conv 32 | pool 2 | 3x3 conv 64 | pool 2 | 3x3 conv 128 (unpadded) | 3x3 pool stride 2 |
    dropout, fc 150 | dropout, fc 10; each convolution followed by batch norm and ReLU."""
    module = FunnelCNN(
        stages=tuple(map(tuple, stages)),
        first_kernel=first_kernel,
        hidden=tuple(hidden),
        drop_rate=drop_rate,
        batch_norm=batch_norm,
    )
    return from_linen(module, input_shape=(28, 28, 1), name="mnist-cnn")


MODELS: dict[str, Callable[..., Model]] = {
    "xor-mlp": xor_mlp,
    "mnist-mlp": mnist_mlp,
    "mnist-cnn": mnist_cnn,
    "flax-cnn": flax_cnn,
}
"""Named models: name -> a function building the Model (`nnlab summary NAME`, RunConfig.model)."""


def get_model(name: str, **kwargs: Any) -> Model:
    """The named model (see MODELS), built with `kwargs`."""
    if name not in MODELS:
        raise ValueError(f"model: expected one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](**kwargs)
