"""Equinox models as nnlab models: the model partitioned into its floating-point arrays (the
parameters) and the rest, with `eqx.nn.State` as model state, recombined inside every `apply`."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._model import Model, Variables


def _eqx():
    """equinox, imported on first use: it is an optional extra."""
    try:
        import equinox
    except ImportError as e:
        raise ImportError("from_equinox needs Equinox, an optional extra: pip install 'nnlab[equinox]'") from e
    return equinox


def _is_param(leaf) -> bool:
    """A floating-point array (concrete or abstract): what the optimizer trains."""
    return isinstance(leaf, (jax.Array, np.ndarray, jax.ShapeDtypeStruct)) and jnp.issubdtype(leaf.dtype, jnp.inexact)


def _build(model_factory: Callable, key: jax.Array):
    """(model, state) as `eqx.nn.make_with_state(model_factory)(key)` gives them (state empty when stateless)."""
    eqx = _eqx()
    model, state = eqx.nn.make_with_state(model_factory)(key)
    if not isinstance(model, eqx.Module):
        raise TypeError(
            f"model_factory: expected a function key -> eqx.Module, got one returning {type(model).__name__}"
        )
    return model, state


class _Parts(NamedTuple):
    """What `apply` needs besides the variables, read once from an abstract (shape-only) model."""

    as_built: Any  # the model's non-parameter part as the factory builds it
    train: Any  # ... with every `inference` flag False (dropout on, batch norm with batch statistics)
    eval: Any  # ... with every `inference` flag True (eqx.nn.inference_mode)
    params: Any  # the parameters' shapes (jax.ShapeDtypeStruct leaves)
    state: Any  # the eqx.nn.State's shapes, None for a stateless model
    name: str


def _parts(model_factory: Callable) -> _Parts:
    eqx = _eqx()
    model, state = eqx.filter_eval_shape(_build, model_factory, jax.random.key(0))
    params, static = eqx.partition(model, _is_param)
    other = [
        jax.tree_util.keystr(p)
        for p, leaf in jax.tree_util.tree_leaves_with_path(static)
        if isinstance(leaf, jax.ShapeDtypeStruct)
    ]
    if other:
        raise TypeError(
            f"model_factory: expected a model whose arrays are all floating point (its parameters), "
            f"got other arrays at {other}; keep them out of the model or mark them eqx.field(static=True)"
        )
    stateful = bool(jax.tree.leaves(state))
    return _Parts(
        static,
        eqx.nn.inference_mode(static, value=False),
        eqx.nn.inference_mode(static, value=True),
        params,
        state if stateful else None,
        type(model).__name__,
    )


def from_equinox(
    model_factory: Callable,
    *,
    input_shape: tuple[int, ...] | None = None,
    name: str | None = None,
    axis_name: Hashable = "batch",
) -> Model:
    """Adapts an Equinox model, built by `model_factory(key)`, that maps ONE sample
    x: [*input_shape] to outputs [classes], called `model(x, key=k)`, or `model(x, state, key=k)
    -> (outputs, state)` when it has stateful layers (eqx.nn.BatchNorm(..., axis_name=axis_name)).

    init(key, x) builds `eqx.nn.make_with_state(model_factory)(key)`; variables['params'] is the
    model's floating-point arrays (`eqx.partition(model, eqx.is_inexact_array)`, a model-shaped
    pytree with None elsewhere), variables['state'] its `eqx.nn.State` (stateful models only).
    apply(variables, x, *, train, key) vmaps the model over the batch x: [batch, *input_shape]
    with `axis_name`, sample i drawing from `jax.random.split(key, batch)[i]`; in training every
    `inference` flag is False and the new state is returned as updates; in evaluation the model is in
    `eqx.nn.inference_mode` and, without a key, gets a fixed one (key 0; inference mode draws nothing).
    """
    eqx = _eqx()
    parts = _parts(model_factory)

    def init(key: jax.Array, x: jax.Array) -> Variables:
        del x
        model, state = _build(model_factory, key)
        params = eqx.filter(model, _is_param)
        return {"params": params} if parts.state is None else {"params": params, "state": state}

    def apply(variables: Variables, x: jax.Array, *, train: bool, key: jax.Array | None = None):
        if key is None:
            if train:
                raise ValueError("key: expected the step's PRNG key to train an Equinox model, got None")
            key = jax.random.key(0)
        model = eqx.combine(variables["params"], parts.train if train else parts.eval)
        keys = jax.random.split(key, x.shape[0])
        if parts.state is None:
            return jax.vmap(lambda xi, k: model(xi, key=k), axis_name=axis_name)(x, keys), {}
        outputs, state = jax.vmap(
            lambda xi, s, k: model(xi, s, key=k), in_axes=(0, None, 0), out_axes=(0, None), axis_name=axis_name
        )(x, variables["state"], keys)
        return outputs, ({"state": state} if train else {})

    return Model(init, apply, input_shape, name or parts.name)


def _check_like(tree, spec, name: str) -> None:
    """Raises ValueError unless `tree` has the structure and leaf shapes of `spec`."""
    got, want = jax.tree_util.tree_flatten_with_path(tree), jax.tree_util.tree_flatten_with_path(spec)
    if got[1] != want[1]:
        raise ValueError(f"{name}: expected the model's structure {want[1]}, got {got[1]}")
    wrong = [
        f"{jax.tree_util.keystr(p)}: {tuple(jnp.shape(a))} (model {s.shape})"
        for (p, a), (_, s) in zip(got[0], want[0], strict=True)
        if tuple(jnp.shape(a)) != s.shape
    ]
    if wrong:
        raise ValueError(
            f"{name}: expected one model's variables with the model's shapes "
            f"(pick one member of a seed study first), got {wrong[:4]}"
        )


def to_equinox(model_factory: Callable, variables: Variables):
    """The user's own Equinox model holding `variables` (one model's, e.g. `fit(...).variables`),
    as `eqx.nn.make_with_state(model_factory)(key)` returns it: `(model, state)` for a stateful
    model, else `model`; in training mode as built (`eqx.nn.inference_mode(model)` to evaluate)."""
    eqx = _eqx()
    parts = _parts(model_factory)
    want = {"params"} if parts.state is None else {"params", "state"}
    if not isinstance(variables, dict) or set(variables) != want:
        got = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
        raise ValueError(f"variables: expected the collections {sorted(want)}, got {got}")
    _check_like(variables["params"], parts.params, "variables['params']")
    model = eqx.combine(jax.tree.map(jnp.asarray, variables["params"]), parts.as_built)
    if parts.state is None:
        return model
    _check_like(variables["state"], parts.state, "variables['state']")
    return model, jax.tree.map(jnp.asarray, variables["state"])
