"""`fit`: epochs of shuffled mini-batches, validation after each, early stopping."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._checks import check_inputs, check_label_range, check_labels
from .._signals import Interrupted, deferred_signals
from ..data import Dataset
from ..evaluate import evaluate
from ..nn import Model
from ..optim import make_optimizer, schedule
from ._config import TrainConfig
from ._engine import make_engine
from ._guards import check_finite
from ._parallel import data_parallel
from ._precision import with_compute_dtype
from ._progress import Progress
from ._state import TrainState, as_key, init_state
from ._step import epoch_order, make_train_step

if TYPE_CHECKING:
    from ..checkpoint import Checkpointer

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


@dataclasses.dataclass
class FitLog:
    """fit's bookkeeping besides the state: saved with each checkpoint so a resumed run
    stops, and returns the best epoch, exactly as an uninterrupted one.

    best: (val_error, val_loss) of the best epoch so far; since_best: epochs since then.
    """

    history: list[dict] = dataclasses.field(default_factory=list)
    best: tuple[float, float] = (np.inf, np.inf)
    best_variables: Any = None
    best_epoch: int = 0
    since_best: int = 0
    stopped: bool = False

    def to_json(self) -> dict:
        """Everything but best_variables, as JSON-ready data (floats round-trip exactly)."""
        return {"history": self.history, "best": list(self.best) if self.best_epoch else None,
                "best_epoch": self.best_epoch, "since_best": self.since_best, "stopped": self.stopped}

    @classmethod
    def from_json(cls, data: dict, best_variables) -> "FitLog":
        best = tuple(data["best"]) if data.get("best") is not None else (np.inf, np.inf)
        best_epoch = data.get("best_epoch", 0)
        return cls(list(data.get("history", [])), best, best_variables if best_epoch else None,
                   best_epoch, data.get("since_best", 0), data.get("stopped", False))

    def update(self, epoch: int, record: dict, variables) -> None:
        """Notes the epoch's record; keeps a copy of `variables` when validation improved."""
        self.history.append(record)
        if record["val_error"] is None:
            return
        if (record["val_error"], record["val_loss"]) < self.best:
            self.best, self.best_variables = (record["val_error"], record["val_loss"]), _copy(variables)
            self.best_epoch, self.since_best = epoch, 0
        else:
            self.since_best += 1


def _check_patience(config: TrainConfig, val: Dataset | None) -> None:
    """Early stopping watches the validation error: patience without validation data is an error."""
    if config.patience is not None and val is None:
        raise ValueError(f"patience: expected validation data (val=..., or n_val > 0) to stop on, "
                         f"got patience={config.patience} and val=None")


def output_width(model: Model, x: np.ndarray) -> int | None:
    """The number of outputs of `model` for samples like x: [n, ...] (traced, nothing computed)."""
    def forward(xb):
        return model.apply(model.init(jax.random.key(0), xb), xb, train=False)[0]

    shape = jax.eval_shape(forward, jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32)).shape
    return shape[-1] if len(shape) == 2 else None


def _check_data(model: Model, data: Dataset, name: str, outputs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x as float32 and y as int32 after checking them, the labels also against the model's
    number of outputs (`outputs`, traced from the model when not given)."""
    x = check_inputs(data.x, name=f"{name}.x", feature_shape=model.input_shape)
    y = check_labels(data.y, num_classes=data.num_classes, n=x.shape[0], name=f"{name}.y")
    outputs = output_width(model, x) if outputs is None else outputs
    if outputs is not None:
        check_label_range(y, outputs=outputs, name=f"{name}.y")
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
        callbacks: Sequence[Callback] = (), tx: optax.GradientTransformation | None = None,
        checkpointer: Checkpointer | None = None, resume: bool = False) -> FitResult:
    """Trains `model` on `train` (x: [n, *model.input_shape], y: [n]) and validates on `val` each epoch.

    Pass `state` to continue a run (its counters and keys decide the remaining epochs and
    their data order). Each callback gets (epoch, state, record) after every epoch and
    stops training by returning True; `state` is valid during the call only (the next
    step donates its buffers): copy what you keep, e.g. `jax.tree.map(np.asarray, state.params)`. `tx` replaces the optimizer of `config` (e.g. one
    wrapped in `freeze`); the learning rate then is `tx`'s own. With a `checkpointer`, the
    state and bookkeeping are saved every `checkpointer.every` epochs and at the end; with
    `resume`, training continues from its newest valid checkpoint (if any; a damaged newer one
    is skipped with a warning) and ends bitwise as the uninterrupted run would; a larger
    `config.epochs` than the checkpoint's continues the run. The checkpointer holds its
    folder's lock from the start of `fit` to its end.

    A non-finite loss or parameter raises DivergenceError at that epoch (nothing of it is kept).
    In the main thread, SIGINT / SIGTERM end training at the end of the epoch, after a final
    checkpoint, with `Interrupted` (a second signal: at once, between checkpoint writes).
    """
    if resume and checkpointer is None:
        raise ValueError("resume: expected a checkpointer to resume from, got checkpointer=None")
    with contextlib.ExitStack() as stack:
        if checkpointer is not None:
            stack.enter_context(checkpointer.open())  # a second writer fails here, before anything is trained
        return _fit(model, train, key=key, config=config, val=val, state=state, progress=progress,
                    callbacks=callbacks, tx=tx, checkpointer=checkpointer, resume=resume)


def _fit(model: Model, train: Dataset, *, key, config: TrainConfig, val: Dataset | None, state: TrainState | None,
         progress: bool | None, callbacks: Sequence[Callback], tx: optax.GradientTransformation | None,
         checkpointer: Checkpointer | None, resume: bool) -> FitResult:
    if checkpointer is not None and not resume and checkpointer.latest() is not None:
        raise ValueError(f"checkpointer: {checkpointer.directory} already holds checkpoints of a run "
                         f"({checkpointer.latest().name}); resume it (resume=True, --resume) or use an empty folder")
    _check_patience(config, val)
    x, y = _check_data(model, train, "train")
    if val is not None:
        _check_data(model, val, "val", outputs=output_width(model, x))
        if val.num_classes != train.num_classes:
            raise ValueError(f"val.num_classes: expected {train.num_classes} like train, got {val.num_classes}")
    n = x.shape[0]
    batch = n if config.batch_size is None else min(config.batch_size, n)
    tx_given, tx = tx, (make_tx(config, n // batch) if tx is None else tx)
    if state is None:
        state = init_state(model, tx, jnp.asarray(x[:1]), key=as_key(key))
    log = FitLog()
    if resume and checkpointer is not None and checkpointer.latest() is not None:
        restored = checkpointer.restore(state)
        state, log = restored.state, FitLog.from_json(restored.log, restored.best_variables)
        if int(state.epoch) > config.epochs:
            raise ValueError(f"epochs: expected at least the {int(state.epoch)} epochs of the checkpoint "
                             f"{restored.path} to resume, got {config.epochs}")
    state = _copy(state)  # the steps donate their input state: never donate arrays the caller holds
    parallel = data_parallel(config.devices, batch)
    if parallel is not None:
        state = jax.device_put(state, parallel.replicated)
    step = make_train_step(with_compute_dtype(model, config.compute_dtype), tx, config,
                           batch_sharding=None if parallel is None else parallel.batch)
    engine = make_engine(step, config.engine, unroll=config.unroll)
    order_fn = jax.jit(epoch_order, static_argnums=(2, 3))
    x_dev, y_dev = jax.device_put((x, y), None if parallel is None else parallel.replicated)

    bar = Progress(config.epochs, enabled=progress)
    start = time.perf_counter()
    first = int(state.epoch) + 1
    done = first - 1  # the last complete epoch
    learning_rate = config.learning_rate if tx_given is None else None
    with deferred_signals() as signals, contextlib.closing(bar):
        try:
            for epoch in range(first, config.epochs + 1 if not log.stopped else first):
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
                check_finite(epoch, record, state.params, learning_rate=learning_rate)
                log.update(epoch, record, state.variables)
                record["seconds"] = time.perf_counter() - t0
                bar.update(epoch, record)
                log.stopped = any([cb(epoch, state, record) for cb in callbacks]) or (
                    config.patience is not None and val is not None and log.since_best >= config.patience)
                done = epoch
                saved = checkpointer is not None and (
                    log.stopped or epoch == config.epochs or epoch % checkpointer.every == 0 or signals.requested)
                if saved:
                    checkpointer.save(state, best_variables=log.best_variables, log=log.to_json())
                if signals.requested and not log.stopped and epoch < config.epochs:
                    if checkpointer is not None:
                        checkpointer.wait()
                    raise Interrupted(signals.requested, epoch=epoch,
                                      checkpoint=checkpointer.path(epoch) if saved else None)
                if log.stopped:
                    break
            if checkpointer is not None:
                checkpointer.wait()
        except Interrupted as e:
            if e.epoch is not None:
                raise
            # a second signal, mid-epoch
            raise Interrupted(e.signum, epoch=done, during_epoch=True,
                              checkpoint=None if checkpointer is None else checkpointer.latest()) from None
    train_seconds = time.perf_counter() - start
    best_variables, best_epoch = log.best_variables, log.best_epoch
    if best_variables is None:
        best_variables, best_epoch = state.variables, int(state.epoch)
    return FitResult(best_variables, state, log.history, best_epoch, len(log.history), log.stopped, train_seconds,
                     engine.name)
