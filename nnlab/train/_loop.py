"""`fit_many` and `fit`: one training loop for S members, `fit` being the case S = 1.

Per epoch the host dispatches the engine's steps for all members, the validation pass and
the on-device bookkeeping (`end_epoch`), then receives one small report [S, 8]; history,
progress, callbacks and checkpoints work from that report.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from .._batches import padded_batches
from .._checks import check_inputs, check_label_range, check_labels, check_positive
from .._signals import Interrupted, deferred_signals
from ..data import Dataset
from ..nn import Model
from ._config import TrainConfig
from ._engine import Engine, make_engine, members_step, pick_engine, step_has_convolution
from ._keys import as_key, member_keys
from ._parallel import Layout, make_layout, put
from ._precision import with_compute_dtype
from ._progress import Progress
from ._state import TrainState, copy, init_members, member, stack
from ._step import Objective, epoch_order, make_eval_batch, make_train_step, model_objective
from ._tracking import REPORT, DivergenceError, Tracker, divergence_message, end_epoch, init_tracker
from ._tx import check_hparams, make_tx, set_hparams
from ._validate import make_validator

if TYPE_CHECKING:
    from ..checkpoint import Checkpointer

Callback = Callable[[int, TrainState, Any], bool | None]
EpochProgram = Callable[..., tuple[TrainState, Tracker, jax.Array]]
_COL = {name: i for i, name in enumerate(REPORT)}
# a program that runs once (initialization): compiled at LLVM optimisation level 1, 1.8x (MLP) to
# 5x (CNN) faster to compile on this CPU, with the values of the default level (tests/test_train.py)
_RUN_ONCE = {"xla_backend_optimization_level": 1}


class FitResult(NamedTuple):
    """What `fit` returns: member 0 of `fit_many`'s result, its member axis squeezed.

    variables: the variables to use (the best epoch's when validating)
    state: the final training state (resume from it)
    history: one dict per epoch: epoch, train_loss, train_error (running means over the
      epoch's batches, in training mode), val_loss, val_error (None without val), seconds
    engine: the loop strategy that ran the epochs ('step', 'unroll' or 'scan')
    setup_seconds: before the first epoch: initialization (its compilation included), choosing
      the engine, uploading the data; train_seconds covers the epochs after it
    """

    variables: dict[str, Any]
    state: TrainState
    history: list[dict[str, Any]]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    train_seconds: float
    engine: str = "step"
    setup_seconds: float = 0.0

    @property
    def epoch_seconds(self) -> list[float]:
        """Seconds of each epoch (the first includes compilation)."""
        return [h["seconds"] for h in self.history]


class FitManyResult(NamedTuple):
    """What `fit_many` returns: `FitResult`'s fields for each member, `variables` and `state` stacked
    [S, ...]; a stopped member's history ends, and its state is frozen, where it stopped.

    diverged: per member, the epoch whose loss or parameters turned non-finite (0: never);
      such a member stops there and keeps its best finite epoch
    chunks: how many programs the S members were split into (1: all at once)
    setup_seconds: as in `FitResult` (summed over the chunks)
    """

    variables: dict[str, Any]
    state: TrainState
    histories: list[list[dict[str, Any]]]
    best_epochs: list[int]
    epochs_run: list[int]
    stopped_early: list[bool]
    diverged: list[int]
    train_seconds: float
    chunks: int
    engine: str
    setup_seconds: float = 0.0

    @property
    def size(self) -> int:
        """The number of members S."""
        return len(self.histories)


def _check_data(model: Model, data: Dataset, name: str) -> tuple[np.ndarray, Any]:
    """(x float32, y): inputs checked against the model's input shape; class labels checked for a
    classifier, also against its number of outputs (a model with its own objective checks its
    structured targets itself)."""
    x = check_inputs(data.x, name=f"{name}.x", feature_shape=model.input_shape).astype(np.float32)
    if model.objective is not None:
        lengths = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree.leaves(data.y)}
        if lengths != {x.shape[0]}:
            raise ValueError(
                f"{name}.y: expected targets with a leading axis of {x.shape[0]} (one per sample), "
                f"got leading axes {sorted(map(str, lengths))}"
            )
        return x, data.y
    y = check_labels(data.y, num_classes=data.num_classes, n=x.shape[0], name=f"{name}.y").astype(np.int32)
    # the model's outputs for one sample (traced, nothing computed): [1, classes] bounds the labels
    outputs = jax.eval_shape(
        lambda xb: model.apply(model.init(jax.random.key(0), xb), xb, train=False)[0],
        jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32),
    ).shape
    if len(outputs) == 2:
        check_label_range(y, outputs=outputs[-1], name=f"{name}.y")
    return x, y


def _means(records: list[dict[str, Any]]) -> dict[str, float]:
    """The members' mean of each metric all of them have: for the progress line, and (val_error, val_loss)
    ranks the epoch's checkpoint."""
    metrics = ("train_loss", "train_error", "val_loss", "val_error")
    return {k: float(np.mean([r[k] for r in records])) for k in metrics if all(r[k] is not None for r in records)}


def _record(epoch: int, row: np.ndarray, seconds: float, *, validate: bool, errors: bool) -> dict[str, Any]:
    count = row[_COL["train_count"]]
    return {
        "epoch": epoch,
        "train_loss": float(row[_COL["train_loss_sum"]] / count),
        "train_error": float(row[_COL["train_errors"]] / count) if errors else None,
        "val_loss": float(row[_COL["val_loss"]]) if validate else None,
        "val_error": float(row[_COL["val_error"]]) if validate and errors else None,
        "seconds": seconds,
    }


def _epoch_program(
    engine: Engine,
    eval_objective: Objective,
    *,
    n: int,
    batch: int,
    val: tuple[np.ndarray, Any] | None,
    config: TrainConfig,
    layout: Layout,
    scan_validation: bool,
) -> EpochProgram:
    """run_epoch(state, tracker, x_all, y_all, val_data, epoch) -> (state, tracker, report [S, 8]):
    the epoch's data order, its steps, validation and `end_epoch`. A traced engine ('scan')
    makes this one compiled program; otherwise the engine's calls, the validation and the
    bookkeeping are dispatched one after another, with no host sync until the report."""
    order_of = jax.vmap(functools.partial(epoch_order, n=n, batch_size=batch), in_axes=(0, None))
    validate = None if val is None else make_validator(make_eval_batch(eval_objective), scan=scan_validation)
    finish = functools.partial(
        end_epoch, n_val=0 if val is None else val[0].shape[0], patience=config.patience if val is not None else None
    )
    out_shardings = (layout.members, layout.members, layout.replicated)

    def order_for(state: TrainState, epoch: jax.Array | int) -> jax.Array:
        order = order_of(state.rng["data"], epoch)
        return order if layout.order is None else jax.lax.with_sharding_constraint(order, layout.order)

    def epoch_of(
        order_for: Callable[[TrainState, jax.Array | int], jax.Array],
        validate: Callable[..., jax.Array] | None,
        finish: Callable[..., tuple[TrainState, Tracker, jax.Array]],
    ) -> EpochProgram:
        def run_epoch(
            state: TrainState, tracker: Tracker, x_all: jax.Array, y_all: Any, val_data: Any, epoch: jax.Array | int
        ) -> tuple[TrainState, Tracker, jax.Array]:
            state, metrics = engine.run(state, tracker.active, x_all, y_all, order_for(state, epoch))
            return finish(state, tracker, metrics, None if validate is None else validate(state.variables, *val_data))

        return run_epoch

    if engine.traced:
        return jax.jit(epoch_of(order_for, validate, finish), donate_argnums=(0, 1), out_shardings=out_shardings)
    return epoch_of(
        jax.jit(order_for),
        jax.jit(validate) if validate is not None and scan_validation else validate,
        jax.jit(finish, donate_argnums=(0, 1), out_shardings=out_shardings),
    )


def _train(
    model: Model,
    x: np.ndarray,
    y: Any,
    val: tuple[np.ndarray, Any] | None,
    keys: jax.Array,
    config: TrainConfig,
    *,
    hparams: Mapping[str, np.ndarray] | None,
    tx: optax.GradientTransformation | None,
    state: TrainState | None,
    callbacks: Sequence[Callback],
    checkpointer: Checkpointer | None,
    resume: bool,
    bar: Progress,
    epoch_offset: int,
    raise_on_divergence: bool,
) -> FitManyResult:
    """The one training loop: S = keys.shape[0] members on (x, y), validated on `val` = (x, y) or None;
    the result of one program (chunks=1)."""
    setup = time.perf_counter()
    S, n = keys.shape[0], x.shape[0]
    batch = n if config.batch_size is None else min(config.batch_size, n)
    learning_rate = config.learning_rate if tx is None else None  # a custom tx has its own
    tx = make_tx(config, n // batch) if tx is None else tx
    step = make_train_step(
        model_objective(with_compute_dtype(model, config.compute_dtype), config.loss), tx, config.augmentation
    )
    eval_objective = model_objective(model, config.loss)
    layout = make_layout(config.devices, config.member_shards, members=S, batch_size=batch)
    members = layout.members
    if state is None:
        state = jax.jit(
            lambda k: init_members(model, tx, jnp.asarray(x[:1]), keys=k),
            out_shardings=members,
            compiler_options=_RUN_ONCE,
        )(keys)
        if hparams is not None:
            state = state.replace(opt_state=set_hparams(state.opt_state, hparams))
    else:
        state = jax.device_put(copy(state), members)  # the steps donate: never the caller's arrays
    tracker, done, stopped = init_tracker(state, validate=val is not None), 0, False
    histories: list[list[dict[str, Any]]] = [[] for _ in range(S)]
    if resume and checkpointer is not None and checkpointer.latest() is not None:  # fit_many: resume needs one
        restored = checkpointer.restore(state)
        log, state = restored.log, jax.device_put(restored.state, members)
        tracker = Tracker.from_json(log["tracker"], restored.best_variables)
        histories, done, stopped = [list(h) for h in log["histories"]], log["epoch"], log["stopped"]
        if done > config.epochs:
            raise ValueError(
                f"epochs: expected at least the {done} epochs of the checkpoint {restored.path} "
                f"to resume, got {config.epochs}"
            )

    # shapes of one member's state and batch: what the step is traced with, nothing computed
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state)
    x_spec = jax.ShapeDtypeStruct((batch, *x.shape[1:]), jnp.float32)
    y_spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct((batch, *np.shape(a)[1:]), np.asarray(a).dtype), y)
    errors = (
        jax.eval_shape(functools.partial(eval_objective, train=False, key=None), one.variables, x_spec, y_spec)[1]
        is not None
    )
    convolution = step_has_convolution(step, one, x_spec, y_spec)
    engine_name = pick_engine(config.engine, jax.devices()[0].platform, convolution=convolution)
    engine = make_engine(members_step(step, layout.batch), engine_name, unroll=config.unroll)
    x_dev, y_dev = put(x, layout.replicated), put(y, layout.replicated)
    run_epoch = _epoch_program(
        engine,
        eval_objective,
        n=n,
        batch=batch,
        val=val,
        config=config,
        layout=layout,
        scan_validation=engine.traced or not convolution,
    )
    val_data = (
        None
        if val is None
        else put(padded_batches(val[0], val[1], min(config.eval_batch_size, val[0].shape[0])), layout.replicated)
    )

    start = time.perf_counter()
    active = np.asarray(jax.device_get(tracker.active))
    with deferred_signals() as signals:
        try:
            for epoch in range(done + 1, config.epochs + 1):
                if stopped or not active.any():
                    break
                t0 = time.perf_counter()
                state, tracker, report = run_epoch(state, tracker, x_dev, y_dev, val_data, epoch - 1)
                rows = np.asarray(jax.device_get(report))
                seconds = time.perf_counter() - t0
                records = {
                    i: _record(epoch, rows[i], seconds, validate=val is not None, errors=errors)
                    for i in np.flatnonzero(active).tolist()
                }
                diverged = [i for i in records if not rows[i, _COL["finite"]]]
                if diverged and raise_on_divergence:
                    raise DivergenceError(divergence_message(epoch, records[diverged[0]], learning_rate))
                for i, record in records.items():
                    histories[i].append(record)
                active = rows[:, _COL["active"]] > 0
                means = _means(list(records.values()))
                bar.update(epoch_offset + epoch, means)
                listed = [records.get(i) for i in range(S)]
                stopped = any([bool(cb(epoch, state, listed)) for cb in callbacks]) or not active.any()
                # the signal that asked to stop, if the run has epochs left to lose
                done, interrupt = epoch, None if stopped or epoch >= config.epochs else signals.requested
                if checkpointer is not None and (
                    stopped or interrupt is not None or epoch == config.epochs or epoch % checkpointer.every == 0
                ):
                    checkpointer.save(
                        state,
                        epoch=epoch,
                        best_variables=tracker.best_variables,
                        score=None if val is None else (means.get("val_error", 0.0), means["val_loss"]),
                        log={
                            "epoch": epoch,
                            "stopped": stopped,
                            "members": S,
                            "histories": histories,
                            "tracker": tracker.to_json(),
                        },
                    )
                if interrupt is not None:
                    if checkpointer is not None:
                        checkpointer.wait()
                    raise Interrupted(
                        interrupt,
                        epoch=epoch,
                        checkpoint=None if checkpointer is None else checkpointer.path(epoch),
                    )
            if checkpointer is not None:
                checkpointer.wait()
        except Interrupted as e:
            if e.epoch is not None:
                raise
            raise Interrupted(
                e.signum,
                epoch=done,
                during_epoch=True,  # a second signal, mid-epoch
                checkpoint=None if checkpointer is None else checkpointer.latest(),
            ) from None
    seconds = time.perf_counter() - start
    best_epoch, diverged = jax.device_get((tracker.best_epoch, tracker.diverged))
    best_epochs = [int(b) if val is not None else len(h) for b, h in zip(best_epoch, histories, strict=True)]
    variables = state.variables if tracker.best_variables is None else tracker.best_variables
    return FitManyResult(
        variables,
        state,
        histories,
        best_epochs,
        [len(h) for h in histories],
        [len(h) < config.epochs for h in histories],
        [int(d) for d in diverged],
        seconds,
        chunks=1,
        engine=engine_name,
        setup_seconds=start - setup,
    )


def _concat(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *a: jnp.concatenate(a), *trees)


def fit_many(
    model: Model,
    train: Dataset,
    *,
    keys: Sequence[ArrayLike] | ArrayLike,
    config: TrainConfig = TrainConfig(),
    val: Dataset | None = None,
    hparams: Mapping[str, Sequence[float] | ArrayLike] | None = None,
    state: TrainState | None = None,
    tx: optax.GradientTransformation | None = None,
    callbacks: Sequence[Callback] = (),
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
    max_members: int | None = None,
    progress: bool | None = None,
    _raise_on_divergence: bool = False,
) -> FitManyResult:
    """Trains S = len(keys) copies of `model` as one vmapped, jitted program (member i from root key keys[i]).

    train: x [n, *model.input_shape], y [n] class labels (or a pytree of [n, ...] targets for
    a model with its own objective); val: the same, evaluated after every epoch for all members.
    Each member has its own initialization, data order, dropout and augmentation keys,
    optimizer state and batch statistics; with `config.patience` each stops on its own
    validation curve (its updates masked from then on) and keeps its own best variables.
    hparams: optional per-member {'learning_rate' | 'weight_decay' | 'momentum': [S] values}
    replacing config's (they live in the optimizer state, see `make_tx`). state: a stacked
    state [S, ...] to continue. tx: an optimizer replacing config's (then no hparams).
    callbacks: cb(epoch, state, records) after every epoch (records: one dict per member,
    None for stopped ones); returning True stops all members; `state` is valid during the call
    only. checkpointer / resume: save every `checkpointer.every` epochs and at the end /
    continue from the latest checkpoint, bitwise as the uninterrupted run. max_members: train
    at most this many members per program (chunks one after another, announced on stderr), for
    studies larger than the accelerator's memory. (`fit` sets _raise_on_divergence: a diverged member
    raises DivergenceError instead of stopping.)
    """
    key_data = jax.random.key_data(member_keys(keys))  # [S, 2]: each chunk wraps fresh keys from it
    S = key_data.shape[0]
    if config.patience is not None and val is None:  # early stopping watches the validation error
        raise ValueError(
            f"patience: expected validation data (val=..., or n_val > 0) to stop on, "
            f"got patience={config.patience} and val=None"
        )
    x, y = _check_data(model, train, "train")
    val_xy = None if val is None else _check_data(model, val, "val")
    if val is not None and model.objective is None and val.num_classes != train.num_classes:
        raise ValueError(f"val.num_classes: expected {train.num_classes} like train, got {val.num_classes}")
    hp = check_hparams(hparams, S)
    if hp is not None and tx is not None:
        raise ValueError("hparams: expected the optimizer of the config, got a custom tx as well")
    if resume and checkpointer is None:
        raise ValueError("resume: expected a checkpointer to resume from, got checkpointer=None")
    if max_members is not None:
        check_positive(max_members, name="max_members", integer=True)
    size = S if state is not None else min(S, max_members or S)
    starts = list(range(0, S, size))
    if len(starts) > 1:
        if checkpointer is not None:
            raise ValueError(
                f"checkpointer: expected all {S} members in one program to checkpoint them, "
                f"got chunks of {size}; raise max_members"
            )
        print(
            f"fit_many: {S} members in chunks of max_members={max_members}: running {len(starts)} programs",
            file=sys.stderr,
        )
    bar = Progress(config.epochs * len(starts), label=f"fit[{S}]" if S > 1 else "train", enabled=progress)
    # a second writer fails at `checkpointer.open()`, before anything is trained
    with contextlib.closing(bar), contextlib.nullcontext() if checkpointer is None else checkpointer.open():
        if checkpointer is not None and not resume and (latest := checkpointer.latest()) is not None:
            raise ValueError(
                f"checkpointer: {checkpointer.directory} already holds checkpoints of a run "
                f"({latest.name}); resume it (resume=True, --resume) or use an "
                f"empty folder"
            )
        runs = [
            _train(
                model,
                x,
                y,
                val_xy,
                jax.random.wrap_key_data(key_data[s : s + size]),
                config,
                hparams=None if hp is None else {k: v[s : s + size] for k, v in hp.items()},
                tx=tx,
                state=state,
                callbacks=callbacks,
                checkpointer=checkpointer,
                resume=resume,
                bar=bar,
                epoch_offset=c * config.epochs,
                raise_on_divergence=_raise_on_divergence,
            )
            for c, s in enumerate(starts)
        ]
    if len(runs) == 1:
        return runs[0]
    per_member = {
        f: [v for r in runs for v in getattr(r, f)]
        for f in ("histories", "best_epochs", "epochs_run", "stopped_early", "diverged")
    }
    return FitManyResult(
        _concat([r.variables for r in runs]),
        _concat([r.state for r in runs]),
        **per_member,
        train_seconds=sum(r.train_seconds for r in runs),
        chunks=len(runs),
        engine=runs[0].engine,
        setup_seconds=sum(r.setup_seconds for r in runs),
    )


def fit(
    model: Model,
    train: Dataset,
    *,
    key: ArrayLike,
    config: TrainConfig = TrainConfig(),
    val: Dataset | None = None,
    state: TrainState | None = None,
    tx: optax.GradientTransformation | None = None,
    callbacks: Sequence[Callback] = (),
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
    progress: bool | None = None,
) -> FitResult:
    """Trains `model` on `train` (x: [n, *model.input_shape], y: [n]) and validates on `val` each epoch:
    `fit_many` with the single member `key` (a jax.random.key or an int seed), its member axis
    squeezed. Raises DivergenceError when the loss or the parameters turn NaN or Inf.

    Each callback gets (epoch, state, record) after every epoch and stops training by
    returning True; `state` is valid during the call only (the next step donates its
    buffers): copy what you keep, e.g. `jax.tree.map(np.asarray, state.params)`. `tx` replaces
    the optimizer of `config` (e.g. one wrapped in `freeze`), with its own learning rate.
    `checkpointer` and `resume` as in `fit_many`: a resumed run ends bitwise as the
    uninterrupted run would.
    """
    squeezed = [lambda epoch, s, records, cb=cb: cb(epoch, member(s, 0), records[0]) for cb in callbacks]
    many = fit_many(
        model,
        train,
        keys=[as_key(key)],
        config=config,
        val=val,
        tx=tx,
        callbacks=squeezed,
        state=None if state is None else stack([state]),
        checkpointer=checkpointer,
        resume=resume,
        progress=progress,
        _raise_on_divergence=True,
    )
    return FitResult(
        member(many.variables, 0),
        member(many.state, 0),
        many.histories[0],
        many.best_epochs[0],
        many.epochs_run[0],
        many.stopped_early[0],
        many.train_seconds,
        many.engine,
        many.setup_seconds,
    )
