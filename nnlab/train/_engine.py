"""How an epoch of steps runs on the device (the loop strategy), for S members at once.

Every strategy runs the same vmapped step on device-resident data (batches gathered by index
from the epoch's order [S, steps, batch], metrics summed on the device, state buffers
donated) and returns to the host once per epoch:

- 'step':   one compiled call per batch, dispatched from a Python loop;
- 'unroll': `unroll` steps unrolled into one compiled call (the remainder in a shorter one);
- 'scan':   the whole epoch as one compiled `lax.scan` over the order's steps (its `xs`).

'auto' takes 'scan' on GPUs and TPUs, where it removes the per-step launch and dispatch
cost. On a CPU it takes 'scan' too when the step has no convolution, and otherwise 'unroll':
XLA:CPU runs a convolution inside a loop about 17-23x slower than dispatched per step, while
chunks of 8 unrolled steps took 0.7x the per-step time (benchmarks/README.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from ._state import TrainState

Step = Callable[..., tuple[TrainState, jax.Array]]
# (state, metrics, active, x_all, y_all, idx) -> (state, metrics): `members_step`'s result
MembersStep = Callable[..., tuple[TrainState, jax.Array]]
# (state, active, x_all, y_all, order) -> (state, metrics): an engine's `run`
EpochRun = Callable[..., tuple[TrainState, jax.Array]]


class Engine(NamedTuple):
    """name: the strategy taken; run(state, active, x_all, y_all, order) -> (state, metrics).

    state: stacked [S, ...]; active: bool [S] (stopped members keep their state);
    order: int32 [S, steps, batch]; metrics: float32 [S, 3] (loss sum, error count, sample
    count) of the epoch, on the device. traced: `run` is a traceable function, meant to be
    compiled into one program with the rest of the epoch ('scan'); otherwise it dispatches
    compiled calls itself and donates `state`.
    """

    name: str
    run: EpochRun
    traced: bool = False


def step_has_convolution(fn: Callable[..., Any], *args: Any) -> bool:
    """Whether `fn(*args)` computes a convolution, read off its printed jaxpr (nested calls
    included); traced only, nothing runs."""
    return "conv_general_dilated" in str(jax.make_jaxpr(fn)(*args))


def pick_engine(engine: str, platform: str, *, convolution: bool = True) -> str:
    """The strategy 'auto' stands for on `platform` ('cpu', 'gpu', 'tpu'); others are kept."""
    if engine != "auto":
        return engine
    return "unroll" if platform == "cpu" and convolution else "scan"


def mask_members(active: jax.Array, new: Any, old: Any) -> Any:
    """Leaves of `new` for active members, of `old` for stopped ones (PRNG keys never change in a step)."""

    def pick(n: jax.Array, o: jax.Array) -> jax.Array:
        if jnp.issubdtype(n.dtype, jax.dtypes.prng_key):
            return n
        return jnp.where(active.reshape(active.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)


def members_step(step: Step, batch_sharding: NamedSharding | None = None) -> MembersStep:
    """(state, metrics, active, x_all, y_all, idx [S, batch]) -> (state, metrics): `step` for
    every member on its own batch, stopped members masked out."""
    vstep = jax.vmap(step)

    def run(
        state: TrainState, metrics: jax.Array, active: jax.Array, x_all: jax.Array, y_all: Any, idx: jax.Array
    ) -> tuple[TrainState, jax.Array]:
        x, y = jax.tree.map(lambda a: a[idx], (x_all, y_all))
        if batch_sharding is not None:
            x, y = jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, batch_sharding), (x, y))
        new_state, m = vstep(state, x, y)
        return mask_members(active, new_state, state), metrics + jnp.where(active[:, None], m, 0.0)

    return run


def _kept(state: TrainState, one: jax.Array) -> TrainState:
    """`state`'s floating leaves divided by `one` (a run-time 1.0): the same values, since a
    division by one is exact (subnormals flushed to zero on CPU, as by any arithmetic there)."""

    def keep(a: jax.Array) -> jax.Array:
        return a / one.astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree.map(keep, state)


def unrolled_steps(step: MembersStep, count: int) -> Callable[..., tuple[TrainState, jax.Array, jax.Array]]:
    """(state, metrics, t, active, x_all, y_all, order) -> (state, metrics, t + count): `count`
    steps from step `t` of the order, unrolled, for one compiled call.

    t: int32 [] (a traced argument of the compiled call, never a constant); order: int32
    [S, steps, batch]. Between steps the state is divided by 1.0 computed from `t` (`_kept`).
    XLA:CPU does not recompute a division inside other fusions, so each step's state is kept
    in memory; otherwise it fuses the chain of all earlier steps' optimizer updates into every
    later step's update and recomputes it there (it removes optimization barriers before
    fusion). See benchmarks/README.md (the Flax example CNN's profile).
    """

    def steps(
        state: TrainState,
        metrics: jax.Array,
        t: jax.Array,
        active: jax.Array,
        x_all: jax.Array,
        y_all: Any,
        order: jax.Array,
    ) -> tuple[TrainState, jax.Array, jax.Array]:
        one = jnp.where(t >= 0, 1.0, 2.0)  # 1.0, unknown to the compiler
        for i in range(count):
            idx = jax.lax.dynamic_index_in_dim(order, t, axis=1, keepdims=False)
            state, metrics = step(state, metrics, active, x_all, y_all, idx)
            state = _kept(state, one) if i < count - 1 else state
            t = t + 1
        return state, metrics, t

    return steps


def _per_call(step: MembersStep, chunk: int) -> EpochRun:
    """An epoch as compiled calls of `chunk` steps each (the remainder in one shorter call)."""

    @functools.cache
    def call(count: int) -> Callable[..., tuple[TrainState, jax.Array, jax.Array]]:
        return jax.jit(unrolled_steps(step, count), donate_argnums=(0, 1))

    def run(
        state: TrainState, active: jax.Array, x_all: jax.Array, y_all: Any, order: jax.Array
    ) -> tuple[TrainState, jax.Array]:
        n_steps = order.shape[1]
        metrics, t = jnp.zeros((order.shape[0], 3), jnp.float32), jnp.zeros((), jnp.int32)
        for _ in range(n_steps // chunk):
            state, metrics, t = call(chunk)(state, metrics, t, active, x_all, y_all, order)
        if n_steps % chunk:
            state, metrics, t = call(n_steps % chunk)(state, metrics, t, active, x_all, y_all, order)
        return state, metrics

    return run


def _scanned(step: MembersStep) -> EpochRun:
    """An epoch's steps as one `lax.scan` whose xs are the steps of the order (traceable)."""

    def run(
        state: TrainState, active: jax.Array, x_all: jax.Array, y_all: Any, order: jax.Array
    ) -> tuple[TrainState, jax.Array]:
        def body(carry: tuple[TrainState, jax.Array], idx: jax.Array) -> tuple[tuple[TrainState, jax.Array], None]:
            return step(*carry, active, x_all, y_all, idx), None

        metrics = jnp.zeros((order.shape[0], 3), jnp.float32)
        (state, metrics), _ = jax.lax.scan(body, (state, metrics), jnp.swapaxes(order, 0, 1))
        return state, metrics

    return run


def make_engine(step: MembersStep, name: str, *, unroll: int = 8) -> Engine:
    """The epoch runner for `members_step(...)` with strategy `name` ('step', 'unroll' or 'scan')."""
    if name in ("step", "unroll"):
        return Engine(name, _per_call(step, 1 if name == "step" else unroll))
    if name == "scan":
        return Engine(name, _scanned(step), traced=True)
    raise ValueError(f"engine: expected 'step', 'unroll' or 'scan', got {name!r}")
