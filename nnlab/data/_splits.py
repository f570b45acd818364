"""The lecture's three-way split: training / validation / test."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from ._dataset import Dataset


class Splits(NamedTuple):
    """Training data to fit on, validation data to choose on, test data to report on."""

    train: Dataset
    val: Dataset
    test: Dataset


def train_val_test(train: Dataset, test: Dataset, *, n_val: int, key: jax.Array) -> Splits:
    """Holds out `n_val` random training samples for validation (MNIST: 50,000 / 10,000 / 10,000).

    The permutation comes from `key`, so the same key gives the same split on every machine.
    `n_val=0` gives an empty validation set (training without early stopping).
    """
    if not isinstance(n_val, (int, np.integer)) or not 0 <= n_val < train.n:
        raise ValueError(
            f"n_val: expected an integer in [0, {train.n - 1}] for {train.n} training samples, got {n_val!r}"
        )
    order = np.asarray(jax.random.permutation(key, train.n))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Splits(train.subset(train_idx), train.subset(val_idx)._replace(name=f"{train.name}-val"), test)
