"""Pure training steps: one mini-batch update, gathered by index from device-resident data."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ..data import augment
from ..evaluate import predict_labels
from ..losses import get_loss, l1_penalty, l2_penalty
from ..nn import Model
from ._config import TrainConfig
from ._state import TrainState


def epoch_order(data_key: jax.Array, epoch: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The epoch's shuffled sample indices as [n // batch_size, batch_size] (the remainder is left out)."""
    steps = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), n)
    return perm[: steps * batch_size].reshape(steps, batch_size)


def objective(model: Model, config: TrainConfig) -> Callable:
    """loss(params, model_state, x, y, key) -> (data loss + decay terms, (data loss, outputs, updates))."""
    per_sample, _ = get_loss(config.loss)
    l2 = config.weight_decay if config.optimizer != "adamw" else 0.0

    def loss(params, model_state, x, y, key):
        outputs, updates = model.apply({"params": params, **model_state}, x, train=True, key=key)
        data_loss = jnp.mean(per_sample(outputs, y))
        total = data_loss
        if l2:
            total = total + l2_penalty(params, l2, include_biases=config.decay_biases)
        if config.l1:
            total = total + l1_penalty(params, config.l1, include_biases=config.decay_biases)
        return total, (data_loss, outputs, updates)

    return loss


def make_train_step(model: Model, tx: optax.GradientTransformation, config: TrainConfig, *,
                    batch_sharding: jax.sharding.Sharding | None = None) -> Callable:
    """step(state, metrics, x_all, y_all, order) -> (state, metrics).

    x_all: [n, ...] and y_all: [n] stay on the device; order: [steps, batch] from
    `epoch_order`; the batch is row `step mod steps` of it. metrics: float32 [3] running
    (loss sum, error count, sample count) for the epoch, kept on the device.
    batch_sharding: where the gathered batch lives (data parallelism), None to leave it to XLA.
    """
    loss = objective(model, config)
    threshold = get_loss(config.loss)[1]

    def step(state: TrainState, metrics: jax.Array, x_all: jax.Array, y_all: jax.Array, order: jax.Array):
        idx = order[state.step % order.shape[0]]
        x, y = x_all[idx], y_all[idx]
        if batch_sharding is not None:
            x, y = jax.lax.with_sharding_constraint((x, y), batch_sharding)
        key = jax.random.fold_in(state.key, state.step)
        if config.augmentation.active:
            k_aug, key = jax.random.split(key)
            x = augment(config.augmentation, x, key=k_aug)
        grads, (data_loss, outputs, updates) = jax.grad(loss, has_aux=True)(state.params, state.model_state, x, y, key)
        param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
        errors = jnp.sum(predict_labels(outputs, threshold) != y).astype(jnp.float32)
        batch = jnp.float32(idx.shape[0])
        new_state = state.replace(
            params=optax.apply_updates(state.params, param_updates),
            model_state={**state.model_state, **updates},
            opt_state=opt_state,
            step=state.step + 1,
        )
        return new_state, metrics + jnp.stack([data_loss * batch, errors, batch])

    return step
