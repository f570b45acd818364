"""The pure training step of one member, and the objective it descends."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from ..data import Augmentation, augment
from ..evaluation import predict_labels
from ..losses import get_loss
from ..nn import Model
from ._state import TrainState

Objective = Callable[..., tuple[jax.Array, jax.Array | None, dict]]


def epoch_order(data_key: jax.Array, epoch: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The epoch's shuffled sample indices as [n // batch_size, batch_size] (the remainder is left out)."""
    steps = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), n)
    return perm[: steps * batch_size].reshape(steps, batch_size)


def classification_objective(apply: Callable, loss: str) -> Objective:
    """objective(variables, x, y, *, train, key) -> (loss [batch], errors [batch], updates) of a
    classifier: the named per-sample loss of its outputs, and whether its predicted label is wrong."""
    per_sample, threshold = get_loss(loss)

    def objective(variables, x, y, *, train: bool, key: jax.Array | None = None):
        outputs, updates = apply(variables, x, train=train, key=key)
        return per_sample(outputs, y), predict_labels(outputs, threshold) != y, updates

    return objective


def model_objective(model: Model, loss: str) -> Objective:
    """The model's own objective, or for a classifier the one of the loss named `loss`."""
    return model.objective if model.objective is not None else classification_objective(model.apply, loss)


def make_train_step(
    objective: Objective, tx: optax.GradientTransformation, augmentation: Augmentation = Augmentation()
) -> Callable:
    """step(state, x, y) -> (state, metrics) for one member and one mini-batch.

    x: [batch, ...], y: [batch] (or a pytree of [batch, ...] targets); metrics: float32 [3]
    (loss sum, error count, sample count). The step's dropout and augmentation keys are
    fold_in(stream, state.step) of the member's own streams. Model-state updates keep the
    dtype of the state they replace (a bfloat16 forward pass leaves batch statistics float32).
    """

    def step(state: TrainState, x: jax.Array, y):
        if augmentation.active:
            x = augment(augmentation, x, key=jax.random.fold_in(state.rng["augment"], state.step))
        key = jax.random.fold_in(state.rng["dropout"], state.step)

        def loss(params):
            per_sample, errors, updates = objective({"params": params, **state.model_state}, x, y, train=True, key=key)
            return jnp.mean(per_sample), (per_sample, errors, updates)

        grads, (per_sample, errors, updates) = jax.grad(loss, has_aux=True)(state.params)
        param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
        model_state = {
            **state.model_state,
            **jax.tree.map(lambda new, old: new.astype(old.dtype), updates, {k: state.model_state[k] for k in updates}),
        }
        count = jnp.float32(per_sample.shape[0])
        error_sum = jnp.float32(0.0) if errors is None else jnp.sum(errors).astype(jnp.float32)
        new_state = state.replace(
            params=optax.apply_updates(state.params, param_updates),
            model_state=model_state,
            opt_state=opt_state,
            step=state.step + 1,
        )
        return new_state, jnp.stack([jnp.sum(per_sample).astype(jnp.float32), error_sum, count])

    return step


def make_eval_batch(objective: Objective) -> Callable:
    """eval_batch(variables, x, y, mask) -> float32 [2] (masked loss sum, masked error count), no randomness."""

    def eval_batch(variables, x, y, mask):
        per_sample, errors, _ = objective(variables, x, y, train=False, key=None)
        loss_sum = jnp.sum(jnp.where(mask, per_sample, 0.0))
        error_sum = jnp.float32(0.0) if errors is None else jnp.sum(jnp.where(mask, errors, False))
        return jnp.stack([loss_sum.astype(jnp.float32), jnp.asarray(error_sum, jnp.float32)])

    return eval_batch
