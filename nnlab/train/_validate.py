"""Validation on the device: the validation set uploaded once as padded batches, every member
evaluated in one vmapped pass, sums kept on the device until the epoch's report."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def make_validator(eval_batch: Callable, *, scan: bool) -> Callable:
    """validate(variables [S, ...], xb [nb, B, ...], yb, mask [nb, B]) -> float32 [S, 2]
    (loss sum, error count) over the real samples.

    scan: all batches in one `lax.map`, traceable, to be compiled with the rest of the epoch
    (GPU, and CPU models without convolutions); otherwise one compiled call per batch,
    accumulated on the device without a host sync.
    """
    per_batch = jax.vmap(eval_batch, in_axes=(0, None, None, None))

    def batch_at(variables, xb, yb, mask, i):
        return per_batch(variables, *jax.tree.map(lambda a: a[i], (xb, yb)), mask[i])

    if scan:

        def run(variables, xb, yb, mask):
            return jnp.sum(
                jax.lax.map(lambda i: batch_at(variables, xb, yb, mask, i), jnp.arange(mask.shape[0])), axis=0
            )

        return run

    accumulate = jax.jit(
        lambda acc, variables, xb, yb, mask, i: acc + batch_at(variables, xb, yb, mask, i), donate_argnums=0
    )

    def run(variables, xb, yb, mask):
        acc = jnp.zeros((jax.tree.leaves(variables)[0].shape[0], 2), jnp.float32)
        for i in range(mask.shape[0]):
            acc = accumulate(acc, variables, xb, yb, mask, i)
        return acc

    return run
