"""Devices: a `jax.sharding.Mesh` with a 'members' axis and a 'data' axis.

The training state is sharded over 'members' (each device group trains its own members) and
every gathered batch over 'data' (GSPMD: each device computes the gradient of its slice and
the mean over the batch becomes an all-reduce, so the update equals the one-device update up
to float rounding). 8 seeds on 8 GPUs is `devices=8, member_shards=8`; 2 seeds x 4-way data
parallel is `devices=8, member_shards=2`. With several processes, `jax.distributed.initialize()`
makes `jax.devices()` global and the same call runs unchanged (see docs/training.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


class Layout(NamedTuple):
    """Where things live: replicated (data set, validation), members ([S, ...] state and
    metrics), batch ([S, batch, ...] gathered batches) and order ([S, steps, batch]); all None on
    one device (the default placement)."""

    mesh: Mesh | None
    replicated: NamedSharding | None
    members: NamedSharding | None
    batch: NamedSharding | None
    order: NamedSharding | None


def make_layout(devices: int, member_shards: int, *, members: int, batch_size: int) -> Layout:
    """The mesh over the first `devices` of `jax.devices()` (0: all): `member_shards` groups along
    'members', the rest along 'data'. On one device every field is None."""
    available = jax.devices()
    count = len(available) if devices == 0 else devices
    if count > len(available):
        raise ValueError(f"devices: expected at most the {len(available)} devices JAX sees, got {devices}")
    if count % member_shards:
        raise ValueError(f"member_shards: expected a divisor of the {count} devices, got {member_shards}")
    if count == 1:
        return Layout(None, None, None, None, None)
    data = count // member_shards
    if members % member_shards:
        raise ValueError(f"keys: expected a multiple of member_shards={member_shards} members, got {members}")
    if batch_size % data:
        raise ValueError(f"batch_size: expected a multiple of the {data} devices of the 'data' axis, got {batch_size}")
    mesh = Mesh(np.asarray(available[:count]).reshape(member_shards, data), ("members", "data"))
    return Layout(
        mesh,
        NamedSharding(mesh, P()),
        NamedSharding(mesh, P("members")),
        NamedSharding(mesh, P("members", "data")),
        NamedSharding(mesh, P("members", None, "data")),
    )


def put(value: Any, sharding: NamedSharding | None) -> Any:
    """`value` (host arrays, a pytree) placed with `sharding`; works when the mesh spans several
    processes (every process passes the same full value)."""
    if sharding is None:
        return jax.device_put(value)
    return jax.tree.map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda idx: np.asarray(a)[idx]), value
    )
