"""Data parallelism with `jax.sharding`: each batch split over devices, parameters replicated.

XLA partitions the compiled step (GSPMD): every device computes the gradient of its slice
of the batch and the mean over the whole batch is an all-reduce, so the update equals the
one-device update up to float rounding. Across processes, `jax.distributed.initialize()`
makes `jax.devices()` global and the same code runs unchanged (see README.md).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class DataParallel(NamedTuple):
    """replicated: for parameters, state and the data set; batch: for a batch's leading axis."""

    replicated: NamedSharding
    batch: NamedSharding


def data_parallel(devices: int, batch_size: int) -> DataParallel | None:
    """Shardings over the first `devices` of `jax.devices()` (0: all); None for one device."""
    available = jax.devices()
    count = len(available) if devices == 0 else devices
    if count > len(available):
        raise ValueError(f"devices: expected at most the {len(available)} devices JAX sees, got {devices}")
    if count == 1:
        return None
    if batch_size % count:
        raise ValueError(f"batch_size: expected a multiple of the {count} devices, got {batch_size}")
    mesh = Mesh(np.asarray(available[:count]), ("data",))
    return DataParallel(NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data")))
