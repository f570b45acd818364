"""Evaluation: predictions in fixed-size batches, metrics as masked sums divided at the end."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Float, Int

from ._batches import padded_batches
from ._checks import check_inputs, check_label_range, check_labels, check_positive
from .losses import get_loss
from .nn import Model


def predict_labels(
    outputs: Float[Array | np.ndarray, "*batch classes"], threshold: float = 0.5
) -> Int[Array | np.ndarray, "*batch"]:
    """Class labels [...] from outputs [..., classes]: argmax, or `outputs > threshold` for one output."""
    if outputs.shape[-1] == 1:
        return (outputs[..., 0] > threshold).astype(jnp.int32)
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)


class Evaluation(NamedTuple):
    """Loss and errors of a model on a labelled set; `predictions: [n]` int32."""

    loss: float
    errors: int
    n: int
    predictions: np.ndarray

    @property
    def error_rate(self) -> float:
        """errors / n: the fraction of misclassified samples."""
        return self.errors / self.n

    @property
    def accuracy(self) -> float:
        """1 - error_rate."""
        return 1.0 - self.error_rate


@partial(jax.jit, static_argnames=("apply", "loss", "threshold"))
def _eval_batch(
    variables: Any, x: Array, y: Array, mask: Array, *, apply: Callable[..., Any], loss: str, threshold: float
) -> tuple[Array, Array | np.ndarray]:
    outputs, _ = apply(variables, x, train=False)
    per_sample, _ = get_loss(loss)
    return jnp.sum(jnp.where(mask, per_sample(outputs, y), 0.0)), predict_labels(outputs, threshold)


@partial(jax.jit, static_argnames=("apply", "members"))
def _forward(variables: Any, x: Array, *, apply: Callable[..., Any], members: bool) -> Array:
    """Outputs in evaluation mode; with `members`, of every member of the stacked variables [S, ...]."""
    outputs: Array = (
        jax.vmap(lambda v: apply(v, x, train=False)[0])(variables) if members else apply(variables, x, train=False)[0]
    )
    return outputs


def evaluate(
    model: Model,
    variables: Any,
    x: Float[ArrayLike, "n ..."],
    y: Int[ArrayLike, " n"],
    *,
    num_classes: int,
    loss: str = "softmax_cross_entropy",
    batch_size: int = 1000,
) -> Evaluation:
    """Mean loss, error count and predicted labels of `model` on x: [n, ...], y: [n]."""
    check_positive(batch_size, name="batch_size", integer=True)
    xa = check_inputs(x, name="x", feature_shape=model.input_shape).astype(np.float32)
    ya = check_labels(y, num_classes=num_classes, n=xa.shape[0]).astype(np.int32)
    threshold = get_loss(loss)[1]
    xb, yb, mask = padded_batches(xa, ya, min(batch_size, xa.shape[0]))
    outputs = jax.eval_shape(lambda v, x_: model.apply(v, x_, train=False)[0], variables, xb[0])
    if outputs.ndim == 2:
        check_label_range(ya, outputs=outputs.shape[-1])
    loss_sum, preds = 0.0, []
    for i in range(mask.shape[0]):
        ls, pred = _eval_batch(variables, xb[i], yb[i], mask[i], apply=model.apply, loss=loss, threshold=threshold)
        loss_sum += float(ls)
        preds.append(np.asarray(pred)[mask[i]])
    predictions = np.concatenate(preds)
    return Evaluation(loss_sum / xa.shape[0], int(np.sum(predictions != ya)), int(xa.shape[0]), predictions)


def predict(
    model: Model, variables: Any, x: Float[ArrayLike, "n ..."], *, batch_size: int = 1000, members: bool = False
) -> Float[np.ndarray, "*members n classes"]:
    """Model outputs [n, classes] for x: [n, ...], computed in batches in evaluation mode; with
    `members`, `variables` are S stacked members' ([S, ...], from `fit_many`) and the outputs [S, n, classes]."""
    check_positive(batch_size, name="batch_size", integer=True)
    xa = check_inputs(x, name="x", feature_shape=model.input_shape).astype(np.float32)
    xb, _, mask = padded_batches(xa, np.zeros(xa.shape[0], np.int32), min(batch_size, xa.shape[0]))
    outs = [
        np.asarray(_forward(variables, xb[i], apply=model.apply, members=members))[..., mask[i], :]
        for i in range(mask.shape[0])
    ]
    return np.concatenate(outs, axis=-2)


def error_rate(predictions: Int[ArrayLike, " n"], labels: Int[ArrayLike, " n"]) -> float:
    """Fraction of samples whose predicted label differs from the true one."""
    p, t = np.asarray(predictions), np.asarray(labels)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(f"predictions: expected shape {t.shape} like labels (1-D), got {p.shape}")
    return float(np.mean(p != t))


def accuracy(predictions: Int[ArrayLike, " n"], labels: Int[ArrayLike, " n"]) -> float:
    """Fraction of samples predicted correctly."""
    return 1.0 - error_rate(predictions, labels)


def confusion_matrix(
    predictions: Int[ArrayLike, " n"], labels: Int[ArrayLike, " n"], num_classes: int
) -> Int[np.ndarray, "classes classes"]:
    """C[i, j] = number of samples of true class i predicted as class j; [num_classes, num_classes]."""
    t = check_labels(labels, num_classes=num_classes, name="labels")
    p = check_labels(predictions, num_classes=num_classes, n=t.shape[0], name="predictions")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def misclassified(predictions: Int[ArrayLike, " n"], labels: Int[ArrayLike, " n"]) -> Int[np.ndarray, " errors"]:
    """Indices of the samples whose predicted label differs from the true one, ascending."""
    p, t = np.asarray(predictions), np.asarray(labels)
    if p.shape != t.shape:
        raise ValueError(f"predictions: expected shape {t.shape} like labels, got {p.shape}")
    return np.flatnonzero(p != t)
