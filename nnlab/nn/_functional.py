"""Dense layers and MLPs as pure functions over parameter pytrees, written the lecture's way.

The lecture writes one layer for a whole batch as Y = sigma(W X + s), samples as the
columns of X. nnlab keeps samples as rows (x: [batch, in]), so the same layer reads
y = sigma(x W^T + s) with W: [out, in] and s: [out], identical numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .._checks import check_positive
from ._activations import ACTIVATIONS, check_activation, prelu
from ._model import Model

PRELU_INIT = 0.25


def init_scale(fan_in: int, fan_out: int, activation: str) -> float:
    """Standard deviation of the initial weights: He for (P)ReLU, Glorot otherwise."""
    return math.sqrt(2.0 / (fan_in if activation in ("relu", "prelu") else fan_in + fan_out))


def dense_init(key: jax.Array, n_in: int, n_out: int, *, activation: str = "identity") -> dict:
    """One layer's parameters: W: [n_out, n_in] ~ N(0, scale^2), s: [n_out] = 0 (+ slope a for PReLU)."""
    W = init_scale(n_in, n_out, activation) * jax.random.normal(key, (n_out, n_in), jnp.float32)
    params = {"W": W, "s": jnp.zeros((n_out,), jnp.float32)}
    if activation == "prelu":
        params["a"] = jnp.full((n_out,), PRELU_INIT, jnp.float32)
    return params


def dense_apply(params: dict, x: jnp.ndarray, *, activation: str = "identity") -> jnp.ndarray:
    """y = sigma(x W^T + s) for x: [batch, n_in] -> y: [batch, n_out]."""
    u = x @ params["W"].T + params["s"][None, :]
    if activation == "prelu":
        return prelu(u, params["a"])
    return ACTIVATIONS[activation](u)


def mlp_init(
    key: jax.Array, sizes: Sequence[int], *, activation: str = "sigmoid", output_activation: str = "identity"
) -> list[dict]:
    """Parameters of an MLP with layer widths `sizes` = [n_in, hidden..., n_out]: one dict per layer."""
    if len(sizes) < 2 or any(not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"sizes: expected at least two positive integers [n_in, ..., n_out], got {list(sizes)}")
    check_activation(activation)
    check_activation(output_activation, arg="output_activation")
    keys = jax.random.split(key, len(sizes) - 1)
    acts = [activation] * (len(sizes) - 2) + [output_activation]
    return [dense_init(k, a, b, activation=act) for k, a, b, act in zip(keys, sizes[:-1], sizes[1:], acts, strict=True)]


def mlp_apply(
    params: list[dict],
    x: jnp.ndarray,
    *,
    activation: str = "sigmoid",
    output_activation: str = "identity",
    drop_rate: float = 0.0,
    key: jax.Array | None = None,
) -> jnp.ndarray:
    """Forward pass of `mlp_init`'s network: x: [batch, ...] (flattened) -> [batch, n_out].

    With `drop_rate` > 0 and a `key`, each hidden unit is set to zero with probability
    drop_rate and the kept ones are scaled by 1 / (1 - drop_rate) (inverted dropout).
    """
    h = x.reshape(x.shape[0], -1)
    keys = jax.random.split(key, len(params)) if drop_rate > 0 and key is not None else None
    for i, layer in enumerate(params):
        last = i == len(params) - 1
        h = dense_apply(layer, h, activation=output_activation if last else activation)
        if keys is not None and not last:
            keep = jax.random.bernoulli(keys[i], 1.0 - drop_rate, h.shape)
            h = jnp.where(keep, h / (1.0 - drop_rate), 0.0)
    return h


def mlp(
    sizes: Sequence[int],
    *,
    activation: str = "sigmoid",
    output_activation: str = "identity",
    input_shape: tuple[int, ...] | None = None,
    drop_rate: float = 0.0,
    name: str = "mlp",
) -> Model:
    """The functional MLP as a `Model`; input samples of `input_shape` are flattened to sizes[0].

    drop_rate: fraction of hidden units set to zero while training (dropout, keyed by `key`).
    """
    sizes = list(sizes)
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0 <= drop_rate < 1:
        raise ValueError(f"drop_rate: expected a fraction in [0, 1), got {drop_rate!r}")
    check_activation(activation)
    check_activation(output_activation, arg="output_activation")
    if input_shape is not None:
        check_positive(math.prod(input_shape), name="input_shape", integer=True)
        if math.prod(input_shape) != sizes[0]:
            raise ValueError(
                f"sizes[0]: expected {math.prod(input_shape)} inputs for input_shape {input_shape}, got {sizes[0]}"
            )

    def init(key: jax.Array, x: jax.Array) -> dict:
        return {"params": mlp_init(key, sizes, activation=activation, output_activation=output_activation)}

    def apply(variables: dict, x: jax.Array, *, train: bool, key: jax.Array | None = None):
        return mlp_apply(
            variables["params"],
            x,
            activation=activation,
            output_activation=output_activation,
            drop_rate=drop_rate if train else 0.0,
            key=key,
        ), {}

    return Model(init, apply, input_shape, name)
