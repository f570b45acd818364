"""Losses `loss(outputs, targets) -> scalar` and explicit weight-decay terms.

Targets are integer class labels y: [batch] (one-hot encoded where a loss needs vectors;
for a single-output network t = y) or float target vectors t: [batch, classes].
Each loss is the mean over the batch of a per-sample loss, so a learning rate does not
depend on the batch size; the lecture's sums are N times these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import Array
from jaxtyping import Float, Int

from .optim import decay_mask


def _target_vectors(outputs: Array, targets: Array) -> Array:
    """t: [batch, classes] from integer labels or target vectors, with a clear error on a shape mismatch."""
    if outputs.ndim != 2:
        raise ValueError(f"outputs: expected shape [batch, classes], got {outputs.shape}")
    n, c = outputs.shape
    if jnp.issubdtype(targets.dtype, jnp.integer):
        if targets.shape != (n,):
            raise ValueError(
                f"targets: expected integer labels of shape ({n},) for outputs {outputs.shape}, got {targets.shape}"
            )
        return targets[:, None].astype(outputs.dtype) if c == 1 else jax.nn.one_hot(targets, c, dtype=outputs.dtype)
    if targets.shape != outputs.shape:
        raise ValueError(f"targets: expected target vectors of shape {outputs.shape} (as outputs), got {targets.shape}")
    return targets.astype(outputs.dtype)


def squared_error_per_sample(
    outputs: Float[Array, "batch classes"], targets: Int[Array, " batch"] | Float[Array, "batch classes"]
) -> Float[Array, " batch"]:
    """e_n = sum_k (y_nk - t_nk)^2 for outputs y: [batch, classes] -> [batch]."""
    return jnp.sum((outputs - _target_vectors(outputs, targets)) ** 2, axis=-1)


def sigmoid_cross_entropy_per_sample(
    logits: Float[Array, "batch classes"], targets: Int[Array, " batch"] | Float[Array, "batch classes"]
) -> Float[Array, " batch"]:
    """The lecture's per-output cross-entropy with y_k = sigmoid(u_k), from logits u: [batch, classes]
    (raw pre-activations: a network whose output unit already applies the sigmoid wants squared_error):
    e_n = -sum_k [t_k ln y_k + (1 - t_k) ln(1 - y_k)] = sum_k [softplus(u_k) - t_k u_k] (stable)."""
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, _target_vectors(logits, targets)), axis=-1)


def softmax_cross_entropy_per_sample(
    logits: Float[Array, "batch classes"], targets: Int[Array, " batch"] | Float[Array, "batch classes"]
) -> Float[Array, " batch"]:
    """Categorical cross-entropy with y = softmax(u), from logits u: [batch, classes]:
    e_n = -sum_k t_k ln y_k = logsumexp(u) - u_label (stable)."""
    if logits.shape[-1] < 2:
        raise ValueError(
            f"logits: expected at least 2 classes for a softmax, got shape {logits.shape} "
            f"(one output: use sigmoid_cross_entropy on its logit, or squared_error)"
        )
    t = _target_vectors(logits, targets)
    return -jnp.sum(t * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def squared_error(
    outputs: Float[Array, "batch classes"], targets: Int[Array, " batch"] | Float[Array, "batch classes"]
) -> Float[Array, ""]:
    """Mean over the batch of sum_k (y_k - t_k)^2, the lecture's sum of squared distances / N."""
    return jnp.mean(squared_error_per_sample(outputs, targets))


def sigmoid_cross_entropy(
    logits: Float[Array, "batch classes"], targets: Int[Array, " batch"] | Float[Array, "batch classes"]
) -> Float[Array, ""]:
    """Mean over the batch of the lecture's per-output cross-entropy (sigmoid outputs, from logits)."""
    return jnp.mean(sigmoid_cross_entropy_per_sample(logits, targets))


def softmax_cross_entropy(
    logits: Float[Array, "batch classes"], targets: Int[Array, " batch"] | Float[Array, "batch classes"]
) -> Float[Array, ""]:
    """Mean over the batch of the categorical cross-entropy of softmax(logits)."""
    return jnp.mean(softmax_cross_entropy_per_sample(logits, targets))


LOSSES: dict[str, tuple[Callable[[Array, Array], Array], float]] = {
    "softmax_cross_entropy": (softmax_cross_entropy_per_sample, 0.0),
    "sigmoid_cross_entropy": (sigmoid_cross_entropy_per_sample, 0.0),
    "squared_error": (squared_error_per_sample, 0.5),
}
"""Loss name -> (per-sample loss, threshold that turns a single output into class 1)."""


def get_loss(name: str) -> tuple[Callable[[Array, Array], Array], float]:
    """(per-sample loss, single-output threshold) for a loss name."""
    if name not in LOSSES:
        raise ValueError(f"loss: expected one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]


def _decayed(params: Any, include_biases: bool) -> list[Array]:
    """The leaves `decay_mask` marks: the weights, and biases and slopes too if `include_biases`."""
    mask = decay_mask(params, include_biases=include_biases)
    return [p for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask), strict=True) if m]


def l2_penalty(params: Any, lam: float, *, include_biases: bool = False) -> Float[Array, ""]:
    """lambda * theta . theta over the weights (biases too if `include_biases`)."""
    return lam * sum((jnp.sum(p * p) for p in _decayed(params, include_biases)), jnp.float32(0.0))


def l1_penalty(params: Any, lam: float, *, include_biases: bool = False) -> Float[Array, ""]:
    """lambda * sum |theta| over the weights (biases too if `include_biases`)."""
    return lam * sum((jnp.sum(jnp.abs(p)) for p in _decayed(params, include_biases)), jnp.float32(0.0))
