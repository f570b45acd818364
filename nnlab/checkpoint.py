"""Checkpoints: the whole training state saved with Orbax, verified by a SHA-256 manifest.

One checkpoint is a folder `DIR/epoch_000012/`:

    arrays/         Orbax (OCDBT): {"state": the TrainState, "best": the best epoch's variables}
                    as nested dicts of arrays (PRNG keys as their uint32 key data)
    meta.json       format, epoch, the run's config, fit's bookkeeping (history, best epoch, ...),
                    SHA-256 of the arrays' values
    manifest.json   SHA-256 and size of every other file, written last

A save writes into `DIR/.tmp-epoch_000012/` and renames it into place only when complete,
so a folder named `epoch_*` is always whole; restoring re-hashes every file against the
manifest (Orbax itself verifies no values) and the restored values against meta.json. The
manifest guards against incomplete, truncated and damaged files, not against someone who
rewrites it along with the files. Nothing is pickled: loading never runs code.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from .data import Normalization
from .nn import Model, get_model, with_normalization
from .report import file_sha256, params_sha256

FORMAT = "nnlab-checkpoint-1"
_PREFIX = "epoch_"
_TMP = ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, is incomplete, was altered or does not fit the model."""


class Checkpoint(NamedTuple):
    """A restored checkpoint.

    state: the training state (TrainState when restored into a template, nested dicts otherwise)
    best_variables: the best epoch's variables (None when `fit` had no validation yet)
    log: fit's bookkeeping as JSON data (history, best, best_epoch, since_best, stopped)
    config: the run's configuration as saved (a dict), or None
    """

    path: Path
    epoch: int
    state: Any
    best_variables: Any
    log: dict
    config: dict | None


def _name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    raise TypeError(f"tree: unsupported pytree key {k!r}")


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _host(leaf) -> np.ndarray:
    """A host copy (never a view of a buffer the next step may donate)."""
    return np.array(jax.random.key_data(leaf) if _is_key(leaf) else leaf, copy=True)


def _flat(tree) -> dict[str, Any]:
    """{'params/dense0/w': leaf, ...} in `jax.tree.leaves` order."""
    return {"/".join(_name(k) for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _nest(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for path, leaf in flat.items():
        *parents, last = path.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return out


def to_plain(tree) -> dict:
    """`tree` as nested dicts of NumPy arrays keyed by the pytree path (dataclass fields and
    tuple positions become keys, PRNG keys their uint32 key data): what a checkpoint holds."""
    return _nest({p: _host(leaf) for p, leaf in _flat(tree).items()})


def _spec(leaf) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype as stored (a PRNG key's as its key data)."""
    a = jax.random.key_data(leaf) if _is_key(leaf) else leaf
    return tuple(np.shape(a)), np.dtype(a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype)


def from_plain(plain: dict, template, *, name: str = "checkpoint"):
    """The inverse of `to_plain`: `plain`'s arrays in the structure of `template`.

    Raises CheckpointError naming every missing, unexpected or differently shaped key.
    """
    got = _flat(plain)
    want = _flat(template)
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    wrong = [f"{k}: checkpoint {_spec(got[k])[0]} {_spec(got[k])[1]}, model {_spec(v)[0]} {_spec(v)[1]}"
             for k, v in want.items() if k in got and _spec(got[k]) != _spec(v)]
    if missing or unexpected or wrong:
        parts = [f"missing keys {missing}" if missing else "", f"unexpected keys {unexpected}" if unexpected else "",
                 f"mismatched shapes/dtypes [{'; '.join(wrong)}]" if wrong else ""]
        raise CheckpointError(f"{name}: the checkpoint's tree does not match the model: "
                              + ", ".join(p for p in parts if p))
    leaves = [jax.random.wrap_key_data(jnp.asarray(got[k]), impl=jax.random.key_impl(v)) if _is_key(v)
              else jnp.asarray(got[k]) for k, v in want.items()]
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(folder: Path, arrays: dict, meta: dict) -> None:
    """Writes a complete checkpoint into `folder` (which must not exist), manifest last."""
    folder.mkdir(parents=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(folder / "arrays", arrays)
        ckptr.wait_until_finished()
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    manifest = {str(p.relative_to(folder)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
                for p in _files(folder)}
    for p in _files(folder):
        _fsync(p)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    _fsync(folder / "manifest.json")


def verify(path: str | os.PathLike) -> dict:
    """Checks the checkpoint folder `path` against its manifest; returns its meta data.

    Raises CheckpointError for a missing folder or manifest (an incomplete save), a missing,
    truncated or altered file, naming the file and both hashes.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint: expected a checkpoint folder, got {str(path)!r} (not a folder)")
    if not (path / "manifest.json").is_file():
        raise CheckpointError(f"checkpoint: {path} has no manifest.json: an incomplete save, not a valid checkpoint")
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint: {path}/manifest.json is damaged ({e})") from None
    for rel, want in manifest.items():
        f = path / rel
        if not f.is_file():
            raise CheckpointError(f"checkpoint: {f} is listed in the manifest but missing")
        size, sha = f.stat().st_size, file_sha256(f)
        if sha != want["sha256"]:
            raise CheckpointError(f"checkpoint: {f} was truncated or altered: {size} bytes, sha256 {sha}, "
                                  f"expected {want['bytes']} bytes, sha256 {want['sha256']}")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint: {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def read_checkpoint(path: str | os.PathLike, template=None) -> Checkpoint:
    """The verified checkpoint at `path`; its state restored into the structure of
    `template` (a TrainState) and its best variables into `template.variables` when given,
    else both as plain nested dicts of NumPy arrays."""
    path = Path(path)
    meta = verify(path)
    with ocp.StandardCheckpointer() as ckptr:
        plain = ckptr.restore(path / "arrays")
    if params_sha256(plain) != meta["arrays_sha256"]:
        raise CheckpointError(f"checkpoint: {path}: the restored values differ from the saved ones "
                              f"(sha256 {params_sha256(plain)}, expected {meta['arrays_sha256']})")
    state, best = plain["state"], plain.get("best")
    if template is not None:
        state = from_plain(state, template, name=f"{path}: state")
        if best is not None:
            best = from_plain(best, template.variables, name=f"{path}: best variables")
    return Checkpoint(path, meta["epoch"], state, best, meta["log"], meta.get("config"))


class Checkpointer:
    """Saves checkpoints into `directory` and finds them again.

    every: `fit` saves every `every` epochs (and at the end); keep: the last `keep`
    checkpoints stay, plus the one of the best validation error. config: saved with each
    checkpoint (e.g. `RunConfig.to_dict()`). async_save: write in a background thread
    (the arrays are copied to the host first); its failure is raised by the next `save`
    or by `wait`.
    """

    def __init__(self, directory: str | os.PathLike, *, every: int = 1, keep: int = 3,
                 config: dict | None = None, async_save: bool = False):
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every: expected a positive number of epochs, got {every!r}")
        if not (isinstance(keep, int) and keep >= 1):
            raise ValueError(f"keep: expected a positive number of checkpoints, got {keep!r}")
        self.directory, self.every, self.keep, self.config = Path(directory), every, keep, config
        self._pool = concurrent.futures.ThreadPoolExecutor(1) if async_save else None
        self._pending: concurrent.futures.Future | None = None

    def epochs(self) -> list[int]:
        """The epochs of the complete checkpoints (folders named epoch_*), ascending."""
        if not self.directory.is_dir():
            return []
        return sorted(int(p.name[len(_PREFIX):]) for p in self.directory.glob(f"{_PREFIX}*")
                      if p.name[len(_PREFIX):].isdigit() and (p / "manifest.json").is_file())

    def path(self, epoch: int) -> Path:
        return self.directory / f"{_PREFIX}{epoch:06d}"

    def latest(self) -> Path | None:
        epochs = self.epochs()
        return self.path(epochs[-1]) if epochs else None

    def best(self) -> Path | None:
        """The checkpoint with the lowest (val_error, val_loss) of its epoch, else the latest."""
        scored = []
        for e in self.epochs():
            meta = json.loads((self.path(e) / "meta.json").read_text())
            if meta.get("val_error") is not None:
                scored.append(((meta["val_error"], meta["val_loss"], e), e))
        return self.path(min(scored)[1]) if scored else self.latest()

    def save(self, state, *, best_variables=None, log: dict | None = None) -> Path:
        """Saves `state` (a TrainState) at its epoch; returns the checkpoint's folder."""
        self.wait()
        epoch, log = int(state.epoch), log or {}
        record = (log.get("history") or [{}])[-1]
        arrays = {"state": to_plain(state)}
        if best_variables is not None:
            arrays["best"] = to_plain(best_variables)
        meta = {"format": FORMAT, "epoch": epoch, "arrays_sha256": params_sha256(arrays),
                "val_error": record.get("val_error"), "val_loss": record.get("val_loss"), "log": log,
                "config": self.config}
        if self._pool is None:
            return self._commit(epoch, arrays, meta)
        self._pending = self._pool.submit(self._commit, epoch, arrays, meta)
        return self.path(epoch)

    def wait(self) -> None:
        """Blocks until a background save is done; raises its error, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _commit(self, epoch: int, arrays: dict, meta: dict) -> Path:
        final = self.path(epoch)
        tmp = self.directory / f"{_TMP}{final.name}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.glob(f"{_TMP}*"):
                shutil.rmtree(stale)
            _write(tmp, arrays, meta)
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync(self.directory)
        except Exception as e:
            shutil.rmtree(tmp, ignore_errors=True)
            latest = self.latest()
            raise CheckpointError(
                f"checkpoint_dir: could not write the checkpoint of epoch {epoch} to {self.directory} ({e}); "
                f"the previous checkpoint {latest.name if latest else '(none)'} is untouched") from e
        self._prune()
        return final

    def _prune(self) -> None:
        epochs = self.epochs()
        keep = set(epochs[-self.keep:]) | {int(self.best().name[len(_PREFIX):])}
        for e in epochs:
            if e not in keep:
                shutil.rmtree(self.path(e), ignore_errors=True)

    def restore(self, template, path: str | os.PathLike | None = None) -> Checkpoint:
        """The latest checkpoint (or the one at `path`) restored into the structure of `template`."""
        path = path or self.latest()
        if path is None:
            raise CheckpointError(f"checkpoint_dir: no complete checkpoint in {self.directory}")
        return read_checkpoint(path, template)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """`path` itself when it is one checkpoint; for a folder of checkpoints, its latest one,
    whose 'best' arrays hold the run's best variables so far (the best epoch itself may
    not have been saved when checkpoints are written every N > 1 epochs)."""
    path = Path(path)
    if (path / "manifest.json").is_file() or path.name.startswith(_PREFIX):
        return path
    found = Checkpointer(path).latest()
    if found is None:
        raise CheckpointError(f"checkpoint: expected a checkpoint or a folder of them, got {str(path)!r} (none found)")
    return found


class LoadedModel(NamedTuple):
    """A trained model as plain data: `apply(variables, x) -> outputs` is pure and jit-able
    (x: [batch, *input_shape] -> [batch, classes]); `variables` is the best epoch's pytree."""

    variables: dict
    apply: Any
    model: Model
    config: dict
    path: Path


def load_model(path: str | os.PathLike) -> LoadedModel:
    """The model of a checkpoint written by `nnlab train` / `nnlab.run` (a named model),
    rebuilt from its saved config, with its best variables; no training code is involved."""
    ckpt_path = find_checkpoint(path)
    ckpt = read_checkpoint(ckpt_path)
    config = ckpt.config or {}
    if "model" not in config:
        raise CheckpointError(f"checkpoint: {ckpt_path} has no named model in its config; "
                              "restore its arrays with read_checkpoint and apply your own model")
    model = get_model(config["model"], **config.get("model_kwargs", {}))
    if config.get("normalize", "none") != "none":
        shape = model.input_shape if config["normalize"] == "per_feature" else ()
        model = with_normalization(model, Normalization(jnp.zeros(shape), jnp.ones(shape)))
    template = model.init(jax.random.key(0), jnp.zeros((1, *model.input_shape), jnp.float32))
    best = ckpt.best_variables
    if best is None:  # trained without validation: the last epoch's variables
        best = {"params": ckpt.state["params"], **ckpt.state.get("model_state", {})}
    variables = from_plain(best, template, name=f"{ckpt_path}: variables")

    def apply(variables: dict, x: jax.Array) -> jax.Array:
        return model.apply(variables, x, train=False)[0]

    return LoadedModel(variables, apply, model, config, ckpt_path)
