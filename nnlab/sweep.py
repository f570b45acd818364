"""Hyperparameter sweeps: grid and random search, chosen on validation, reported on test.

Settings that differ only in learning rate, weight decay and momentum keep the parameter
shapes and the program the same, so they train as members of one vmapped `fit_many` program
(the values travel in each member's optimizer state); the other knobs (batch size, width, depth,
activation, dropout rate) start a new program. The lecture's advice comes first: a pilot
stage of short runs on a small training subset drops the settings that do not learn at all.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ._run import RunConfig, build_model, load_splits
from .data import Splits
from .evaluation import predict, predict_labels
from .losses import get_loss
from .report import environment
from .train import MEMBER_HPARAMS, fit_many

# knob -> where it lives: the TrainConfig ('train'), the model's keyword arguments ('model'),
# or the optimizer state of one member ('member': vmapped within one program)
KNOBS = {
    "learning_rate": "member",
    "weight_decay": "member",
    "momentum": "member",
    "batch_size": "train",
    "drop_rate": "model",
    "width": "model",
    "depth": "model",
    "activation": "model",
}
"""Knobs a sweep can search: name -> where it lives (see the comment above)."""
_LOG_UNIFORM = ("learning_rate", "weight_decay")
# `nnlab sweep mnist-mlp` without --param: around the default recipe (lr 1e-3, L2 1e-4, width 100)
DEFAULT_SPACE: dict[str, list[Any]] = {"learning_rate": [1e-3, 2e-3], "weight_decay": [3e-5, 1e-4], "width": [100, 256]}
"""The grid `nnlab sweep` searches when no --param is given."""


def grid(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the listed values: {'width': [100, 200], 'learning_rate': [1e-3]} -> 2 settings."""
    _check_space(space, ranges=False)
    names = list(space)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(space[n] for n in names))]


def random_search(space: Mapping[str, Any], n: int, *, key: jax.Array) -> list[dict[str, Any]]:
    """n settings drawn at random: a list is a set of choices; a (low, high) tuple a range, drawn
    log-uniformly for learning_rate and weight_decay (low > 0) and uniformly otherwise."""
    _check_space(space, ranges=True)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive number of settings, got {n!r}")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).astype(np.uint64))

    def draw(name: str, values: Any) -> Any:
        if not isinstance(values, tuple):  # a list of choices
            return values[int(rng.integers(len(values)))]
        lo, hi = values
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))) if name in _LOG_UNIFORM else rng.uniform(lo, hi))

    return [{name: draw(name, values) for name, values in space.items()} for _ in range(n)]


def _check_space(space: Mapping[str, Any], *, ranges: bool) -> None:
    for name, values in space.items():
        if name not in KNOBS:
            raise ValueError(f"space: expected knobs from {sorted(KNOBS)}, got {name!r}")
        if ranges and isinstance(values, tuple):
            ok = len(values) == 2 and all(isinstance(v, (int, float)) for v in values) and values[0] < values[1]
            if not ok or (name in _LOG_UNIFORM and values[0] <= 0):
                raise ValueError(f"space[{name!r}]: expected a range (low, high) with 0 < low < high, got {values!r}")
        elif not isinstance(values, list) or not values:
            kind = "a non-empty list of values or a (low, high) range" if ranges else "a non-empty list of values"
            raise ValueError(f"space[{name!r}]: expected {kind}, got {values!r}")


def _configure(base: RunConfig, setting: dict[str, Any]) -> RunConfig:
    """`base` with the program-level knobs of `setting` (not learning rate / weight decay) applied."""
    model_kwargs = {**base.model_kwargs, **{k: v for k, v in setting.items() if KNOBS[k] == "model"}}
    train = base.train.replace(**{k: v for k, v in setting.items() if KNOBS[k] == "train"})
    return base.replace(model_kwargs=model_kwargs, train=train)


def _programs(base: RunConfig, settings: list[dict[str, Any]]) -> dict[tuple[tuple[str, Any], ...], list[int]]:
    """Indices of the settings grouped by everything but the per-member knobs (one program per group)."""
    groups: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    for i, s in enumerate(settings):
        key = tuple(sorted((k, v) for k, v in s.items() if KNOBS[k] != "member"))
        groups.setdefault(key, []).append(i)
    return groups


def _train_settings(
    base: RunConfig,
    settings: list[dict[str, Any]],
    splits: Splits,
    *,
    max_members: int | None,
    progress: bool | None,
    test: bool,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{} for _ in settings]
    for program, (_, idx) in enumerate(_programs(base, settings).items()):
        cfg = _configure(base, settings[idx[0]])
        model = build_model(cfg, splits.train)
        hparams = {k: [settings[i].get(k, getattr(cfg.train, k)) for i in idx] for k in MEMBER_HPARAMS}
        r = fit_many(
            model,
            splits.train,
            keys=[base.seed] * len(idx),
            config=cfg.train,
            val=splits.val,
            hparams=hparams,
            max_members=max_members,
            progress=progress,
        )
        test_labels = (
            np.asarray(
                predict_labels(
                    predict(model, r.variables, splits.test.x, members=True, batch_size=cfg.train.eval_batch_size),
                    get_loss(cfg.train.loss)[1],
                )
            )
            if test
            else None
        )
        for m, i in enumerate(idx):
            best = r.histories[m][r.best_epochs[m] - 1] if r.best_epochs[m] else {"val_error": None}
            rows[i] = {
                **settings[i],
                "val_error": best["val_error"],
                "best_epoch": r.best_epochs[m],
                "diverged": r.diverged[m],
                "epochs_run": r.epochs_run[m],
                "program": program,
                "members": len(idx),
                "train_seconds": r.train_seconds,
            }
            if test_labels is not None:
                rows[i]["test_error"] = float(np.mean(test_labels[m] != splits.test.y))
    return rows


def sweep(
    base: RunConfig,
    settings: list[dict[str, Any]],
    *,
    pilot_epochs: int | None = 3,
    pilot_subset: int = 5000,
    learns_below: float = 0.9,
    max_members: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Trains `base` with each setting (a dict of KNOBS values), best validation error first.

    Pilot (the lecture's "first make it learn"): with `pilot_epochs`, every setting first trains
    that many epochs on `pilot_subset` training samples; those whose validation error stays at
    or above `learns_below` x chance level's error are dropped. The rest train the full
    `base.train`; the winner is the lowest validation error, and its test error is reported.
    Every setting trains with `base.seed` (one initialization and data order where the shapes
    agree), so the comparison isolates the knobs.
    """
    if not settings:
        raise ValueError("settings: expected at least one setting, got none")
    for s in settings:
        _check_space({k: [v] for k, v in s.items()}, ranges=False)
    splits = load_splits(base)
    if splits.val.n == 0:
        raise ValueError("base.n_val: expected a validation split to choose on (n_val > 0), got 0")
    pilot_rows, keep = [], list(range(len(settings)))
    if pilot_epochs:
        small = splits._replace(train=splits.train.take(min(pilot_subset, splits.train.n)))
        pilot_base = base.replace(train=base.train.replace(epochs=pilot_epochs, patience=None))
        pilot_rows = _train_settings(
            pilot_base, settings, small, max_members=max_members, progress=progress, test=False
        )
        chance_error = 1.0 - 1.0 / max(splits.train.num_classes, 2)
        keep = [
            i
            for i, r in enumerate(pilot_rows)
            if r["val_error"] is not None and r["val_error"] < learns_below * chance_error
        ]
        if not keep:
            raise ValueError(
                f"settings: none learned in the pilot (validation error below {learns_below} x "
                f"{chance_error:.2f}); try smaller learning rates"
            )
    rows = _train_settings(
        base, [settings[i] for i in keep], splits, max_members=max_members, progress=progress, test=True
    )
    rows.sort(key=lambda r: math.inf if r["val_error"] is None else r["val_error"])
    return {
        "best": rows[0],
        "rows": rows,
        "pilot": [dict(r, learned=i in keep) for i, r in enumerate(pilot_rows)],
        "programs": len(_programs(base, [settings[i] for i in keep])),
        **environment(),
        "base_config": base.to_dict(),
    }
