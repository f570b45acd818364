"""How one epoch of steps is executed on the device (the loop strategy).

On XLA:CPU a convolution inside `lax.scan` runs far slower than the same step dispatched
once per batch, so the CPU strategy is per-step dispatch: each step is one jitted call,
metrics stay on the device and nothing returns to the host inside an epoch.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ._state import TrainState


def run_epoch(step: Callable, state: TrainState, x_all: jax.Array, y_all: jax.Array,
              order: jax.Array) -> tuple[TrainState, jax.Array]:
    """All steps of one epoch: order: [steps, batch] sample indices.

    Returns the new state and float32 [3] (loss sum, error count, sample count), on the device.
    """
    metrics = jnp.zeros((3,), jnp.float32)
    for _ in range(order.shape[0]):
        state, metrics = step(state, metrics, x_all, y_all, order)
    return state, metrics
