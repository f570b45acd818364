"""`fit`: epochs of shuffled mini-batches, validation after each, early stopping."""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_inputs, check_labels
from ..data import Dataset
from ..evaluate import evaluate
from ..nn import Model
from ..optim import make_optimizer, schedule
from ._config import TrainConfig
from ._engine import make_engine
from ._parallel import data_parallel
from ._precision import with_compute_dtype
from ._progress import Progress
from ._state import TrainState, as_key, init_state
from ._step import epoch_order, make_train_step

Callback = Callable[[int, TrainState, dict], bool | None]


class FitResult(NamedTuple):
    """What `fit` returns.

    variables: the variables to use (the best epoch's when validating with early stopping)
    state: the final training state (resume from it)
    history: one dict per epoch: epoch, train_loss, train_error (running means over the
      epoch's batches, in training mode), val_loss, val_error (None without val), seconds
    engine: the loop strategy that ran the epochs ('step', 'unroll' or 'scan')
    """

    variables: dict
    state: TrainState
    history: list[dict]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    train_seconds: float
    engine: str = "step"

    @property
    def epoch_seconds(self) -> list[float]:
        return [h["seconds"] for h in self.history]


def _check_data(model: Model, data: Dataset, name: str) -> tuple[np.ndarray, np.ndarray]:
    x = check_inputs(data.x, name=f"{name}.x", feature_shape=model.input_shape)
    y = check_labels(data.y, num_classes=data.num_classes, n=x.shape[0], name=f"{name}.y")
    return x.astype(np.float32), y.astype(np.int32)


def make_tx(config: TrainConfig, steps_per_epoch: int):
    """The optimizer of `config`, with its learning-rate schedule over the whole run."""
    lr = schedule(config.schedule, config.learning_rate, total_steps=config.epochs * steps_per_epoch,
                  warmup_steps=config.warmup_epochs * steps_per_epoch)
    return make_optimizer(config.optimizer, lr, beta=config.momentum, weight_decay=config.weight_decay)


def _copy(tree):
    """A deep copy of the arrays of `tree` (so donating one never deletes the other)."""
    return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


def fit(model: Model, train: Dataset, *, key: jax.Array, config: TrainConfig = TrainConfig(),
        val: Dataset | None = None, state: TrainState | None = None, progress: bool | None = None,
        callbacks: Sequence[Callback] = ()) -> FitResult:
    """Trains `model` on `train` (x: [n, *model.input_shape], y: [n]) and validates on `val` each epoch.

    Pass `state` to continue a run (its counters and keys decide the remaining epochs and
    their data order). Each callback gets (epoch, state, record) after every epoch and
    stops training by returning True.
    """
    x, y = _check_data(model, train, "train")
    if val is not None:
        _check_data(model, val, "val")
        if val.num_classes != train.num_classes:
            raise ValueError(f"val.num_classes: expected {train.num_classes} like train, got {val.num_classes}")
    n = x.shape[0]
    batch = n if config.batch_size is None else min(config.batch_size, n)
    tx = make_tx(config, n // batch)
    if state is None:
        state = init_state(model, tx, jnp.asarray(x[:1]), key=as_key(key))
    state = _copy(state)  # the steps donate their input state: never donate arrays the caller holds
    parallel = data_parallel(config.devices, batch)
    if parallel is not None:
        state = jax.device_put(state, parallel.replicated)
    step = make_train_step(with_compute_dtype(model, config.compute_dtype), tx, config,
                           batch_sharding=None if parallel is None else parallel.batch)
    engine = make_engine(step, config.engine, unroll=config.unroll)
    order_fn = jax.jit(epoch_order, static_argnums=(2, 3))
    x_dev, y_dev = jax.device_put((x, y), None if parallel is None else parallel.replicated)

    history: list[dict] = []
    best = (np.inf, np.inf)
    best_variables, best_epoch, since_best, stopped = None, 0, 0, False
    bar = Progress(config.epochs, enabled=progress)
    start = time.perf_counter()
    for epoch in range(int(state.epoch) + 1, config.epochs + 1):
        t0 = time.perf_counter()
        order = order_fn(state.data_key, state.epoch, n, batch)
        state, metrics = engine.run(state, x_dev, y_dev, order)
        state = state.replace(epoch=state.epoch + 1)
        loss_sum, errors, count = np.asarray(metrics).tolist()
        record = {"epoch": epoch, "train_loss": loss_sum / count, "train_error": errors / count,
                  "val_loss": None, "val_error": None}
        if val is not None:
            ev = evaluate(model, state.variables, val.x, val.y, num_classes=val.num_classes,
                          loss=config.loss, batch_size=config.eval_batch_size)
            record.update(val_loss=ev.loss, val_error=ev.error_rate)
            if (ev.error_rate, ev.loss) < best:
                best, best_variables, best_epoch, since_best = (ev.error_rate, ev.loss), _copy(state.variables), epoch, 0
            else:
                since_best += 1
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        bar.update(epoch, record)
        if any([cb(epoch, state, record) for cb in callbacks]):
            stopped = True
            break
        if config.patience is not None and val is not None and since_best >= config.patience:
            stopped = True
            break
    bar.close()
    train_seconds = time.perf_counter() - start
    if best_variables is None:
        best_variables, best_epoch = state.variables, int(state.epoch)
    return FitResult(best_variables, state, history, best_epoch, len(history), stopped, train_seconds, engine.name)
