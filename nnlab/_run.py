"""One whole run, as the CLI and the experiments do it: data, model, fit, test, results."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from . import data as D
from ._checks import check_positive, check_seed
from .checkpoint import Checkpointer, CheckpointError, load_model
from .detect import DetectionConfig, Detections, train_and_score
from .evaluation import evaluate, predict, predict_labels
from .losses import get_loss
from .nn import Model, get_model, with_normalization
from .report import count_params, environment, params_sha256
from .study import ensemble_outputs, seed_study
from .train import FitManyResult, FitResult, Logger, TrainConfig, fit, fit_many, member, stream


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A run: which model on which data, how the data is split and normalized, how to train.

    dataset: 'mnist', 'fashion-mnist', 'xor', 'spirals' or 'blobs'
    n_val: validation samples held out of the training set (0: none)
    normalize: 'per_feature' (training mean/std per input), 'global' (one mean/std) or 'none'
    seed: initialization, data order and dropout (an integer in [0, 2**32 - 1])
    split_seed: the key of the train/validation split, kept apart from `seed` so that
      runs with different seeds share one split
    train_subset: train on only N samples, taken after the validation split is held out (the
      validation split stays the same), for quick runs
    """

    model: str
    dataset: str
    train: TrainConfig = TrainConfig()
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    n_val: int = 0
    normalize: str = "per_feature"
    seed: int = 0
    split_seed: int = 0
    train_subset: int | None = None
    data_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("seed", "split_seed"):
            check_seed(getattr(self, name), name=name)
        if isinstance(self.n_val, bool) or not isinstance(self.n_val, int) or self.n_val < 0:
            raise ValueError(f"n_val: expected a number of validation samples >= 0, got {self.n_val!r}")
        if self.train_subset is not None:
            check_positive(self.train_subset, name="train_subset", integer=True)
            if self.train_subset < 2:
                raise ValueError(f"train_subset: expected at least 2 samples, got {self.train_subset}")

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with `changes` (field=value) applied and checked again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON data (what --json and checkpoints record)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """The inverse of `to_dict` (e.g. of a checkpoint's saved config)."""
        train = dict(data.get("train", {}))
        if "augmentation" in train:
            train["augmentation"] = D.Augmentation(**train["augmentation"])
        return cls(**{**data, "train": TrainConfig(**train)})


_SYNTHETIC: dict[str, Callable[..., D.Dataset]] = {"spirals": D.spirals, "blobs": D.blobs}


def load_splits(config: RunConfig) -> D.Splits:
    """The (train, val, test) data of `config`; a synthetic set is tested on a fresh draw."""
    if config.dataset == "xor":
        train = test = D.xor()
    elif config.dataset in _SYNTHETIC:
        k_train, k_test = jax.random.split(stream(jax.random.key(config.split_seed), "dataset"))
        train, test = _SYNTHETIC[config.dataset](1000, key=k_train), _SYNTHETIC[config.dataset](1000, key=k_test)
    else:
        train, test = D.load_dataset(config.dataset, config.data_dir)
    if config.n_val >= train.n:
        raise ValueError(f"n_val: expected fewer than the {train.n} training samples, got {config.n_val}")
    splits = D.train_val_test(train, test, n_val=config.n_val, key=stream(jax.random.key(config.split_seed), "split"))
    if config.train_subset is not None:
        if config.train_subset > splits.train.n:
            raise ValueError(
                f"train_subset: expected at most the {splits.train.n} training samples left after "
                f"holding out {config.n_val} for validation, got {config.train_subset}"
            )
        splits = splits._replace(train=splits.train.take(config.train_subset))
    return splits


def build_model(config: RunConfig, train: D.Dataset) -> Model:
    """The named model, wrapped with the normalization fitted on `train`."""
    model = get_model(config.model, **config.model_kwargs)
    if config.normalize == "none":
        return model
    if config.normalize not in ("per_feature", "global"):
        raise ValueError(f"normalize: expected 'per_feature', 'global' or 'none', got {config.normalize!r}")
    return with_normalization(model, D.fit_normalization(train.x, per_feature=config.normalize == "per_feature"))


def _leaves(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{'train.learning_rate': 0.001, ...}: the nested config as dotted field names."""
    out = {}
    for k, v in tree.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def config_changes(saved: dict, config: dict, *, epoch: int) -> list[str]:
    """'field: checkpoint A, now B' for every setting that differs between a checkpoint's config
    and the resuming run's; data_dir may differ, and train.epochs may grow (or shrink down to
    the checkpoint's `epoch`): the run then continues to the new number of epochs."""
    old, new = _leaves(saved), _leaves(config)
    pairs = {k: (old.get(k, "(absent)"), new.get(k, "(absent)")) for k in sorted(set(old) | set(new))}
    return [
        f"{k}: checkpoint {a!r}, now {b!r}"
        for k, (a, b) in pairs.items()
        if not (a == b or k == "data_dir" or (k == "train.epochs" and isinstance(b, int) and b >= epoch))
    ]


def _prepare(
    config: RunConfig,
    directory: str | os.PathLike | None,
    *,
    resume: bool,
    every: int,
    keep: int,
    seeds: Sequence[int] | None = None,
) -> tuple[D.Splits, Model, D.Dataset | None, Checkpointer | None]:
    """(splits, model, val or None, checkpointer or None) of a run. On resume, the newest valid checkpoint must
    have been written with the same settings (each changed one is named, with both values). seeds: a seed
    study's seeds (saved in its checkpoints' config)."""
    splits = load_splits(config)
    model = build_model(config, splits.train)
    val = splits.val if splits.val.n > 0 else None
    if directory is None:
        return splits, model, val, None
    saved = json.loads(json.dumps(config.to_dict() | ({} if seeds is None else {"seeds": list(seeds)})))
    ckpt = Checkpointer(directory, every=every, keep=keep, config=saved)
    latest = ckpt.latest_valid() if resume else None
    if latest is not None:
        meta = json.loads((latest / "meta.json").read_text())
        changes = config_changes(meta.get("config") or {}, saved, epoch=meta["epoch"])
        if changes:
            raise CheckpointError(
                f"resume: {latest} was written with other settings: {'; '.join(changes)} "
                f"(resume with the same settings, or start a new run in another folder)"
            )
    return splits, model, val, ckpt


def _results(config: RunConfig | DetectionConfig, **fields: Any) -> dict[str, Any]:
    """The results of a run for --json: `fields` between the model and data set and the environment, config
    and command (the CLI replaces the command with its own `nnlab ...` line)."""
    return {
        "model": config.model,
        "dataset": config.dataset,
        **fields,
        **environment(),
        "config": config.to_dict(),
        "command": "python " + shlex.join(sys.argv),
    }


def run(
    config: RunConfig,
    *,
    progress: bool | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
    keep: int = 3,
    callbacks: Sequence[Callable] = (),
    logdir: str | os.PathLike | None = None,
) -> tuple[dict, FitResult]:
    """Trains and tests as `config` says; returns (results for --json, the FitResult).

    With `checkpoint_dir`, checkpoints are written every `checkpoint_every` epochs (the last
    `keep` and the best are kept); with `resume`, the run continues from the latest one.
    `callbacks` go to `fit` (each gets epoch, state, record after every epoch). With `logdir`,
    every epoch's metrics go to `logdir/metrics.jsonl` and TensorBoard event files in `logdir/run/`
    (`nnlab.train.Logger`; event files need tensorboardX, `pip install nnlab[logging]`).
    """
    splits, model, val, ckpt = _prepare(config, checkpoint_dir, resume=resume, every=checkpoint_every, keep=keep)
    logger = None if logdir is None else Logger(logdir, tensorboard=None)
    if logger is not None and not logger.tensorboard:
        print(
            f"logdir: tensorboardX is not installed (pip install nnlab[logging]): writing "
            f"{logger.logdir / 'metrics.jsonl'} only",
            file=sys.stderr,
        )
    with logger or contextlib.nullcontext():
        result = fit(
            model,
            splits.train,
            key=jax.random.key(config.seed),
            config=config.train,
            val=val,
            progress=progress,
            checkpointer=ckpt,
            resume=resume,
            callbacks=[*callbacks, *([logger] if logger is not None else [])],
        )
    test = evaluate(
        model,
        result.variables,
        splits.test.x,
        splits.test.y,
        num_classes=splits.test.num_classes,
        loss=config.train.loss,
        batch_size=config.train.eval_batch_size,
    )
    best = result.history[result.best_epoch - 1]
    return _results(
        config,
        test_error=test.error_rate,
        test_errors=test.errors,
        n_test=test.n,
        val_error=best["val_error"],
        params=count_params(result.variables["params"]),
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        stopped_early=result.stopped_early,
        train_seconds=result.train_seconds,
        setup_seconds=result.setup_seconds,
        epoch_seconds=result.epoch_seconds,
        engine=result.engine,
        seed=config.seed,
        params_sha256=params_sha256(result.variables["params"]),
        history=result.history,
    ), result


def run_detection(config: DetectionConfig, *, progress: bool | None = None) -> tuple[dict, Detections]:
    """Trains and scores the detector `config` names on fresh scenes; returns (results for --json, the
    test Detections). The results hold the detector's row of `nnlab.detect.train_and_score` under its
    name (e.g. `results["faster_rcnn"]["map50"]`), as experiments/detection.py writes them."""
    k_train, k_test = jax.random.split(jax.random.key(config.seed))
    train = D.mnist_scenes(config.train_scenes, key=k_train, split="train", data_dir=config.data_dir)
    test = D.mnist_scenes(config.test_scenes, key=k_test, split="test", data_dir=config.data_dir)
    row, detections = train_and_score(
        config.model,
        train,
        test,
        config=config.train,
        seed=config.seed,
        svm_steps=config.svm_steps,
        speed_images=config.speed_images,
        progress=progress,
    )
    return _results(config, **{config.model: row}, test_scenes=test.n), detections


def evaluate_checkpoint(path: str | os.PathLike, *, data_dir: str | None = None) -> dict:
    """Tests the model saved at `path` (a checkpoint, or a folder of them: its best) on its
    run's test split; returns results for --json."""
    loaded = load_model(path)
    config = RunConfig.from_dict(loaded.config)
    if data_dir is not None:
        config = config.replace(data_dir=data_dir)
    test = load_splits(config).test
    ev = evaluate(
        loaded.model,
        loaded.variables,
        test.x,
        test.y,
        num_classes=test.num_classes,
        loss=config.train.loss,
        batch_size=config.train.eval_batch_size,
    )
    return _results(
        config,
        checkpoint=str(loaded.path),
        test_error=ev.error_rate,
        test_errors=ev.errors,
        n_test=ev.n,
        test_loss=ev.loss,
        params=count_params(loaded.variables["params"]),
        params_sha256=params_sha256(loaded.variables["params"]),
    )


def run_seeds(
    config: RunConfig,
    seeds: Sequence[int],
    *,
    max_members: int | None = None,
    progress: bool | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
    keep: int = 3,
    callbacks: Sequence[Callable] = (),
) -> tuple[dict, FitManyResult]:
    """`run(config)` for each seed as one vmapped program (member i: `config.replace(seed=seeds[i])`),
    plus the study of how the members differ on the test split and their ensemble. Checkpoints
    and resume as in `run` (all members in one checkpoint); `callbacks` go to `fit_many`."""
    if len(seeds) < 2:
        raise ValueError(f"seeds: expected at least 2 seeds for a study, got {list(seeds)}")
    for s in seeds:
        check_seed(s, name="seeds")
    splits, model, val, ckpt = _prepare(
        config, checkpoint_dir, resume=resume, every=checkpoint_every, keep=keep, seeds=seeds
    )
    result = fit_many(
        model,
        splits.train,
        keys=list(seeds),
        config=config.train,
        val=val,
        max_members=max_members,
        progress=progress,
        checkpointer=ckpt,
        resume=resume,
        callbacks=callbacks,
    )
    test = splits.test
    outputs = predict(model, result.variables, test.x, batch_size=config.train.eval_batch_size, members=True)
    threshold = get_loss(config.train.loss)[1]
    ensemble = np.asarray(predict_labels(ensemble_outputs(outputs, loss=config.train.loss), threshold))
    study = seed_study(np.asarray(predict_labels(outputs, threshold)), test.y, ensemble_predictions=ensemble)
    params = [member(result.variables["params"], i) for i in range(len(seeds))]
    return _results(
        config,
        seeds=list(seeds),
        **study,
        best_epochs=result.best_epochs,
        seed_val_error=[
            h[b - 1]["val_error"] if b else None for h, b in zip(result.histories, result.best_epochs, strict=True)
        ],
        epochs_run=result.epochs_run,
        diverged=result.diverged,
        train_seconds=result.train_seconds,
        setup_seconds=result.setup_seconds,
        chunks=result.chunks,
        engine=result.engine,
        params=count_params(params[0]),
        params_sha256=[params_sha256(p) for p in params],
    ), result
