"""Optimizers as Optax recipes named after the lecture, and learning-rate schedules."""

from __future__ import annotations

import jax
import optax

Schedule = float | optax.Schedule


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
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta: expected a momentum in [0, 1), got {beta!r}")
    if form == "lowpass":
        return optax.chain(optax.ema(beta, debias=False), optax.scale_by_learning_rate(learning_rate))
    if form in ("heavy_ball", "nesterov"):
        return optax.sgd(learning_rate, momentum=beta, nesterov=form == "nesterov")
    raise ValueError(f"form: expected 'lowpass', 'heavy_ball' or 'nesterov', got {form!r}")


def adam(learning_rate: Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam: low-pass filtered gradient over the root of the low-pass filtered squared gradient."""
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


def weights_only(params) -> object:
    """A mask for decoupled weight decay: True for weights (ndim >= 2), False for biases and slopes."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def adamw(learning_rate: Schedule, weight_decay: float = 1e-4, b1: float = 0.9, b2: float = 0.999) -> optax.GradientTransformation:
    """Adam with decoupled weight decay theta <- theta - eta * lambda * theta on the weights only."""
    return optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay, mask=weights_only)


def freeze(optimizer: optax.GradientTransformation, trainable) -> optax.GradientTransformation:
    """`optimizer` on the leaves where `trainable` (a pytree of bools like params) is True; zero updates elsewhere."""
    labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
    return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def schedule(name: str, learning_rate: float, *, total_steps: int, warmup_steps: int = 0,
             decay_every: int | None = None, decay_factor: float = 0.1) -> optax.Schedule:
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


OPTIMIZERS = ("gd", "sgd", "momentum", "heavy_ball", "nesterov", "adam", "adamw")


def make_optimizer(name: str, learning_rate: Schedule, *, beta: float = 0.9, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """The optimizer called `name` (one of OPTIMIZERS); `weight_decay` is used by 'adamw' only."""
    if name in ("gd", "sgd"):
        return sgd(learning_rate)
    if name == "momentum":
        return momentum(learning_rate, beta, form="lowpass")
    if name in ("heavy_ball", "nesterov"):
        return momentum(learning_rate, beta, form=name)
    if name == "adam":
        return adam(learning_rate)
    if name == "adamw":
        return adamw(learning_rate, weight_decay)
    raise ValueError(f"optimizer: expected one of {list(OPTIMIZERS)}, got {name!r}")
