"""The lecture's cost model: parameters and multiply-accumulate operations, layer by layer.

A k x k convolution from L0 to L1 channels producing an r x c map has
    weights    = k^2 * L0 * L1        (+ L1 biases)
    operations = k^2 * r * c * L0 * L1  multiply-accumulates,
a dense layer from n to m units n * m weights (+ m biases) and n * m operations.
Shapes come from `jax.eval_shape`, so nothing is computed and no memory is allocated.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..report import count_params, format_table
from ._layers import AvgPool, Dropout, GlobalAvgPool, MaxPool
from ._linen import PReLU
from ._model import Model, from_linen

_LAYERS = (nn.Conv, nn.ConvTranspose, nn.Dense, nn.BatchNorm, MaxPool, AvgPool, GlobalAvgPool, Dropout, PReLU)


class LayerCost(NamedTuple):
    """One layer: its path in the module tree, type, output shape of one sample, parameters, MACs."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


class Summary(NamedTuple):
    """Per-layer costs and the totals (params counts every parameter of the model)."""

    layers: list[LayerCost]
    params: int
    macs: int

    def table(self) -> str:
        """The per-layer table (layer, type, output shape, parameters, MACs) with totals, as text."""
        rows = [
            {
                "layer": c.name,
                "type": c.kind,
                "output": "x".join(map(str, c.output_shape)),
                "params": f"{c.params:,}",
                "MACs": f"{c.macs:,}",
            }
            for c in self.layers
        ]
        rows.append(
            {"layer": "total", "type": "", "output": "", "params": f"{self.params:,}", "MACs": f"{self.macs:,}"}
        )
        return format_table(rows)


def _macs(module: nn.Module, x: jax.Array, y: jax.Array, kernel_shape: tuple[int, ...] | None) -> int:
    """Multiply-accumulates of one sample through `module` (x, y: batched input and output)."""
    if kernel_shape is None:
        return 0
    # Conv: kernel [k, k, L0 / groups, L1], k^2 * r * c * L0 * L1 / groups; Dense: n * m per position
    if isinstance(module, (nn.Conv, nn.Dense)):
        return math.prod(kernel_shape) * math.prod(y.shape[1:-1])
    if isinstance(module, nn.ConvTranspose):  # every input pixel spreads over k x k outputs
        return math.prod(kernel_shape) * math.prod(x.shape[1:-1])
    return 0


def _trace(model: Model, x: jax.ShapeDtypeStruct) -> tuple[dict, list[LayerCost]]:
    """The model's variables (as shapes) and the costs of the Linen layers it calls.

    One trace only: `jax.eval_shape` caches traces, so a second one would not run the interceptor.
    """
    costs: list[LayerCost] = []

    def record(next_fun, args, kwargs, context):
        y = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name == "__call__" and isinstance(module, _LAYERS):
            params = module.variables.get("params", {})
            kernel = params.get("kernel")
            costs.append(
                LayerCost(
                    "/".join(module.path) or type(module).__name__,
                    type(module).__name__,
                    tuple(y.shape[1:]),
                    count_params(params),
                    _macs(module, args[0], y, None if kernel is None else tuple(kernel.shape)),
                )
            )
        return y

    with nn.intercept_methods(record):
        variables = jax.eval_shape(lambda key, x: model.init(key, x), jax.random.key(0), x)
    return variables, costs


def _functional_costs(params) -> list[LayerCost]:
    """Layers of the functional MLP: a list of {'W': [out, in], 's': [out], ...}."""
    costs = []
    for i, layer in enumerate(params if isinstance(params, (list, tuple)) else []):
        if isinstance(layer, dict) and "W" in layer:
            n_out, n_in = layer["W"].shape
            costs.append(LayerCost(f"layer{i + 1}", "dense", (n_out,), count_params(layer), n_out * n_in))
    return costs


def summary(model: Model | nn.Module, input_shape: tuple[int, ...] | None = None, *, show: bool = True) -> Summary:
    """Output shape, parameters and multiply-accumulate operations of every layer of `model`
    for one sample of `input_shape` (default: `model.input_shape`); prints the table if `show`.

    model: an nnlab `Model` or a Flax Linen module whose `__call__(x, *, train)` it adapts.
    """
    if isinstance(model, nn.Module):
        model = from_linen(model, input_shape=input_shape)
    if not isinstance(model, Model):
        raise TypeError(f"model: expected an nnlab Model or a Flax Linen module, got {type(model).__name__}")
    shape = input_shape if input_shape is not None else model.input_shape
    if shape is None or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"input_shape: expected the shape of one sample such as (28, 28, 1), got {shape!r}")
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    variables, layers = _trace(model, x)
    layers = layers or _functional_costs(variables["params"])
    result = Summary(layers, count_params(variables["params"]), sum(c.macs for c in layers))
    if show:
        print(result.table())
    return result
