"""The training state: one pytree, so it can be jitted, vmapped over seeds and checkpointed."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._checks import check_seed
from ..nn import Model


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue bit-for-bit.

    params:      the trained parameters (pytree)
    model_state: other variable collections (batch statistics, normalization), dict
    opt_state:   the optimizer's state
    step:        int32 [], optimizer steps taken; the step's key is fold_in(key, step)
    epoch:       int32 [], epochs completed; the epoch's data order is fold_in(data_key, epoch)
    key:         PRNG key for dropout and augmentation
    data_key:    PRNG key for the data order
    """

    params: Any
    model_state: dict
    opt_state: Any
    step: jax.Array
    epoch: jax.Array
    key: jax.Array
    data_key: jax.Array

    @property
    def variables(self) -> dict:
        """The variables `model.apply` takes: params plus model state."""
        return {"params": self.params, **self.model_state}


def as_key(key) -> jax.Array:
    """A typed PRNG key from a typed key, raw uint32 key data or an int seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        check_seed(key, name="key")
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    data = jnp.asarray(key)
    if data.dtype != jnp.uint32:
        raise TypeError(f"key: expected a jax.random.key, raw uint32 key data or an int seed, got dtype {data.dtype}")
    return jax.random.wrap_key_data(data)


def init_state(model: Model, tx: optax.GradientTransformation, example_x: jax.Array, *, key: jax.Array) -> TrainState:
    """A fresh state: parameters from `model.init`, optimizer state, counters at 0, keys split from `key`."""
    k_init, k_step, k_data = jax.random.split(as_key(key), 3)
    variables = dict(model.init(k_init, example_x))
    params = variables.pop("params")
    return TrainState(
        params=params, model_state=variables, opt_state=tx.init(params),
        step=jnp.zeros((), jnp.int32), epoch=jnp.zeros((), jnp.int32), key=k_step, data_key=k_data,
    )
