"""The model contract: a pair of pure functions over plain pytrees (and, for models with
structured targets, their own training objective)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

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
    objective: None for classifiers (the trainer takes the loss named in its config), or
      objective(variables, x, targets, *, train, key) -> (loss [batch], errors [batch] or None,
      updates) for models whose targets are structured (a pytree of arrays with a leading
      batch axis, e.g. boxes and masks): per-sample loss, per-sample error indicator (None when
      the task has no error rate; early stopping then follows the validation loss) and updates.
    """

    init: Callable[[jax.Array, jax.Array], Variables]
    apply: Callable[..., tuple[jax.Array, Variables]]
    input_shape: tuple[int, ...] | None = None
    name: str = "model"
    objective: Callable[..., tuple[jax.Array, jax.Array | None, Variables]] | None = None


def from_linen(module: nn.Module, *, input_shape: tuple[int, ...] | None = None, name: str | None = None) -> Model:
    """Adapts a Flax Linen module whose `__call__(x, *, train)` gives outputs [batch, classes].

    Collections other than 'params' (such as 'batch_stats') are mutable while training;
    the module's `nn.Dropout` draws from the 'dropout' stream, fed by `key`. `init` splits
    its key into separate 'params' and 'dropout' keys.
    """

    def init(key: jax.Array, x: jax.Array) -> Variables:
        k_params, k_dropout = jax.random.split(key)
        return dict(module.init({"params": k_params, "dropout": k_dropout}, x, train=False))

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

    def inner(variables: Variables) -> Variables:
        return {k: v for k, v in variables.items() if k != "normalization"}

    def init(key: jax.Array, x: jax.Array) -> Variables:
        return {**model.init(key, normalization(x)), "normalization": normalization}

    def apply(variables: Variables, x: jax.Array, *, train: bool, key: jax.Array | None = None):
        return model.apply(inner(variables), variables["normalization"](x), train=train, key=key)

    objective = None
    if model.objective is not None:

        def objective(variables: Variables, x: jax.Array, targets, *, train: bool, key: jax.Array | None = None):
            return model.objective(inner(variables), variables["normalization"](x), targets, train=train, key=key)

    return model._replace(init=init, apply=apply, objective=objective)
