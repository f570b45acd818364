"""Stopping a diverged run: a non-finite loss or parameter ends training at that epoch."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or non-finite parameters; the message names the
    epoch and the likely cause. Nothing of that epoch is kept: it is never the best epoch
    and is never checkpointed."""


@jax.jit
def all_finite(tree) -> jax.Array:
    """bool []: every leaf of `tree` is free of NaN and Inf."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def check_finite(epoch: int, record: dict, params, *, learning_rate: float | None) -> None:
    """Raises DivergenceError when the epoch's training or validation loss, or a parameter, is not finite."""
    bad = [f"{name} {record[name]}" for name in ("train_loss", "val_loss")
           if record.get(name) is not None and not math.isfinite(record[name])]
    if not bool(all_finite(params)):
        bad.append("non-finite parameters")
    if bad:
        rate = f"learning rate {learning_rate:g}" if learning_rate is not None else "learning rate"
        raise DivergenceError(
            f"epoch {epoch}: training diverged ({', '.join(bad)}); likely cause: the {rate} is too large for this "
            f"model and data (or the inputs are far from unit scale); try a smaller one. Epoch {epoch} was not kept")
