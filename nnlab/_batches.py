"""Fixed-size batches with a mask of real samples: one compiled shape, exact on a ragged tail."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def padded_batches(x: Any, y: Any, batch_size: int) -> tuple[Any, Any, np.ndarray]:
    """x: [n, ...] and y (labels [n] or a pytree of [n, ...] arrays) as [nb, batch_size, ...]
    batches, the last padded by repeating sample 0, and mask: bool [nb, batch_size] of real samples."""
    n = jax.tree.leaves(x)[0].shape[0]
    nb = -(-n // batch_size)
    idx = np.concatenate([np.arange(n), np.zeros(nb * batch_size - n, np.int64)]).reshape(nb, batch_size)
    mask = (np.arange(nb * batch_size) < n).reshape(nb, batch_size)

    def take(a: Any) -> np.ndarray:
        return np.asarray(a)[idx]

    return jax.tree.map(take, x), jax.tree.map(take, y), mask
