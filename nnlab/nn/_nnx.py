"""Flax NNX modules as nnlab models: the module split into a static graph and plain variable
collections at init, merged back inside every `apply`, so the trainer sees pure functions over pytrees."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import traverse_util

from ._model import Model, Variables


def _nnx():
    """flax.nnx, imported on first use (a clear error where the installed Flax has no NNX)."""
    try:
        from flax import nnx
    except ImportError as e:  # pragma: no cover - flax>=0.12 ships nnx
        raise ImportError("from_nnx needs Flax NNX (flax>=0.12): pip install 'nnlab[nnx]'") from e
    return nnx


def _rngs(key: jax.Array, streams: Sequence[str]):
    """The `nnx.Rngs` that `init` hands the factory: params=k0 and stream i = k(i+1), from split(key)."""
    nnx = _nnx()
    keys = jax.random.split(key, 1 + len(streams))
    return nnx.Rngs(params=keys[0], **{s: keys[i + 1] for i, s in enumerate(streams)})


def _stream_keys(key: jax.Array, streams: Sequence[str]) -> dict[str, jax.Array]:
    """The step's key for each stream: `key` itself for one stream, split(key, n) in order for several."""
    if len(streams) == 1:
        return {streams[0]: key}
    return dict(zip(streams, jax.random.split(key, len(streams)), strict=True))


def _collection(var_type: type) -> str | None:
    """The variable collection of an NNX Variable type: 'params' for nnx.Param (and subclasses), None
    for RNG state (rebuilt from the step's key), else NNX's Linen-style name ('batch_stats', ...)."""
    nnx = _nnx()
    if issubclass(var_type, nnx.Param):
        return "params"
    if issubclass(var_type, nnx.RngState):
        return None
    return nnx.variable_name_from_type(var_type, allow_register=True)


def _collections(module) -> tuple[Variables, dict]:
    """(variables: {collection: nested dict of arrays}, rng: {path: RngKey/RngCount value}) of `module`."""
    nnx = _nnx()
    groups: dict[str, dict] = {}
    rng: dict = {}
    loose = []
    for path, var in nnx.to_flat_state(nnx.state(module)):
        if not isinstance(var, nnx.Variable):
            loose.append("/".join(map(str, path)))
            continue
        name = _collection(type(var))
        (rng if name is None else groups.setdefault(name, {}))[path] = var.get_value()
    if loose:
        raise TypeError(
            f"module_factory: expected a module whose arrays are nnx.Variables (nnx.Param, "
            f"nnx.BatchStat, ...), got plain array attributes at {loose}"
        )
    return {name: traverse_util.unflatten_dict(flat) for name, flat in groups.items()}, rng


class _Graph(NamedTuple):
    """What `apply` needs besides the variables, read once from an abstract (shape-only) module."""

    as_built: Any  # nnx.GraphDef of the module as the factory builds it
    train: Any  # ... after module.train() (dropout on, batch norm with batch statistics)
    eval: Any  # ... after module.eval() (dropout off, batch norm with running statistics)
    rng: dict  # {path: jax.ShapeDtypeStruct} of the module's RNG keys and counts
    shapes: Variables  # {collection: nested dict of jax.ShapeDtypeStruct}
    tags: frozenset  # the RNG stream tags the module keeps
    name: str  # the module's class name


def _graph(module_factory: Callable, streams: Sequence[str]) -> _Graph:
    nnx = _nnx()
    module = nnx.eval_shape(lambda: module_factory(_rngs(jax.random.key(0), streams)))
    if not isinstance(module, nnx.Module):
        raise TypeError(
            f"module_factory: expected a function rngs -> nnx.Module, got one returning {type(module).__name__}"
        )
    shapes, rng = _collections(module)
    if "params" not in shapes:
        raise ValueError("module_factory: expected a module with nnx.Param variables, got one without parameters")
    tags = frozenset(v.tag for _, v in nnx.to_flat_state(nnx.state(module, nnx.RngState)))
    as_built = nnx.graphdef(module)
    module.train()
    train = nnx.graphdef(module)
    module.eval()
    return _Graph(as_built, train, nnx.graphdef(module), rng, shapes, tags, type(module).__name__)


def _rng_values(graph: _Graph) -> dict:
    """Placeholder RNG keys (key 0) and counts for `nnx.merge`; `nnx.reseed` replaces the driven streams."""
    flat = {}
    for path, spec in graph.rng.items():
        if jnp.issubdtype(spec.dtype, jax.dtypes.prng_key):
            flat[path] = jnp.broadcast_to(jax.random.key(0), spec.shape)
        else:
            flat[path] = jnp.zeros(spec.shape, spec.dtype)
    return traverse_util.unflatten_dict(flat) if flat else {}


def _merge(graphdef, graph: _Graph, variables: Variables):
    nnx = _nnx()
    return nnx.merge(graphdef, *[variables[c] for c in graph.shapes], _rng_values(graph))


def _streams(rng_streams: Sequence[str]) -> tuple[str, ...]:
    streams = () if isinstance(rng_streams, str) else tuple(rng_streams)
    if not streams or not all(isinstance(s, str) for s in streams) or "params" in streams:
        raise ValueError(f"rng_streams: expected a sequence of stream names other than 'params', got {rng_streams!r}")
    return streams


def _check_streams(graph: _Graph, streams: Sequence[str]) -> None:
    undriven = sorted(graph.tags - set(streams) - {"params"})
    if undriven:
        raise ValueError(
            f"rng_streams: expected every RNG stream the module keeps to be named, got "
            f"{list(streams)} while the module keeps {sorted(graph.tags)}"
        )


def from_nnx(
    module_factory: Callable,
    *,
    input_shape: tuple[int, ...] | None = None,
    name: str | None = None,
    rng_streams: Sequence[str] = ("dropout",),
) -> Model:
    """Adapts a Flax NNX module, built by `module_factory(rngs)`, whose `__call__(x)` maps
    x: [batch, *input_shape] to outputs [batch, classes].

    init(key, x) builds `module_factory(nnx.Rngs(params=k0, dropout=k1))` with k0, k1 = split(key)
    and returns its variables as plain nested dicts: `nnx.Param` -> 'params', every other
    `nnx.Variable` type -> its NNX collection name ('batch_stats' for `nnx.BatchStat`); RNG
    state is not stored. apply(variables, x, *, train, key) merges them into the module in
    training (`module.train()`) or evaluation mode (`module.eval()`); in training it reseeds the
    module's RNG streams with the step's key, `nnx.reseed(module, dropout=key)` (several streams:
    `split(key, n)` in the order of `rng_streams`), and returns the new values of the non-params
    collections as updates. x is not used by init (NNX modules know their shapes).
    """
    streams = _streams(rng_streams)
    graph = _graph(module_factory, streams)
    _check_streams(graph, streams)

    def init(key: jax.Array, x: jax.Array) -> Variables:
        del x
        return _collections(module_factory(_rngs(key, streams)))[0]

    def apply(variables: Variables, x: jax.Array, *, train: bool, key: jax.Array | None = None):
        module = _merge(graph.train if train else graph.eval, graph, variables)
        if train and graph.tags - {"params"}:
            if key is None:
                raise ValueError(
                    f"key: expected the step's PRNG key to train a module with RNG streams "
                    f"{sorted(graph.tags)}, got None"
                )
            _nnx().reseed(module, **_stream_keys(key, streams))
        outputs = module(x)
        if not train:
            return outputs, {}
        new = _collections(module)[0]
        return outputs, {c: new[c] for c in graph.shapes if c != "params"}

    return Model(init, apply, input_shape, name or graph.name)


def _check_like(variables: Variables, shapes: Variables, name: str) -> None:
    """Raises ValueError unless `variables` holds exactly the collections, paths and shapes of `shapes`."""
    if not isinstance(variables, dict) or set(variables) != set(shapes):
        got = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
        raise ValueError(f"{name}: expected the collections {sorted(shapes)}, got {got}")
    for c, tree in shapes.items():
        want = {k: v.shape for k, v in traverse_util.flatten_dict(tree).items()}
        got = {k: tuple(jnp.shape(v)) for k, v in traverse_util.flatten_dict(variables[c]).items()}
        if want != got:
            diff = sorted(
                f"{'/'.join(map(str, k))}: {got.get(k)} (module {want.get(k)})"
                for k in set(want) | set(got)
                if want.get(k) != got.get(k)
            )
            raise ValueError(
                f"{name}[{c!r}]: expected one model's variables with the module's shapes "
                f"(pick one member of a seed study first), got {diff[:4]}"
            )


def to_nnx(
    module_factory: Callable,
    variables: Variables,
    *,
    key: jax.Array | None = None,
    rng_streams: Sequence[str] = ("dropout",),
):
    """The user's own NNX module (as `module_factory` builds it) holding `variables` (one model's,
    e.g. `fit(...).variables`), for use outside nnlab: `module.eval(); module(x)`.

    Its RNG streams are seeded `nnx.reseed(module, dropout=key)` (key default: jax.random.key(0)).
    """
    nnx = _nnx()
    streams = _streams(rng_streams)
    graph = _graph(module_factory, streams)
    if isinstance(variables, dict):  # digit keys of lists come back as strings from a checkpoint read without template
        variables = {c: nnx.restore_int_paths(v) for c, v in variables.items()}
    _check_like(variables, graph.shapes, "variables")
    module = _merge(graph.as_built, graph, {c: jax.tree.map(jnp.asarray, variables[c]) for c in graph.shapes})
    if graph.tags - {"params"}:
        nnx.reseed(module, **_stream_keys(jax.random.key(0) if key is None else key, streams))
    return module
