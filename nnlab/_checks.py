"""Host-side input checks shared by data, training and evaluation.

Each check runs on NumPy values before anything is traced, because inside `jit`
JAX is silent about what these catch (`one_hot` maps an out-of-range label to a
zero row; an integer-label cross-entropy reads past the end of the logits).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _describe(a: np.ndarray) -> str:
    return f"shape {tuple(a.shape)} and dtype {a.dtype}"


def check_inputs(x: ArrayLike, *, name: str = "x", feature_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Returns `x` as a float NumPy array after checking it is non-empty, floating point, finite
    and within float32's range (training and evaluation run in float32).

    x: [batch, *feature_shape]
    """
    a = np.asarray(x)
    if a.dtype.kind in "iub":
        values = f" (values {a.min()} to {a.max()})" if a.size else ""
        raise TypeError(
            f"{name}: expected floating-point inputs, got {_describe(a)}{values}; scale them first, "
            f"e.g. x.astype(np.float32) / 255 for 8-bit images"
        )
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a numeric array, got {_describe(a)}")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch [batch, ...], got {_describe(a)}")
    if feature_shape is not None and tuple(a.shape[1:]) != tuple(feature_shape):
        raise ValueError(f"{name}: expected shape [batch, {', '.join(map(str, feature_shape))}], got {tuple(a.shape)}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a.reshape(a.shape[0], -1)))[0, 0]
        raise ValueError(f"{name}: expected finite values, got NaN or Inf (first in sample {bad})")
    if a.dtype.itemsize > 4 and a.size and np.max(np.abs(a)) > _FLOAT32_MAX:
        bad = np.argwhere(np.abs(a.reshape(a.shape[0], -1)) > _FLOAT32_MAX)[0, 0]
        raise ValueError(
            f"{name}: expected values within float32's range (|x| <= {_FLOAT32_MAX:.4g}), got "
            f"{a.dtype} values up to {np.max(np.abs(a)):.4g} (first in sample {bad}), which would "
            f"become Inf"
        )
    return a


def check_labels(y: ArrayLike, *, num_classes: int, n: int | None = None, name: str = "y") -> np.ndarray:
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


def check_label_range(y: np.ndarray, *, outputs: int, name: str = "y") -> None:
    """Raises if the labels `y: [batch]` do not fit a model with `outputs` outputs: labels
    0..outputs-1 (0 and 1 for one output, thresholded). A label past the last output would
    silently become an all-zero one-hot row."""
    classes = max(outputs, 2)
    hi = int(np.max(y))
    if hi >= classes:
        raise ValueError(
            f"{name}: expected labels in [0, {classes - 1}] for a model with {outputs} output(s), "
            f"got labels up to {hi}; give the model one output per class"
        )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def check_positive(value: Any, *, name: str, integer: bool = False) -> None:
    """Raises if `value` is not a finite positive number (an integer when `integer`)."""
    kind = "a positive integer" if integer else "a positive number"
    ok = isinstance(value, (int, np.integer)) if integer else _is_number(value)
    if not ok or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        raise ValueError(f"{name}: expected {kind}, got {value!r} (not finite)")


def check_non_negative(value: Any, *, name: str) -> None:
    """Raises if `value` is not a finite number >= 0."""
    if not _is_number(value) or not value >= 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        raise ValueError(f"{name}: expected a number >= 0, got {value!r} (not finite)")


def check_seed(value: object, *, name: str = "seed") -> None:
    """Raises if `value` is not an integer seed in [0, 2**32 - 1] (JAX's key takes 32 bits:
    larger seeds would overflow or collide with small ones)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**32:
        raise ValueError(f"{name}: expected an integer seed in [0, {2**32 - 1}], got {value!r}")
