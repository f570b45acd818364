"""The model contract: a pair of pure functions over plain pytrees."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax

Variables = dict[str, Any]


class Model(NamedTuple):
    """What nnlab trains.

    init(key, x) -> variables: a dict of pytrees; `variables['params']` is what the
      optimizer changes, other collections (e.g. 'batch_stats') are model state.
    apply(variables, x, *, train, key) -> (outputs, updates): outputs [batch, classes];
      `updates` holds the new values of model-state collections (empty for stateless models).
    input_shape: the shape of one sample, e.g. (28, 28, 1); None accepts any.
    """

    init: Callable[[jax.Array, jax.Array], Variables]
    apply: Callable[..., tuple[jax.Array, Variables]]
    input_shape: tuple[int, ...] | None = None
    name: str = "model"


def from_linen(module: nn.Module, *, input_shape: tuple[int, ...] | None = None, name: str | None = None) -> Model:
    """Adapts a Flax Linen module whose `__call__(x, *, train)` gives outputs [batch, classes].

    Collections other than 'params' (such as 'batch_stats') are mutable while training;
    the module's `nn.Dropout` draws from the 'dropout' stream, fed by `key`.
    """

    def init(key: jax.Array, x: jax.Array) -> Variables:
        return dict(module.init({"params": key, "dropout": key}, x, train=False))

    def apply(variables: Variables, x: jax.Array, *, train: bool, key: jax.Array | None = None):
        rngs = {"dropout": key} if key is not None else {}
        mutable = [c for c in variables if c != "params"] if train else False
        if mutable:
            out, updates = module.apply(variables, x, train=train, rngs=rngs, mutable=mutable)
            return out, dict(updates)
        return module.apply(variables, x, train=train, rngs=rngs), {}

    return Model(init, apply, input_shape, name or type(module).__name__)


def with_normalization(model: Model, normalization) -> Model:
    """`model` applied to normalized inputs; the statistics travel in `variables['normalization']`
    so that a saved or restored model classifies with exactly the numbers it was trained with."""

    def init(key: jax.Array, x: jax.Array) -> Variables:
        return {**model.init(key, normalization(x)), "normalization": normalization}

    def apply(variables: Variables, x: jax.Array, *, train: bool, key: jax.Array | None = None):
        inner = {k: v for k, v in variables.items() if k != "normalization"}
        return model.apply(inner, variables["normalization"](x), train=train, key=key)

    return model._replace(init=init, apply=apply)
