"""The optimizer a TrainConfig describes, with its hyperparameters held in its state.

One recipe for every optimizer: [L2 gradient] [L1 gradient] direction [decoupled decay]
schedule step. `optax.inject_hyperparams` keeps learning rate, weight decay and momentum in
the optimizer state, so members of one vmapped program can differ in them (a sweep is the
training loop with a hyperparameter axis, `fit_many(hparams=...)`).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import optax

from ..optim import add_l1, decay_mask, direction, schedule
from ._config import TrainConfig

# hyperparameters a member may have of its own
MEMBER_HPARAMS = ("learning_rate", "weight_decay", "momentum")
"""Hyperparameters a member of `fit_many` may have of its own (`hparams=`)."""


def make_tx(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer of `config` over a run of `config.epochs` epochs of `steps_per_epoch` steps.

    weight_decay lambda is the lecture's L2 term lambda * theta . theta, applied as its gradient
    2 * lambda * theta (for 'adamw': the decoupled decay theta <- theta - eta * lambda * theta);
    both act on `decay_mask`'s leaves. The schedule multiplies the learning rate.
    """
    shape = schedule(
        config.schedule,
        1.0,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=config.warmup_epochs * steps_per_epoch,
    )
    mask = functools.partial(decay_mask, include_biases=config.decay_biases)
    coupled = config.optimizer != "adamw"

    def build(learning_rate, weight_decay, momentum):
        parts = [optax.add_decayed_weights(2 * weight_decay, mask)] if coupled else []
        if config.l1:
            parts.append(add_l1(config.l1, include_biases=config.decay_biases))
        parts.append(direction(config.optimizer, momentum))
        if not coupled:
            parts.append(optax.add_decayed_weights(weight_decay, mask))
        parts += [optax.scale_by_schedule(shape), optax.scale_by_learning_rate(learning_rate)]
        return optax.chain(*parts)

    return optax.inject_hyperparams(build, hyperparam_dtype=jnp.float32)(
        learning_rate=config.learning_rate, weight_decay=config.weight_decay, momentum=config.momentum
    )


def check_hparams(hparams: dict | None, members: int) -> dict[str, np.ndarray] | None:
    """`hparams` as float32 arrays [members] after checking names, lengths and ranges."""
    if hparams is None:
        return None
    unknown = sorted(set(hparams) - set(MEMBER_HPARAMS))
    if unknown:
        raise ValueError(f"hparams: expected keys from {list(MEMBER_HPARAMS)}, got {unknown}")
    out = {}
    for name, values in hparams.items():
        v = np.asarray(values, np.float64)
        ok = v.shape == (members,) and np.all(np.isfinite(v)) and np.all(v >= 0)
        if ok and name == "learning_rate":
            ok = bool(np.all(v > 0))
        if ok and name == "momentum":
            ok = bool(np.all(v < 1))
        if not ok:
            raise ValueError(
                f"hparams[{name!r}]: expected {members} finite values (one per key) in the range of "
                f"TrainConfig.{name}, got {np.asarray(values)!r}"
            )
        out[name] = v.astype(np.float32)
    return out


def set_hparams(opt_state, hparams: dict[str, np.ndarray]):
    """The stacked optimizer state of `make_tx` with member i's hyperparameters set to hparams[...][i]."""
    if not hasattr(opt_state, "hyperparams"):
        raise ValueError(
            "hparams: expected the optimizer of the config (make_tx), got a custom tx without "
            "per-member hyperparameters"
        )
    return opt_state._replace(hyperparams={**opt_state.hyperparams, **{k: jnp.asarray(v) for k, v in hparams.items()}})
