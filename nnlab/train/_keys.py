"""Random streams: one root key per member, split into named streams that never share bits.

A run's randomness comes from two roots: `key(split_seed)` for the data (the draw of a
synthetic set, the train/validation split), shared by every member of a study so they see
the same data, and one root per member,
`key(seed)`. Each use draws from its own stream, `fold_in(root, stream id)`, with ids that
differ between all streams, so even `seed == split_seed` never lets two uses draw the same
bits. Within a stream, epochs and steps fold in their counter: the data order of epoch e is
`fold_in(data, e)`, the dropout key of step t is `fold_in(dropout, t)`, so a resumed run
repeats the randomness of an uninterrupted one without iterator state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_seed

STREAMS = {"split": 0, "init": 1, "data": 2, "dropout": 3, "augment": 4, "dataset": 5}
"""Named random streams of a member's root key: name -> the number folded into the root key."""
# the streams a training state carries (split and init are used up before training starts)
STEP_STREAMS = ("data", "dropout", "augment")


def as_key(key) -> jax.Array:
    """A typed PRNG key from a typed key, raw uint32 key data [2] or an int seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        check_seed(key, name="key")
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    data = jnp.asarray(key)
    if data.dtype != jnp.uint32:
        raise TypeError(f"key: expected a jax.random.key, raw uint32 key data or an int seed, got dtype {data.dtype}")
    return jax.random.wrap_key_data(data)


def member_keys(keys) -> jax.Array:
    """Typed root keys [S] from a sequence of int seeds or keys, typed keys [S] or raw key data [S, 2]."""
    if isinstance(keys, (list, tuple, range)):
        if not keys:
            raise ValueError("keys: expected at least one key or seed, got an empty sequence")
        return jnp.stack([as_key(k) for k in keys])
    arr = keys if isinstance(keys, jax.Array) else jnp.asarray(keys)
    if not jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        if arr.dtype != jnp.uint32 or arr.ndim != 2:
            raise TypeError(
                f"keys: expected typed keys [S], raw uint32 key data [S, 2] or int seeds, "
                f"got shape {arr.shape} and dtype {arr.dtype}"
            )
        arr = jax.random.wrap_key_data(arr)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"keys: expected a non-empty batch of keys of shape [S], got shape {arr.shape}")
    return arr


def stream(root: jax.Array, name: str) -> jax.Array:
    """The key of stream `name` (one of STREAMS) of the root key `root`."""
    if name not in STREAMS:
        raise ValueError(f"name: expected one of {list(STREAMS)}, got {name!r}")
    return jax.random.fold_in(root, STREAMS[name])


def step_streams(root: jax.Array) -> dict[str, jax.Array]:
    """The streams a training state carries: {'data', 'dropout', 'augment'}."""
    return {name: stream(root, name) for name in STEP_STREAMS}
