"""Mixed precision: compute in bfloat16 while parameters, optimizer state and loss stay float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..nn import Model


def cast_floating(tree, dtype):
    """`tree` with every floating-point leaf cast to `dtype` (integer leaves and keys unchanged)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def with_compute_dtype(model: Model, compute_dtype: str) -> Model:
    """`model` computing in `compute_dtype`: variables and inputs are cast on the way in, outputs
    and model-state updates back to float32 on the way out, so the loss is float32 and the
    gradients reach the float32 parameters through the casts. 'float32' returns `model` itself."""
    if compute_dtype == "float32":
        return model
    dtype = jnp.dtype(compute_dtype)

    def apply(variables, x, *, train: bool, key: jax.Array | None = None):
        outputs, updates = model.apply(cast_floating(variables, dtype), cast_floating(x, dtype), train=train, key=key)
        return outputs.astype(jnp.float32), cast_floating(updates, jnp.float32)

    return model._replace(apply=apply)
