"""A 2-D convolution whose kernel gradient is one matrix product on CPU.

XLA:CPU computes a convolution's kernel gradient as a convolution with the batch as the
contracted feature and the output map as the kernel, far below its matrix-product rate: in
the Flax example CNN (batch 128) the 32 -> 64 convolution's kernel gradient took 72 ms, its
forward pass 17 ms, a matrix product of the same size 12 ms (benchmarks/README.md).

`conv_general_dilated` is `lax.conv_general_dilated` with its own JVP: the kernel's tangent is
patches(x) @ w_t, so reverse mode transposes it into patches(x)^T @ cotangent, one matrix
product. The patches are rebuilt in the backward pass (`jax.checkpoint`), never stored, and
only on CPU; other platforms, and convolutions other than NHWC x HWIO with one group and no
dilation, keep lax's own rule. Forward values are lax's; gradients agree to float rounding.
With XLA's optimisations off (`jax_disable_most_optimizations`, a debugging switch) lax's rule
is kept too: there XLA:CPU (jax 0.10.2) returned non-finite kernel gradients for the vmapped
detector backbone of tests/test_detect_models.py with this rule.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
Pair = tuple[int, int]
Pads = tuple[Pair, ...]


def _patches(x: jax.Array, window: Pair, strides: Pair, pads: Pads, out: Pair) -> jax.Array:
    """x: [b, h, w, c] -> [b, out_h, out_w, kh * kw * c], the input under every output pixel,
    taps in the kernel's HWIO order."""
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    (b, _, _, c), (kh, kw), (sh, sw), (oh, ow) = xp.shape, window, strides, out
    taps = [
        lax.slice(xp, (0, i, j, 0), (b, i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1, c), (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(taps, axis=-1)


def _plain(x: jax.Array, w: jax.Array, strides: Pair, pads: Pads, precision: Any) -> jax.Array:
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC, precision=precision)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _conv(x: jax.Array, w: jax.Array, strides: Pair, pads: Pads, precision: Any) -> jax.Array:
    return _plain(x, w, strides, pads, precision)


@_conv.defjvp
def _conv_jvp(
    strides: Pair, pads: Pads, precision: Any, primals: tuple[jax.Array, ...], tangents: tuple[jax.Array, ...]
) -> tuple[jax.Array, jax.Array]:
    (x, w), (tx, tw) = primals, tangents
    y = _plain(x, w, strides, pads, precision)

    @jax.checkpoint
    def by_matmul(x: jax.Array, tw: jax.Array) -> jax.Array:
        p = _patches(x, (w.shape[0], w.shape[1]), strides, pads, (y.shape[1], y.shape[2]))
        return lax.dot_general(p, tw.reshape(-1, w.shape[3]), (((3,), (0,)), ((), ())), precision=precision)

    kernel_tangent = lax.platform_dependent(
        x, tw, cpu=by_matmul, default=lambda x, tw: _plain(x, tw, strides, pads, precision)
    )
    return y, _plain(tx, w, strides, pads, precision) + kernel_tangent


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[Pair],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """`lax.conv_general_dilated` (same arguments and values) with the kernel gradient as a
    matrix product on CPU where it applies: 2-D, NHWC x HWIO, one group, no dilation."""
    applies = (
        lhs.ndim == 4
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
        and feature_group_count == 1
        and batch_group_count == 1
        and preferred_element_type is None
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and lhs.dtype == rhs.dtype
        and not jax.config.values["jax_disable_most_optimizations"]
    )
    if applies:
        strides = (int(window_strides[0]), int(window_strides[1]))
        given = (
            lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
            if isinstance(padding, str)
            else padding
        )
        pads: Pads = tuple((int(lo), int(hi)) for lo, hi in given)
        if all(p >= 0 for pair in pads for p in pair):
            return _conv(lhs, rhs, strides, pads, precision)
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
