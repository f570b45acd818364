"""Early stopping on the device: per-member best epoch, patience and divergence, carried as a
pytree beside the training state and updated with `jnp.where` inside one compiled call."""

from __future__ import annotations

import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from ._engine import mask_members
from ._state import TrainState

# columns of the per-epoch report [S, len(REPORT)] the host receives
REPORT = ("train_loss_sum", "train_errors", "train_count", "val_loss", "val_error", "improved", "finite", "active")


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or non-finite parameters; the message names the
    epoch and the likely cause. Nothing of that epoch is kept: it is never the best epoch
    and is never checkpointed."""


def divergence_message(epoch: int, record: dict, learning_rate: float | None) -> str:
    """What a DivergenceError says: the epoch, what turned non-finite, the likely cause."""
    bad = [
        f"{name} {record[name]}"
        for name in ("train_loss", "val_loss")
        if record.get(name) is not None and not math.isfinite(record[name])
    ] or ["non-finite parameters"]
    rate = f"learning rate {learning_rate:g}" if learning_rate is not None else "learning rate"
    return (
        f"epoch {epoch}: training diverged ({', '.join(bad)}); likely cause: the {rate} is too large for this "
        f"model and data (or the inputs are far from unit scale); try a smaller one. Epoch {epoch} was not kept"
    )


@flax.struct.dataclass
class Tracker:
    """Per-member bookkeeping of a run, every leaf with a leading member axis [S].

    best:           float32 [S, 2], (val_error, val_loss) of the best epoch so far (inf before one)
    best_epoch:     int32 [S], that epoch (0: none yet)
    since_best:     int32 [S], epochs without a better validation result since then
    active:         bool [S], still training (not stopped early, not diverged)
    diverged:       int32 [S], the epoch whose loss or parameters turned non-finite (0: never)
    best_variables: the best epoch's variables [S, ...], None when training without validation
    """

    best: jax.Array
    best_epoch: jax.Array
    since_best: jax.Array
    active: jax.Array
    diverged: jax.Array
    best_variables: Any

    def to_json(self) -> dict:
        """The small arrays as JSON-ready lists (float32 values round-trip exactly through float;
        the infinity of 'no best yet' as null)."""
        best = [[None if math.isinf(v) else v for v in row] for row in jax.device_get(self.best).tolist()]
        return {
            "best": best,
            "best_epoch": jax.device_get(self.best_epoch).tolist(),
            "since_best": jax.device_get(self.since_best).tolist(),
            "active": jax.device_get(self.active).tolist(),
            "diverged": jax.device_get(self.diverged).tolist(),
        }

    @classmethod
    def from_json(cls, data: dict, best_variables) -> Tracker:
        best = [[math.inf if v is None else v for v in row] for row in data["best"]]
        return cls(
            jnp.asarray(best, jnp.float32),
            jnp.asarray(data["best_epoch"], jnp.int32),
            jnp.asarray(data["since_best"], jnp.int32),
            jnp.asarray(data["active"], bool),
            jnp.asarray(data["diverged"], jnp.int32),
            best_variables,
        )


def init_tracker(state: TrainState, *, validate: bool) -> Tracker:
    """A fresh tracker for the stacked `state` (a copy of its variables as the best so far when validating)."""
    S = state.step.shape[0]
    best_variables = jax.tree.map(jnp.copy, state.variables) if validate else None
    return Tracker(
        jnp.full((S, 2), jnp.inf, jnp.float32),
        jnp.zeros((S,), jnp.int32),
        jnp.zeros((S,), jnp.int32),
        jnp.ones((S,), bool),
        jnp.zeros((S,), jnp.int32),
        best_variables,
    )


def _all_finite(tree) -> jax.Array:
    """bool [S]: every floating leaf of the stacked `tree` finite, per member."""
    flags = [
        jnp.all(jnp.isfinite(a.reshape(a.shape[0], -1)), axis=1)
        for a in jax.tree.leaves(tree)
        if jnp.issubdtype(a.dtype, jnp.floating)
    ]
    return jnp.all(jnp.stack(flags), axis=0) if flags else jnp.ones((), bool)


def end_epoch(
    state: TrainState,
    tracker: Tracker,
    train_metrics: jax.Array,
    val_metrics: jax.Array | None,
    *,
    n_val: int,
    patience: int | None,
) -> tuple[TrainState, Tracker, jax.Array]:
    """Closes an epoch for every member: counts it for the active ones, checks that loss and
    parameters are finite, notes a better validation result (lexicographic in (error, loss);
    a non-finite epoch never counts) and keeps that epoch's variables, and deactivates the
    members whose patience ran out or who diverged.

    train_metrics: float32 [S, 3] (loss sum, errors, count); val_metrics: float32 [S, 2]
    (loss sum, errors over n_val samples) or None. Returns the report float32 [S, len(REPORT)].
    """
    was_active = tracker.active
    state = state.replace(epoch=state.epoch + was_active.astype(jnp.int32))
    finite = jnp.isfinite(train_metrics[:, 0]) & _all_finite(state.params)
    improved = jnp.zeros_like(was_active)
    val_loss = val_error = jnp.full(was_active.shape, jnp.nan, jnp.float32)
    best, best_epoch, since_best, best_variables = tracker.best, tracker.best_epoch, tracker.since_best, None
    if val_metrics is not None:
        val_loss, val_error = val_metrics[:, 0] / n_val, val_metrics[:, 1] / n_val
        finite = finite & jnp.isfinite(val_loss)
        better = (val_error < best[:, 0]) | ((val_error == best[:, 0]) & (val_loss < best[:, 1]))
        improved = was_active & finite & better
        best = jnp.where(improved[:, None], jnp.stack([val_error, val_loss], axis=1), best)
        best_epoch = jnp.where(improved, state.epoch, best_epoch)
        since_best = jnp.where(improved, 0, since_best + was_active.astype(jnp.int32))
        best_variables = mask_members(improved, state.variables, tracker.best_variables)
    active = was_active & finite
    if patience is not None and val_metrics is not None:
        active = active & (since_best < patience)
    diverged = jnp.where(was_active & ~finite, state.epoch, tracker.diverged)
    columns = [
        train_metrics[:, 0],
        train_metrics[:, 1],
        train_metrics[:, 2],
        val_loss,
        val_error,
        improved,
        finite,
        active,
    ]
    report = jnp.stack([c.astype(jnp.float32) for c in columns], axis=1)
    return state, Tracker(best, best_epoch, since_best, active, diverged, best_variables), report
