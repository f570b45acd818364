"""The lecture's activation functions sigma(u), elementwise on pre-activations u."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def sigmoid(u: jnp.ndarray) -> jnp.ndarray:
    """sigma(u) = 1 / (1 + exp(-u)), values in (0, 1)."""
    return jax.nn.sigmoid(u)


def tanh(u: jnp.ndarray) -> jnp.ndarray:
    """tanh(u) = (e^u - e^-u) / (e^u + e^-u), values in (-1, 1)."""
    return jnp.tanh(u)


def relu(u: jnp.ndarray) -> jnp.ndarray:
    """relu(u) = max(0, u)."""
    return jax.nn.relu(u)


def prelu(u: jnp.ndarray, slope: jnp.ndarray) -> jnp.ndarray:
    """prelu(u) = u for u >= 0, slope * u for u < 0; `slope` is learned: [] or u's trailing axes."""
    slope = jnp.reshape(slope, (1,) * (u.ndim - jnp.ndim(slope)) + jnp.shape(slope))
    return jnp.where(u >= 0, u, slope * u)


def softmax(u: jnp.ndarray, axis: int = -1) -> jnp.ndarray:
    """softmax(u)_k = exp(u_k) / sum_j exp(u_j), computed stably (max subtracted first)."""
    return jax.nn.softmax(u, axis=axis)


def identity(u: jnp.ndarray) -> jnp.ndarray:
    """The linear output unit: u unchanged (logits for a softmax cross-entropy)."""
    return u


ACTIVATIONS: dict[str, Callable] = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "softmax": softmax,
    "identity": identity,
}
_NAMES = sorted([*ACTIVATIONS, "prelu"])


def check_activation(name: str, *, arg: str = "activation") -> str:
    """Returns `name` if it names an activation, else raises naming the choices."""
    if name not in _NAMES:
        raise ValueError(f"{arg}: expected one of {_NAMES}, got {name!r}")
    return name
