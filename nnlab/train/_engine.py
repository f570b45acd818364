"""How one epoch of steps is executed on the device (the loop strategy), picked per backend.

Every strategy runs the same pure step on device-resident data (batches gathered by index,
metrics summed on the device, state buffers donated) and returns to the host once per epoch:

- 'step':   one compiled call per batch, dispatched from a Python loop;
- 'unroll': `unroll` steps unrolled into one compiled call (the remainder in a shorter one);
- 'scan':   the whole epoch as one compiled `lax.scan`.

'auto' takes 'unroll' on CPU and 'scan' elsewhere. On XLA:CPU (2-core EPYC, jax 0.10.2,
the Flax example CNN, benchmarks/README.md) a convolution inside `lax.scan` ran about 23x
slower than per-step dispatch, while chunks of 8 unrolled steps took 0.7x the per-step
time; on a GPU a scanned epoch removes the per-step launch and dispatch cost.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ._state import TrainState

Step = Callable[..., tuple[TrainState, jax.Array]]


class Engine(NamedTuple):
    """name: the strategy taken; run(state, x_all, y_all, order) -> (state, metrics).

    order: [steps, batch] sample indices; metrics: float32 [3] (loss sum, error count,
    sample count) of the epoch, on the device. `run` donates `state`.
    """

    name: str
    run: Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, jax.Array]]


def pick_engine(engine: str, platform: str) -> str:
    """The strategy 'auto' stands for on `platform` ('cpu', 'gpu', 'tpu'); others are kept."""
    if engine != "auto":
        return engine
    return "unroll" if platform == "cpu" else "scan"


def _steps(step: Step, count: int) -> Step:
    """`count` steps in a row, unrolled: (state, metrics, x_all, y_all, order) -> (state, metrics)."""

    def run(state, metrics, x_all, y_all, order):
        for _ in range(count):
            state, metrics = step(state, metrics, x_all, y_all, order)
        return state, metrics

    return run


def _per_call(step: Step, chunk: int) -> Callable:
    """An epoch as compiled calls of `chunk` steps each (the remainder in one shorter call)."""
    compiled: dict[int, Callable] = {}

    def call(count: int) -> Callable:
        if count not in compiled:
            compiled[count] = jax.jit(_steps(step, count), donate_argnums=(0, 1))
        return compiled[count]

    def run(state, x_all, y_all, order):
        steps = order.shape[0]
        metrics = jnp.zeros((3,), jnp.float32)
        for _ in range(steps // chunk):
            state, metrics = call(chunk)(state, metrics, x_all, y_all, order)
        if steps % chunk:
            state, metrics = call(steps % chunk)(state, metrics, x_all, y_all, order)
        return state, metrics

    return run


def _scanned(step: Step) -> Callable:
    """An epoch as one compiled `lax.scan` over its steps."""

    def run(state, x_all, y_all, order):
        def body(carry, _):
            return step(*carry, x_all, y_all, order), None

        (state, metrics), _ = jax.lax.scan(body, (state, jnp.zeros((3,), jnp.float32)), None, length=order.shape[0])
        return state, metrics

    return jax.jit(run, donate_argnums=0)


def make_engine(step: Step, engine: str = "auto", *, unroll: int = 8, platform: str | None = None) -> Engine:
    """The epoch runner for the pure `step` (from `make_train_step`), with strategy `engine`.

    platform: where it runs (default: that of `jax.devices()[0]`), which decides 'auto'.
    """
    name = pick_engine(engine, platform or jax.devices()[0].platform)
    if name == "step":
        return Engine(name, _per_call(step, 1))
    if name == "unroll":
        return Engine(name, _per_call(step, unroll))
    if name == "scan":
        return Engine(name, _scanned(step))
    raise ValueError(f"engine: expected 'auto', 'step', 'unroll' or 'scan', got {engine!r}")
