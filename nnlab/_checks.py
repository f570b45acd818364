"""Host-side input checks shared by data, training and evaluation.

Each check runs on NumPy values before anything is traced, because inside `jit`
JAX is silent about what these catch (`one_hot` maps an out-of-range label to a
zero row; an integer-label cross-entropy reads past the end of the logits).
"""

from __future__ import annotations

import numpy as np


def _describe(a: np.ndarray) -> str:
    return f"shape {tuple(a.shape)} and dtype {a.dtype}"


def check_inputs(x, *, name: str = "x", feature_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Returns `x` as a float NumPy array after checking it is non-empty, numeric and finite.

    x: [batch, *feature_shape]
    """
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a numeric array, got {_describe(a)}")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch [batch, ...], got {_describe(a)}")
    if feature_shape is not None and tuple(a.shape[1:]) != tuple(feature_shape):
        raise ValueError(
            f"{name}: expected shape [batch, {', '.join(map(str, feature_shape))}], got {tuple(a.shape)}"
        )
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a.reshape(a.shape[0], -1)))[0, 0]
        raise ValueError(f"{name}: expected finite values, got NaN or Inf (first in sample {bad})")
    return a


def check_labels(y, *, num_classes: int, n: int | None = None, name: str = "y") -> np.ndarray:
    """Returns integer class labels `y: [batch]` after checking shape, dtype and range [0, num_classes)."""
    a = np.asarray(y)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer class labels of shape [batch], got {_describe(a)}")
    if a.ndim != 1:
        hint = " (squeeze the trailing axis)" if a.ndim == 2 and a.shape[1] == 1 else ""
        raise ValueError(f"{name}: expected labels of shape [batch], got shape {tuple(a.shape)}{hint}")
    if a.size == 0:
        raise ValueError(f"{name}: expected a non-empty batch of labels, got shape {tuple(a.shape)}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name}: expected {n} labels (one per sample of x), got {a.shape[0]}")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{name}: expected labels in [0, {num_classes - 1}] for {num_classes} classes, got values in [{lo}, {hi}]"
        )
    return a


def check_positive(value, *, name: str, integer: bool = False) -> None:
    """Raises if `value` is not a positive number (an integer when `integer`)."""
    kind = "a positive integer" if integer else "a positive number"
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if not ok or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name}: expected {kind}, got {value!r}")


def check_non_negative(value, *, name: str) -> None:
    """Raises if `value` is not a number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
