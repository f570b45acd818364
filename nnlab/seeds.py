"""Seeds as an axis: S models trained as one vmapped program, their ensemble and study tables.

Every leaf of the stacked `TrainState` has a leading member axis [S, ...]: each member has
its own initialization, data order, dropout keys, optimizer state and batch statistics
(nothing is averaged across members). Member i of `fit_many(keys=...)` equals
`fit(key=keys[i])` up to float rounding of the batched arithmetic.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checks import check_inputs, check_positive
from ._run import RunConfig, build_model, load_splits
from .data import Dataset
from .evaluate import _batches, _eval_batch
from .losses import get_loss
from .nn import Model
from .report import count_params, environment, format_table, params_sha256
from .train import TrainConfig, TrainState, as_key, epoch_order, init_state, make_train_step, make_tx
from .train._loop import _check_data, _check_patience, _copy
from .train._progress import Progress


def member_keys(keys) -> jax.Array:
    """A typed key array [S] from a sequence of int seeds, a typed key array [S] or raw key data [S, 2]."""
    if isinstance(keys, (list, tuple, range)):
        if not keys:
            raise ValueError("keys: expected at least one key or seed, got an empty sequence")
        return jnp.stack([as_key(k) for k in keys])
    arr = keys if isinstance(keys, jax.Array) else jnp.asarray(keys)
    if not jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        if arr.dtype != jnp.uint32 or arr.ndim != 2:
            raise TypeError(f"keys: expected typed keys [S], raw uint32 key data [S, 2] or int seeds, "
                            f"got {arr.shape} {arr.dtype}")
        arr = jax.random.wrap_key_data(arr)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"keys: expected a non-empty batch of keys of shape [S], got shape {arr.shape}")
    return arr


def member(tree, i: int):
    """Member i of a stacked pytree (every leaf [S, ...] -> [...])."""
    return jax.tree.map(lambda a: a[i], tree)


def init_many(model: Model, tx: optax.GradientTransformation, example_x: jax.Array, *, keys) -> TrainState:
    """S fresh training states stacked on a leading axis; member i is `init_state(..., key=keys[i])`."""
    return jax.vmap(lambda k: init_state(model, tx, example_x, key=k))(member_keys(keys))


class MemberHyperparams(NamedTuple):
    """Per-member learning rate and L2 lambda, carried in the optimizer state (so vmap gives each its own)."""

    learning_rate: jax.Array  # float32 [], multiplies the updates of the optimizer run at learning rate 1
    weight_decay: jax.Array  # float32 [], L2 lambda: adds 2 * lambda * theta to the gradient of the weights


def member_hyperparams(inner: optax.GradientTransformation, learning_rate: float, weight_decay: float, *,
                       decay_biases: bool = False) -> optax.GradientTransformation:
    """`inner` (built with learning rate 1) with the learning rate and the L2 term of the loss
    lambda * theta . theta moved into the optimizer state, so members of one program can differ in them."""

    def init(params):
        return inner.init(params), MemberHyperparams(jnp.float32(learning_rate), jnp.float32(weight_decay))

    def update(grads, state, params=None):
        inner_state, hp = state
        grads = jax.tree.map(lambda g, p: g + 2 * hp.weight_decay * p if decay_biases or p.ndim >= 2 else g,
                             grads, params)
        updates, inner_state = inner.update(grads, inner_state, params)
        return jax.tree.map(lambda u: hp.learning_rate * u, updates), (inner_state, hp)

    return optax.GradientTransformation(init, update)


class FitManyResult(NamedTuple):
    """What `fit_many` returns; stacked trees have a leading member axis [S, ...].

    variables: each member's best epoch's variables (final ones without validation)
    state: the final stacked training state (a stopped member's state is frozen at its stop)
    histories: one `fit`-style history per member (it ends where that member stopped)
    chunks: how many programs the S members were split into (1: all at once)
    """

    variables: dict
    state: TrainState
    histories: list[list[dict]]
    best_epochs: list[int]
    epochs_run: list[int]
    stopped_early: list[bool]
    train_seconds: float
    chunks: int

    @property
    def size(self) -> int:
        return len(self.histories)


def _mask(active: jax.Array, new, old):
    """Leaves of `new` for active members, of `old` for stopped ones; active: bool [S].

    PRNG keys are taken from `new`: a step never changes them (it derives fold_in(key, step)).
    """
    def pick(n, o):
        if jnp.issubdtype(n.dtype, jax.dtypes.prng_key):
            return n
        return jax.lax.select(jnp.broadcast_to(active.reshape(active.shape + (1,) * (n.ndim - 1)), n.shape), n, o)
    return jax.tree.map(pick, new, old)


def _programs(model: Model, tx, config: TrainConfig, n: int, batch: int):
    """The jitted vmapped pieces: epoch order, masked train step, validation batch, best-variable select."""
    step = jax.vmap(make_train_step(model, tx, config), in_axes=(0, 0, None, None, 0))

    def masked_step(state, metrics, x_all, y_all, order, active):
        new_state, new_metrics = step(state, metrics, x_all, y_all, order)
        return _mask(active, new_state, state), _mask(active, new_metrics, metrics)

    def end_epoch(state, active):
        return state.replace(epoch=state.epoch + active.astype(jnp.int32))

    threshold = get_loss(config.loss)[1]
    evaluate = jax.vmap(partial(_eval_batch, apply=model.apply, loss=config.loss, threshold=threshold),
                        in_axes=(0, None, None, None))
    return (
        jax.jit(jax.vmap(partial(epoch_order, n=n, batch_size=batch))),
        jax.jit(masked_step, donate_argnums=(0, 1)),
        jax.jit(end_epoch),
        jax.jit(lambda v, x, y, mask: evaluate(v, x, y, mask)[:2]),
        jax.jit(_mask),
    )


def _evaluate_many(evaluate, variables, batches, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss [S] (float64, summed batch by batch like `evaluate`) and error rate [S]."""
    loss_sum, preds = 0.0, []
    for xb, yb, mask, real in batches:
        ls, pred = evaluate(variables, xb, yb, mask)
        loss_sum = loss_sum + np.asarray(ls).astype(np.float64)
        preds.append(np.asarray(pred)[:, :real])
    errors = np.sum(np.concatenate(preds, axis=1) != y[None, :], axis=1)
    return loss_sum / y.shape[0], errors / y.shape[0]


def _optimizer(config: TrainConfig, steps_per_epoch: int, per_member: bool):
    """(tx, config for the loss): `make_tx(config)`, or with per-member learning rate and L2 in the optimizer."""
    if not per_member:
        return make_tx(config, steps_per_epoch), config
    tx = member_hyperparams(make_tx(config.replace(learning_rate=1.0), steps_per_epoch), 0.0, 0.0,
                            decay_biases=config.decay_biases)
    return tx, config.replace(weight_decay=0.0)


def _members_that_fit(model: Model, x: np.ndarray, config: TrainConfig, per_member: bool) -> int | None:
    """How many members fit in the accelerator's free memory (None on a CPU, which reports no limit).

    Per member: four copies of the training state (state, its donated successor, best variables,
    headroom) plus XLA's temporary buffers of one member's step, measured by compiling it.
    """
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0) - x.nbytes
    batch = x.shape[0] if config.batch_size is None else min(config.batch_size, x.shape[0])
    tx, loss_config = _optimizer(config, max(x.shape[0] // batch, 1), per_member)
    state = init_state(model, tx, jnp.asarray(x[:1]), key=jax.random.key(0))
    state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(state)
                      if not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key))
    step = jax.jit(make_train_step(model, tx, loss_config))
    compiled = step.lower(state, jnp.zeros((3,), jnp.float32), jnp.asarray(x[:batch]), jnp.zeros((batch,), jnp.int32),
                          jnp.arange(batch).reshape(1, batch)).compile()
    temp = getattr(compiled.memory_analysis(), "temp_size_in_bytes", 0)
    return max(1, int(0.8 * free) // (4 * state_bytes + temp))


def _fit_chunk(model: Model, x: np.ndarray, y: np.ndarray, keys: jax.Array, config: TrainConfig,
               val: tuple[np.ndarray, np.ndarray] | None, hparams: dict | None, bar: Progress):
    n, S = x.shape[0], keys.shape[0]
    batch = n if config.batch_size is None else min(config.batch_size, n)
    tx, config = _optimizer(config, n // batch, hparams is not None)
    state = init_many(model, tx, jnp.asarray(x[:1]), keys=keys)
    if hparams is not None:
        inner, _ = state.opt_state
        state = state.replace(opt_state=(inner, MemberHyperparams(
            jnp.asarray(hparams["learning_rate"], jnp.float32), jnp.asarray(hparams["weight_decay"], jnp.float32))))
    order_fn, step, end_epoch, evaluate, select = _programs(model, tx, config, n, batch)
    x_dev, y_dev = jax.device_put(x), jax.device_put(y)
    val_batches = None if val is None else [
        (jax.device_put(xb), jax.device_put(yb), jax.device_put(m), r)
        for xb, yb, m, r in _batches(val[0], val[1], min(config.eval_batch_size, val[0].shape[0]))]

    histories: list[list[dict]] = [[] for _ in range(S)]
    active = np.ones(S, bool)
    best = np.full((S, 2), np.inf)
    since_best, best_epochs = np.zeros(S, int), np.zeros(S, int)
    best_variables = None
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        act = jnp.asarray(active)
        order = order_fn(state.data_key, state.epoch)
        metrics = jnp.zeros((S, 3), jnp.float32)
        for _ in range(order.shape[1]):
            state, metrics = step(state, metrics, x_dev, y_dev, order, act)
        state = end_epoch(state, act)
        metrics = np.asarray(metrics).tolist()
        val_loss = val_error = [None] * S
        if val_batches is not None:
            val_loss, val_error = _evaluate_many(evaluate, state.variables, val_batches, val[1])
            improved = active & [(e, l) < tuple(b) for e, l, b in zip(val_error, val_loss, best)]
            best[improved] = np.stack([val_error, val_loss], axis=1)[improved]
            best_epochs[improved] = epoch
            since_best = np.where(improved, 0, since_best + active)
            best_variables = (_copy(state.variables) if best_variables is None
                              else select(jnp.asarray(improved), state.variables, best_variables))
        seconds = time.perf_counter() - t0
        for i in np.flatnonzero(active):
            loss_sum, errors, count = metrics[i]
            histories[i].append({"epoch": epoch, "train_loss": loss_sum / count, "train_error": errors / count,
                                 "val_loss": None if val is None else float(val_loss[i]),
                                 "val_error": None if val is None else float(val_error[i]), "seconds": seconds})
        bar.update(epoch, {"train_error": float(np.mean([h[-1]["train_error"] for h in histories])),
                           **({} if val is None else {"val_error": float(np.mean(val_error))})})
        if config.patience is not None and val is not None:
            active = active & (since_best < config.patience)
            if not active.any():
                break
    train_seconds = time.perf_counter() - start
    if best_variables is None:
        best_variables, best_epochs = state.variables, np.array([len(h) for h in histories])
    return best_variables, state, histories, best_epochs.tolist(), (~active).tolist(), train_seconds


def _concat(trees):
    return jax.tree.map(lambda *a: jnp.concatenate(a), *trees)


def fit_many(model: Model, train: Dataset, *, keys, config: TrainConfig = TrainConfig(), val: Dataset | None = None,
             hparams: dict | None = None, max_members: int | None = None,
             progress: bool | None = None) -> FitManyResult:
    """Trains S = len(keys) copies of `model` as one vmapped, jitted program (member i: key keys[i]).

    train: x [n, *model.input_shape], y [n]. With `val` and `config.patience`, each member stops
    on its own validation curve (its updates masked from then on) and keeps its own best
    variables. hparams: optional {'learning_rate': [S], 'weight_decay': [S]} per-member values
    replacing config's (L2 then acts through the optimizer, see `member_hyperparams`).
    max_members: run at most this many members per program (chunks, announced on stderr); by
    default as many as the accelerator's free memory holds (all of them on a CPU).
    """
    key_data = jax.random.key_data(member_keys(keys))  # [S, 2]: each chunk wraps fresh keys from it
    S = key_data.shape[0]
    _check_patience(config, val)
    x, y = _check_data(model, train, "train")
    val_xy = None
    if val is not None:
        val_xy = _check_data(model, val, "val")
        if val.num_classes != train.num_classes:
            raise ValueError(f"val.num_classes: expected {train.num_classes} like train, got {val.num_classes}")
    if hparams is not None:
        if set(hparams) != {"learning_rate", "weight_decay"}:
            raise ValueError(f"hparams: expected keys ['learning_rate', 'weight_decay'], got {sorted(hparams)}")
        for name, v in hparams.items():
            if np.shape(v) != (S,) or not np.all(np.asarray(v) >= 0):
                raise ValueError(f"hparams[{name!r}]: expected {S} values >= 0 (one per key), got {np.asarray(v)!r}")
        if config.optimizer == "adamw":
            raise ValueError("hparams: per-member weight decay needs an optimizer other than 'adamw', got 'adamw'")
    unsupported = {k: getattr(config, k) for k, ok in (("engine", ("auto", "step")), ("compute_dtype", ("float32",)),
                                                       ("devices", (1,))) if getattr(config, k) not in ok}
    if unsupported:
        raise ValueError(f"config: fit_many runs float32 per-step programs on one device (engine 'auto' or 'step', "
                         f"compute_dtype 'float32', devices 1), got {unsupported}")
    if max_members is not None:
        check_positive(max_members, name="max_members", integer=True)
    size = min(S, max_members or _members_that_fit(model, x, config, hparams is not None) or S)
    starts = list(range(0, S, size))
    if len(starts) > 1:
        why = f"max_members={max_members}" if max_members else "estimated from the device's free memory"
        print(f"fit_many: {S} members do not fit at once ({size} do, {why}); running {len(starts)} chunks",
              file=sys.stderr)
    bar = Progress(config.epochs * len(starts), label=f"fit_many[{S}]", enabled=progress)
    parts = []
    for c, s in enumerate(starts):
        hp = None if hparams is None else {k: np.asarray(v)[s:s + size] for k, v in hparams.items()}
        bar_c = _Offset(bar, c * config.epochs)
        parts.append(_fit_chunk(model, x, y, jax.random.wrap_key_data(key_data[s:s + size]), config, val_xy, hp, bar_c))
    bar.close()
    return FitManyResult(
        variables=_concat([p[0] for p in parts]) if len(parts) > 1 else parts[0][0],
        state=_concat([p[1] for p in parts]) if len(parts) > 1 else parts[0][1],
        histories=[h for p in parts for h in p[2]],
        best_epochs=[b for p in parts for b in p[3]],
        epochs_run=[len(h) for p in parts for h in p[2]],
        stopped_early=[s for p in parts for s in p[4]],
        train_seconds=sum(p[5] for p in parts),
        chunks=len(parts),
    )


class _Offset:
    """A Progress view that counts a chunk's epochs after the previous chunks'."""

    def __init__(self, bar: Progress, offset: int):
        self.bar, self.offset = bar, offset

    def update(self, done: int, record: dict) -> None:
        self.bar.update(self.offset + done, record)


def predict_many(model: Model, variables, x, *, batch_size: int = 1000) -> np.ndarray:
    """Outputs [S, n, classes] of S stacked members for x: [n, ...], in evaluation mode."""
    check_positive(batch_size, name="batch_size", integer=True)
    xa = check_inputs(x, name="x", feature_shape=model.input_shape).astype(np.float32)
    apply = jax.jit(jax.vmap(lambda v, xb: model.apply(v, xb, train=False)[0], in_axes=(0, None)))
    outs = [np.asarray(apply(variables, xb))[:, :real]
            for xb, _, _, real in _batches(xa, np.zeros(xa.shape[0], np.int32), min(batch_size, xa.shape[0]))]
    return np.concatenate(outs, axis=1)


def ensemble_outputs(outputs, *, loss: str = "softmax_cross_entropy") -> np.ndarray:
    """The lecture's ensemble: the members' outputs [S, n, classes] summed, divided by S -> [n, classes].

    Softmax models are combined as probabilities softmax(logits); other losses' outputs as they
    are. Dividing by S leaves the argmax of the sum unchanged and keeps a single output on the
    scale its decision threshold is meant for.
    """
    o = np.asarray(outputs, np.float64)
    if o.ndim != 3:
        raise ValueError(f"outputs: expected [S, n, classes], got shape {o.shape}")
    get_loss(loss)
    if loss == "softmax_cross_entropy":
        o = np.exp(o - o.max(axis=-1, keepdims=True))
        o = o / o.sum(axis=-1, keepdims=True)
    return o.mean(axis=0)


def labels_of(outputs, *, loss: str = "softmax_cross_entropy") -> np.ndarray:
    """Predicted labels [..., n] from outputs [..., n, classes] (argmax, or a threshold for one output)."""
    o = np.asarray(outputs)
    if o.shape[-1] == 1:
        return (o[..., 0] > get_loss(loss)[1]).astype(np.int32)
    return np.argmax(o, axis=-1).astype(np.int32)


def seed_study(predictions, labels, *, ensemble_predictions=None) -> dict:
    """How S runs differ on one test set; predictions: int [S, n], labels: int [n].

    seed_test_error: [S] fractions; seed_errors: [S] counts; pairwise_disagreement: one row per
    pair (a < b): errors both make (`shared_errors`), errors only a / only b makes (the lecture's
    "errors in the 2nd network that the 1st does not make") and the fraction of samples whose
    predicted labels differ; wrong_by_exactly_k: [S + 1] samples misclassified by exactly k
    models; ensemble_test_error when `ensemble_predictions` [n] is given.
    """
    p = np.asarray(predictions)
    if p.ndim != 2:
        raise ValueError(f"predictions: expected int labels [S, n], got shape {p.shape}")
    t = np.asarray(labels)
    if t.shape != (p.shape[1],):
        raise ValueError(f"labels: expected shape ({p.shape[1]},) like predictions [S, n], got {t.shape}")
    wrong = p != t[None, :]  # [S, n]
    errors = wrong.sum(axis=1)
    pairs = [{"a": a, "b": b, "shared_errors": int(np.sum(wrong[a] & wrong[b])),
              "only_a": int(np.sum(wrong[a] & ~wrong[b])), "only_b": int(np.sum(wrong[b] & ~wrong[a])),
              "label_disagreement": float(np.mean(p[a] != p[b]))}
             for a in range(p.shape[0]) for b in range(a + 1, p.shape[0])]
    rates = errors / t.shape[0]
    study = {
        "n_test": int(t.shape[0]),
        "seed_test_error": rates.tolist(),
        "seed_errors": errors.tolist(),
        "test_error_mean": float(rates.mean()), "test_error_std": float(rates.std(ddof=1)) if len(rates) > 1 else 0.0,
        "test_error_min": float(rates.min()), "test_error_max": float(rates.max()),
        "pairwise_disagreement": pairs,
        "wrong_by_exactly_k": np.bincount(wrong.sum(axis=0), minlength=p.shape[0] + 1).tolist(),
    }
    if ensemble_predictions is not None:
        e = np.asarray(ensemble_predictions)
        if e.shape != t.shape:
            raise ValueError(f"ensemble_predictions: expected shape {t.shape} like labels, got {e.shape}")
        study["ensemble_errors"] = int(np.sum(e != t))
        study["ensemble_test_error"] = float(np.mean(e != t))
    return study


def run_seeds(config: RunConfig, seeds: Sequence[int], *, max_members: int | None = None,
              progress: bool | None = None) -> tuple[dict, FitManyResult]:
    """`run(config)` for each seed as one vmapped program (member i: `config.replace(seed=seeds[i])`),
    plus the study of how the members differ on the test split and their ensemble."""
    if len(seeds) < 2:
        raise ValueError(f"seeds: expected at least 2 seeds for a study, got {list(seeds)}")
    splits = load_splits(config)
    model = build_model(config, splits.train)
    val = splits.val if splits.val.n > 0 else None
    result = fit_many(model, splits.train, keys=list(seeds), config=config.train, val=val,
                      max_members=max_members, progress=progress)
    test = splits.test
    outputs = predict_many(model, result.variables, test.x, batch_size=config.train.eval_batch_size)
    ensemble = labels_of(ensemble_outputs(outputs, loss=config.train.loss), loss=config.train.loss)
    study = seed_study(labels_of(outputs, loss=config.train.loss), test.y, ensemble_predictions=ensemble)
    results = {
        "model": config.model, "dataset": config.dataset, "seeds": list(seeds),
        **study,
        "seed_val_error": [h[b - 1]["val_error"] for h, b in zip(result.histories, result.best_epochs)],
        "best_epochs": result.best_epochs, "epochs_run": result.epochs_run,
        "train_seconds": result.train_seconds, "chunks": result.chunks,
        "params": count_params(member(result.variables["params"], 0)),
        "params_sha256": [params_sha256(member(result.variables["params"], i)) for i in range(len(seeds))],
        **environment(),
        "config": config.to_dict(),
    }
    return results, result


def format_study(results: dict) -> str:
    """The terminal report of `run_seeds`: per-seed errors, pairwise errors, exactly-k counts, ensemble."""
    n, S = results["n_test"], len(results["seeds"])
    rows = [{"seed": s, "val_error_%": None if v is None else 100 * v, "test_error_%": 100 * t, "test_errors": e,
             "best_epoch": b, "epochs_run": r}
            for s, v, t, e, b, r in zip(results["seeds"], results["seed_val_error"], results["seed_test_error"],
                                        results["seed_errors"], results["best_epochs"], results["epochs_run"])]
    pairs = [{"a": results["seeds"][p["a"]], "b": results["seeds"][p["b"]], **{k: p[k] for k in list(p)[2:]}}
             for p in results["pairwise_disagreement"]]
    return "\n".join([
        format_table(rows),
        f"\npairwise: errors both make, errors only a / only b makes (of {n}); fraction of labels that differ",
        format_table(pairs),
        f"\nmisclassified by exactly k of {S} models (k = 0..{S}): {results['wrong_by_exactly_k']}",
        f"{results['model']}, {S} seeds: test error mean {100 * results['test_error_mean']:.2f}% "
        f"(std {100 * results['test_error_std']:.2f}, min {100 * results['test_error_min']:.2f}, "
        f"max {100 * results['test_error_max']:.2f}); ensemble (sum of outputs) "
        f"{100 * results['ensemble_test_error']:.2f}% ({results['ensemble_errors']}/{n}); "
        f"{results['train_seconds']:.1f} s training in {results['chunks']} program(s) on {results['device']}",
    ])
