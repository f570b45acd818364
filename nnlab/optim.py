"""Optimizers as Optax recipes named after the lecture, learning-rate schedules, and the
weight-decay mask.

Every optimizer here is a *direction* (plain gradient, low-pass filtered gradient, heavy
ball, Adam's normalized gradient) followed by a step of size eta against it; `direction`
gives the first part alone, so a trainer can put decay terms, a schedule and a per-member
learning rate around it.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import optax

Schedule: TypeAlias = float | optax.Schedule
"""A learning rate: a constant or an Optax schedule step -> value."""

OPTIMIZERS = ("gd", "sgd", "momentum", "heavy_ball", "nesterov", "adam", "adamw")
"""Names accepted by `direction`, `make_optimizer` and `TrainConfig.optimizer`."""


def decay_mask(params: Any, *, include_biases: bool = False) -> Any:
    """Where weight decay acts, as a pytree of bools like `params`: the weights (arrays of
    ndim >= 2), and biases and PReLU slopes too only when `include_biases`."""
    return jax.tree.map(lambda p: include_biases or jnp.ndim(p) >= 2, params)


def add_l1(l1: float, *, include_biases: bool = False) -> optax.GradientTransformation:
    """Adds the gradient of the L1 term lambda * sum |theta|, lambda * sign(theta), on the decayed leaves."""

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("params: add_l1 needs the parameters, got None")
        mask = decay_mask(params, include_biases=include_biases)
        return jax.tree.map(lambda u, p, m: u + l1 * jnp.sign(p) if m else u, updates, params, mask), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def direction(name: str, momentum: float | jax.Array = 0.9) -> optax.GradientTransformation:
    """The direction of optimizer `name` (one of OPTIMIZERS), before the step size is applied.

    gd, sgd: the gradient g; momentum: the lecture's low-pass filter m <- beta m + (1 - beta) g;
    heavy_ball: m <- beta m + g; nesterov: heavy ball with look-ahead; adam, adamw: Adam's
    low-pass filtered gradient over the root of the filtered squared gradient (b1 0.9, b2 0.999).
    `momentum` is beta (it may be a traced array, e.g. a per-member hyperparameter).
    """
    if name in ("gd", "sgd"):
        return optax.identity()
    if name == "momentum":
        return optax.ema(momentum, debias=False)
    if name in ("heavy_ball", "nesterov"):
        return optax.trace(momentum, nesterov=name == "nesterov")
    if name in ("adam", "adamw"):
        return optax.scale_by_adam()
    raise ValueError(f"optimizer: expected one of {list(OPTIMIZERS)}, got {name!r}")


def gd(learning_rate: Schedule) -> optax.GradientTransformation:
    """Gradient descent theta <- theta - eta * dE/dtheta (full batch when fit's batch_size is None)."""
    return optax.sgd(learning_rate)


def sgd(learning_rate: Schedule) -> optax.GradientTransformation:
    """Mini-batch stochastic gradient descent: the same update on each mini-batch's gradient."""
    return optax.sgd(learning_rate)


def momentum(learning_rate: Schedule, beta: float = 0.9, *, form: str = "lowpass") -> optax.GradientTransformation:
    """Gradient descent with momentum.

    form='lowpass' (the lecture's): g <- beta * g + (1 - beta) * grad, theta <- theta - eta * g;
    form='heavy_ball' (the usual):  g <- beta * g + grad,              theta <- theta - eta * g;
    form='nesterov': heavy ball with Nesterov's look-ahead.
    The low-pass form takes steps 1/(1 - beta) times smaller than heavy ball at the same eta.
    """
    if form not in ("lowpass", "heavy_ball", "nesterov"):
        raise ValueError(f"form: expected 'lowpass', 'heavy_ball' or 'nesterov', got {form!r}")
    return make_optimizer("momentum" if form == "lowpass" else form, learning_rate, beta=beta)


def adam(
    learning_rate: Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam: low-pass filtered gradient over the root of the low-pass filtered squared gradient."""
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


def adamw(
    learning_rate: Schedule, weight_decay: float = 1e-4, b1: float = 0.9, b2: float = 0.999
) -> optax.GradientTransformation:
    """Adam with decoupled weight decay theta <- theta - eta * lambda * theta on the weights only."""
    return optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask)


def freeze(optimizer: optax.GradientTransformation, trainable: Any) -> optax.GradientTransformation:
    """`optimizer` on the leaves where `trainable` (a pytree of bools like params) is True; zero updates elsewhere."""
    labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
    return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def schedule(
    name: str,
    learning_rate: float,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    decay_every: int | None = None,
    decay_factor: float = 0.1,
) -> optax.Schedule:
    """A learning-rate schedule: 'constant', 'cosine' (to 0 over total_steps, after a linear warm-up),
    'step' (times decay_factor every decay_every steps) or 'exponential' (smooth version of 'step')."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: expected a number > 0, got {learning_rate!r}")
    if name == "constant":
        return optax.constant_schedule(learning_rate)
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, max(total_steps, warmup_steps + 1))
    every = decay_every or max(total_steps // 3, 1)
    if name == "step":
        return optax.exponential_decay(learning_rate, every, decay_factor, staircase=True)
    if name == "exponential":
        return optax.exponential_decay(learning_rate, every, decay_factor)
    raise ValueError(f"schedule: expected 'constant', 'cosine', 'step' or 'exponential', got {name!r}")


def make_optimizer(
    name: str, learning_rate: Schedule, *, beta: float = 0.9, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """The optimizer called `name` (one of OPTIMIZERS); `weight_decay` is used by 'adamw' only."""
    if name in ("momentum", "heavy_ball", "nesterov") and not 0.0 <= beta < 1.0:
        raise ValueError(f"beta: expected a momentum in [0, 1), got {beta!r}")
    parts = [direction(name, beta)]
    if name == "adamw":
        parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
    return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))
