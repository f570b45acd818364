"""What test_nnx.py and test_equinox.py share: `nnlab.fit`'s randomness and data order written out
once for their hand-written training loops, a learnable synthetic data set, tree comparison, and
a run checkpointed, cut short and resumed.

`fit_schedule` mirrors nnlab.train's rules (`_keys.py`, `init_state`, `epoch_order`,
`make_train_step` without augmentation); when the trainer changes them, it is the one to update.
"""

from __future__ import annotations

import jax
import numpy as np

import nnlab


def fit_schedule(
    seed: int, n: int, batch_size: int, epochs: int
) -> tuple[jax.Array, list[tuple[np.ndarray, jax.Array]]]:
    """(init_key, steps) of `fit(key=seed)` on n samples: `model.init` gets init_key; step s of the
    run takes the samples `indices` [batch_size] and hands `step_key` to `model.apply`.

    The member's root key is key(seed); its named streams are fold_in(root, STREAMS[name]) ('init',
    'data', 'dropout'). Epoch e (from 0) shuffles with permutation(fold_in(data, e), n) and drops
    the remainder; step s (counted over the whole run) uses fold_in(dropout, s).
    """
    root = jax.random.key(seed)
    k_init, k_data, k_dropout = (
        jax.random.fold_in(root, nnlab.train.STREAMS[name]) for name in ("init", "data", "dropout")
    )
    per_epoch = n // batch_size
    steps = []
    for epoch in range(epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_data, epoch), n))
        for b in range(per_epoch):
            steps.append(
                (perm[b * batch_size : (b + 1) * batch_size], jax.random.fold_in(k_dropout, epoch * per_epoch + b))
            )
    return k_init, steps


def labelled_data(shape: tuple[int, ...], n: int, seed: int, classes: int = 3) -> nnlab.Dataset:
    """n samples x: [n, *shape], labelled by a fixed random linear map (so there is something to learn)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    w = rng.normal(size=(x[0].size, classes))
    return nnlab.data.make_dataset(x, np.argmax(x.reshape(n, -1) @ w, axis=1), num_classes=classes)


def assert_trees_close(a, b, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Same structure, and every pair of leaves equal within rtol and atol."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol), a, b)


def resumed_like_whole(model: nnlab.Model, train, val, config: nnlab.TrainConfig, folder):
    """(whole, best_variables): a `fit` of `config.epochs` epochs, and the best variables of a run
    checkpointed in folder/part, stopped after epochs - 1 and resumed; asserts that the resumed run
    ends bitwise as the whole one and that its checkpoint holds the whole run's final state."""
    whole = nnlab.fit(
        model, train, key=4, config=config, val=val, progress=False, checkpointer=nnlab.Checkpointer(folder / "whole")
    )
    part = nnlab.Checkpointer(folder / "part")
    nnlab.fit(
        model, train, key=4, config=config.replace(epochs=config.epochs - 1), val=val, progress=False, checkpointer=part
    )
    resumed = nnlab.fit(model, train, key=4, config=config, val=val, progress=False, checkpointer=part, resume=True)
    assert [h["epoch"] for h in resumed.history] == list(range(1, config.epochs + 1))
    jax.tree.map(np.testing.assert_array_equal, resumed.state.variables, whole.state.variables)
    jax.tree.map(np.testing.assert_array_equal, resumed.variables, whole.variables)
    restored = part.restore(nnlab.train.stack([whole.state]))  # fit's checkpoints hold a member axis [1, ...]
    jax.tree.map(np.testing.assert_array_equal, nnlab.train.member(restored.state, 0).variables, whole.state.variables)
    return whole, nnlab.train.member(restored.best_variables, 0)


def members_like_separate_fits(model: nnlab.Model, train, val, config: nnlab.TrainConfig) -> nnlab.FitManyResult:
    """fit_many of 3 members (config's engine); asserts that member i equals `fit(key=i)` with the
    per-step engine (variables rtol 1e-4 / atol 1e-5, training losses rtol 1e-5 / atol 1e-6, the
    same best epoch); returns the fit_many result for the caller's checks of the model state."""
    many = nnlab.fit_many(model, train, keys=[0, 1, 2], config=config, val=val, progress=False)
    for i in range(3):
        single = nnlab.fit(model, train, key=i, config=config.replace(engine="step"), val=val, progress=False)
        assert_trees_close(nnlab.train.member(many.variables, i), single.variables, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            [h["train_loss"] for h in many.histories[i]],
            [h["train_loss"] for h in single.history],
            rtol=1e-5,
            atol=1e-6,
        )
        assert many.best_epochs[i] == single.best_epoch
    return many
