"""`nnlab.fit`'s randomness and data order, written out once for the hand-written training loops
of test_nnx.py and test_equinox.py to follow.

It mirrors nnlab.train as of this writing (init_state, epoch_order, make_train_step without
augmentation): the trainer's refactor may move these details; then this file is the one to update.
"""

from __future__ import annotations

import jax
import numpy as np


def fit_schedule(seed: int, n: int, batch_size: int, epochs: int) -> tuple[jax.Array, list[tuple[np.ndarray, jax.Array]]]:
    """(init_key, steps) of `fit(key=seed)` on n samples: `model.init` gets init_key; step s of the
    run takes the samples `indices` [batch_size] and hands `step_key` to `model.apply`.

    fit splits its key into (init, step, data) keys; epoch e (from 0) shuffles with
    permutation(fold_in(data_key, e), n) and drops the remainder; step s uses fold_in(step_key, s).
    """
    k_init, k_step, k_data = jax.random.split(jax.random.key(seed), 3)
    per_epoch = n // batch_size
    steps = []
    for epoch in range(epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_data, epoch), n))
        for b in range(per_epoch):
            steps.append((perm[b * batch_size:(b + 1) * batch_size], jax.random.fold_in(k_step, epoch * per_epoch + b)))
    return k_init, steps
