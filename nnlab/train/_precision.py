"""Mixed precision the Flax ImageNet example's way: the parameters and the inputs are cast to
bfloat16 for the forward and backward pass; everything else stays float32 (the parameters
themselves and the optimizer state, BatchNorm's running statistics, the input-normalization
statistics, the loss)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..nn import Model


def cast_floating(tree, dtype):
    """`tree` with every floating-point leaf cast to `dtype` (integer leaves and keys unchanged)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def with_compute_dtype(model: Model, compute_dtype: str) -> Model:
    """`model` computing in `compute_dtype`: `variables['params']` and the inputs are cast on the
    way in (other collections are left as they are), outputs and losses come back float32, so
    the gradients reach the float32 parameters through the casts. 'float32' returns `model`."""
    if compute_dtype == "float32":
        return model
    dtype = jnp.dtype(compute_dtype)

    def cast_in(variables, x):
        return {**variables, "params": cast_floating(variables["params"], dtype)}, cast_floating(x, dtype)

    def apply(variables, x, *, train: bool, key: jax.Array | None = None):
        outputs, updates = model.apply(*cast_in(variables, x), train=train, key=key)
        return cast_floating(outputs, jnp.float32), updates

    objective = None
    if model.objective is not None:

        def objective(variables, x, targets, *, train: bool, key: jax.Array | None = None):
            loss, errors, updates = model.objective(*cast_in(variables, x), targets, train=train, key=key)
            return loss.astype(jnp.float32), errors, updates

    return model._replace(apply=apply, objective=objective)
