"""The lecture's MLP as a Flax Linen module: the same network as `mlp`, for code that
composes Linen modules (convolutions, batch norm, dropout) around it."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._activations import ACTIVATIONS, prelu
from ._functional import PRELU_INIT, init_scale


class PReLU(nn.Module):
    """prelu(u) = u for u >= 0, a * u otherwise, with one learned slope `a` per feature."""

    @nn.compact
    def __call__(self, u: jax.Array) -> jax.Array:
        a = self.param("a", nn.initializers.constant(PRELU_INIT), (u.shape[-1],), jnp.float32)
        return prelu(u, a)


class MLP(nn.Module):
    """Dense layers of widths `features` (the last is the output), inputs flattened first.

    x: [batch, ...] -> [batch, features[-1]]
    """

    features: Sequence[int]
    activation: str = "sigmoid"
    output_activation: str = "identity"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        del train
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.features):
            last = i == len(self.features) - 1
            act = self.output_activation if last else self.activation
            std = init_scale(h.shape[-1], width, act)
            h = nn.Dense(width, kernel_init=nn.initializers.normal(std), name=f"dense{i}")(h)
            h = PReLU(name=f"prelu{i}")(h) if act == "prelu" else ACTIVATIONS[act](h)
        return h
