"""The training state: one pytree with a leading member axis, jitted, vmapped and checkpointed whole."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from ..nn import Model
from ._keys import member_keys, step_streams, stream


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue bit for bit. In `fit_many` every leaf has a leading
    member axis [S, ...]; `fit` returns member 0 with the axis squeezed.

    params:      the trained parameters (pytree)
    model_state: other variable collections (batch statistics, normalization), dict
    opt_state:   the optimizer's state (per-member hyperparameters live here, see `make_tx`)
    step:        int32 [], optimizer steps taken; the step's keys are fold_in(stream, step)
    epoch:       int32 [], epochs completed; the epoch's data order is fold_in(rng['data'], epoch)
    rng:         {'data', 'dropout', 'augment'}: the member's named random streams
    """

    params: Any
    model_state: dict
    opt_state: Any
    step: jax.Array
    epoch: jax.Array
    rng: dict

    @property
    def variables(self) -> dict:
        """The variables `model.apply` takes: params plus model state."""
        return {"params": self.params, **self.model_state}


def init_state(model: Model, tx: optax.GradientTransformation, example_x: jax.Array, *, key: jax.Array) -> TrainState:
    """A fresh state of one member from its root key: parameters from the 'init' stream, the
    optimizer's state, counters at 0 and the step streams."""
    variables = dict(model.init(stream(key, "init"), example_x))
    params = variables.pop("params")
    return TrainState(
        params=params,
        model_state=variables,
        opt_state=tx.init(params),
        step=jnp.zeros((), jnp.int32),
        epoch=jnp.zeros((), jnp.int32),
        rng=step_streams(key),
    )


def init_members(model: Model, tx: optax.GradientTransformation, example_x: jax.Array, *, keys) -> TrainState:
    """S fresh states stacked on a leading axis; member i is `init_state(..., key=keys[i])`.

    keys: int seeds, typed keys [S] or raw key data [S, 2] (see `member_keys`).
    """
    return jax.vmap(lambda k: init_state(model, tx, example_x, key=k))(member_keys(keys))


def member(tree, i: int):
    """Member i of a stacked pytree (every leaf [S, ...] -> [...])."""
    return jax.tree.map(lambda a: a[i], tree)


def _stack_leaves(*leaves) -> jax.Array:
    """A fresh array [S, ...]; PRNG keys go through their key data, so the callers' keys stay unconsumed."""
    if isinstance(leaves[0], jax.Array) and jnp.issubdtype(leaves[0].dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(
            jnp.stack([jax.random.key_data(k) for k in leaves]), impl=jax.random.key_impl(leaves[0])
        )
    return jnp.stack(leaves)


def stack(trees: list):
    """Pytrees of one member each stacked into one with a leading member axis [S, ...] (fresh arrays)."""
    return jax.tree.map(_stack_leaves, *trees)


def copy(tree):
    """A copy of `tree` with fresh arrays (so donating them never deletes the caller's)."""
    return jax.tree.map(lambda a: _stack_leaves(a)[0], tree)
