"""The labelled data set every part of nnlab passes around."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Float, Int

from .._checks import check_inputs, check_labels


class Dataset(NamedTuple):
    """Labelled samples on the host.

    x: [n, *feature_shape] float32 (images: [n, height, width, channels] in [0, 1])
    y: [n] int32 class labels in [0, num_classes)
    """

    x: Float[np.ndarray, "n ..."]
    y: Int[np.ndarray, " n"]
    num_classes: int
    name: str = "data"

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.x.shape[0])

    def take(self, n: int) -> Dataset:
        """The first `n` samples (all when n >= len)."""
        return self._replace(x=self.x[:n], y=self.y[:n])

    def subset(self, indices: Int[ArrayLike, " m"]) -> Dataset:
        """The samples at `indices` (an integer array)."""
        idx = np.asarray(indices)
        return self._replace(x=self.x[idx], y=self.y[idx])


def make_dataset(
    x: Float[ArrayLike, "n ..."], y: Int[ArrayLike, " n"], *, num_classes: int, name: str = "data"
) -> Dataset:
    """Checks and packs `x: [n, ...]` and `y: [n]` into a `Dataset` (float32 inputs, int32 labels)."""
    xa = check_inputs(x, name=f"{name}.x")
    ya = check_labels(y, num_classes=num_classes, n=xa.shape[0], name=f"{name}.y")
    return Dataset(xa.astype(np.float32), ya.astype(np.int32), int(num_classes), name)
