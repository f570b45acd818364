"""Checkpoints: the whole training state saved with Orbax, verified by a SHA-256 manifest.

One checkpoint is a folder `DIR/epoch_000012/`:

    arrays/          Orbax (OCDBT): {"state": the TrainState, "best": the best epoch's variables}
                     as nested dicts of arrays (PRNG keys as their uint32 key data), every
                     array with the leading member axis [S, ...] of `fit_many` (S = 1 for `fit`)
    metrics/, _CHECKPOINT_METADATA   Orbax's own records (the ranking its retention uses)
    meta.json        format, epoch, the run's config, fit's bookkeeping (history, best epoch, ...),
                     SHA-256 of the arrays' values
    manifest.json    SHA-256 and size of every other file, written last

Writing goes through Orbax's `CheckpointManager`: it writes into a temporary folder of its own
and renames it into place when complete (atomic finalisation), removes only its own
temporaries and keeps the last `keep` checkpoints plus the best; a background save is nnlab's
own thread around it. nnlab adds meta.json and the manifest on top; a folder without a manifest is an
incomplete save and never counts as a checkpoint. One writer at a time: a Checkpointer that
writes holds `DIR/.nnlab-lock` (fcntl.flock), so a second writer fails at once, changing nothing.

Restoring re-hashes every file against the manifest (Orbax itself verifies no values), whose
entries must lie inside the folder and cover meta.json and every array file, and the restored
values against meta.json. The manifest guards against incomplete, truncated and damaged files,
not against someone who rewrites it along with the files. Nothing is pickled: loading never
runs code. Paths may be relative; they are made absolute (against the working directory) where
they enter, as Orbax requires.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, NoReturn, TypeGuard, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from ._paths import absolute
from ._signals import critical
from .data import Normalization
from .nn import Model, get_model, with_normalization
from .report import file_sha256, params_sha256, write_text

FORMAT = "nnlab-checkpoint-2"
"""The checkpoint format written (2: every array has a leading member axis [S, ...]); older formats are refused."""
_PREFIX = "epoch_"
_STEP = re.compile(r"epoch_(\d+)")
_LOCK = ".nnlab-lock"
_T = TypeVar("_T")
_NOT_VALIDATED = 2.0  # ranks a checkpoint without validation after every validated one (errors lie in [0, 1])


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, is incomplete, was altered or does not fit the model."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped in favour of the newest valid one before it."""


class Checkpoint(NamedTuple):
    """A restored checkpoint.

    state: the stacked training state [S, ...] (TrainState when restored into a template, nested
      dicts otherwise)
    best_variables: each member's best epoch's variables [S, ...] (None without validation)
    log: the loop's bookkeeping as JSON data (epoch, stopped, members, histories, tracker)
    config: the run's configuration as saved (a dict), or None
    """

    path: Path
    epoch: int
    state: Any
    best_variables: Any
    log: dict[str, Any]
    config: dict[str, Any] | None


def _name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    raise TypeError(f"tree: unsupported pytree key {k!r}")


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _host(leaf: Any) -> np.ndarray:
    """A host copy (never a view of a buffer the next step may donate)."""
    return np.array(jax.random.key_data(leaf) if _is_key(leaf) else leaf, copy=True)


def _flat(tree: Any) -> dict[str, Any]:
    """{'params/dense0/w': leaf, ...} in `jax.tree.leaves` order."""
    return {"/".join(_name(k) for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, leaf in flat.items():
        *parents, last = path.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return out


def to_plain(tree: Any) -> dict[str, Any]:
    """`tree` as nested dicts of NumPy arrays keyed by the pytree path (dataclass fields and
    tuple positions become keys, PRNG keys their uint32 key data): what a checkpoint holds."""
    return _nest({p: _host(leaf) for p, leaf in _flat(tree).items()})


def _spec(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype as stored (a PRNG key's as its key data)."""
    a = jax.random.key_data(leaf) if _is_key(leaf) else leaf
    return tuple(np.shape(a)), np.dtype(a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype)


def from_plain(plain: dict[str, Any], template: Any, *, name: str = "checkpoint") -> Any:
    """The inverse of `to_plain`: `plain`'s arrays in the structure of `template`.

    Raises CheckpointError naming every missing, unexpected or differently shaped key.
    """
    got, want = _flat(plain), _flat(template)
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    wrong = [
        f"{k}: checkpoint {_spec(got[k])[0]} {_spec(got[k])[1]}, model {_spec(v)[0]} {_spec(v)[1]}"
        for k, v in want.items()
        if k in got and _spec(got[k]) != _spec(v)
    ]
    if missing or unexpected or wrong:
        parts = [
            f"missing keys {missing}" if missing else "",
            f"unexpected keys {unexpected}" if unexpected else "",
            f"mismatched shapes/dtypes [{'; '.join(wrong)}]" if wrong else "",
        ]
        raise CheckpointError(
            f"{name}: the checkpoint's tree does not match the model: " + ", ".join(p for p in parts if p)
        )
    leaves = [
        jax.random.wrap_key_data(jnp.asarray(got[k]), impl=jax.random.key_impl(v))
        if _is_key(v)
        else jnp.asarray(got[k])
        for k, v in want.items()
    ]
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def _files(folder: Path) -> list[str]:
    """Every file below `folder` but the manifest, as sorted '/'-separated relative paths."""
    files = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())
    return sorted(f for f in files if f != "manifest.json")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _add_manifest(folder: Path, meta: dict[str, Any]) -> None:
    """Adds meta.json, then the manifest of every file (the mark of a complete checkpoint)."""
    write_text(folder / "meta.json", json.dumps(meta, indent=1, allow_nan=False))
    files = _files(folder)
    manifest = {rel: {"sha256": file_sha256(folder / rel), "bytes": (folder / rel).stat().st_size} for rel in files}
    for rel in files:
        _fsync(folder / rel)
    write_text(folder / "manifest.json", json.dumps(manifest, indent=1))
    _fsync(folder)


def _is_number(v: object) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _read_json(path: Path) -> Any:
    """The JSON data in `path`; CheckpointError when it cannot be read or parsed."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError covers JSON and UTF-8 errors
        raise CheckpointError(f"checkpoint: {path} is damaged or unreadable ({type(e).__name__}: {e})") from None


def _check_manifest(folder: Path, manifest: Any, path: Path) -> dict[str, dict[str, Any]]:
    """The manifest's entries after checking its form, its names (none may lead out of the
    checkpoint folder) and that it covers meta.json and every file under arrays/."""
    if not isinstance(manifest, dict) or not manifest:
        raise CheckpointError(
            f"checkpoint: {path} is damaged (expected a JSON object with one entry per file, "
            f"got {type(manifest).__name__} {str(manifest)[:80]})"
        )
    inside = os.path.realpath(folder) + os.sep
    for rel, want in manifest.items():
        if not rel or "\0" in rel or rel.startswith("/") or any(p in ("", ".", "..") for p in rel.split("/")):
            raise CheckpointError(
                f"checkpoint: {path} lists {rel!r}, which is not a file path inside the "
                f"checkpoint folder (absolute, empty or with '..')"
            )
        if not os.path.realpath(folder / rel).startswith(inside):
            raise CheckpointError(
                f"checkpoint: {path} lists {rel!r}, which leads out of the checkpoint folder (a symbolic link)"
            )
        if not (isinstance(want, dict) and isinstance(want.get("sha256"), str) and _is_count(want.get("bytes"))):
            raise CheckpointError(
                f"checkpoint: {path} is damaged (entry {rel!r}: expected "
                f'{{"sha256": "...", "bytes": N}}, got {str(want)[:80]})'
            )
    if not (folder / "arrays").is_dir():
        raise CheckpointError(f"checkpoint: {folder} has no arrays/ folder")
    required = {"meta.json"} | {f for f in _files(folder) if f.startswith("arrays/")}
    uncovered = sorted(required - set(manifest))
    if uncovered:
        raise CheckpointError(
            f"checkpoint: {path} does not cover {len(uncovered)} file(s) of the checkpoint "
            f"({', '.join(uncovered[:3])}{', ...' if len(uncovered) > 3 else ''}): "
            f"altered, or not written by nnlab"
        )
    return manifest


def _check_meta(meta: Any, folder: Path) -> dict[str, Any]:
    """meta.json's data after checking its form (a damaged file raises CheckpointError, nothing else)."""

    def damaged(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint: {folder / 'meta.json'} is damaged ({what})")

    if not isinstance(meta, dict):
        raise damaged(f"expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint: {folder} has format {str(meta.get('format'))[:80]!r}, expected {FORMAT!r}")
    if not _is_count(meta.get("epoch")) or not isinstance(meta.get("arrays_sha256"), str):
        raise damaged("expected an epoch number and arrays_sha256")
    if not all(meta.get(k) is None or _is_number(meta[k]) for k in ("val_error", "val_loss")):
        raise damaged("val_error / val_loss: expected numbers or null")
    if not (meta.get("config") is None or isinstance(meta["config"], dict)):
        raise damaged("config: expected an object or null")
    log = meta.get("log")
    if not isinstance(log, dict):
        raise damaged("log: expected an object")
    checks: dict[str, Callable[[Any], bool]] = {
        "histories": lambda v: (
            isinstance(v, list) and all(isinstance(h, list) and all(isinstance(r, dict) for r in h) for h in v)
        ),
        "tracker": lambda v: isinstance(v, dict),
        "epoch": _is_count,
        "members": _is_count,
        "stopped": lambda v: isinstance(v, bool),
    }
    bad = [k for k, ok in checks.items() if k in log and not ok(log[k])]
    if bad:
        raise damaged(f"log: unexpected values for {bad}")
    return meta


def verify(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Checks the checkpoint folder `path` against its manifest; returns its meta data.

    Raises CheckpointError (and nothing else) for a missing folder or manifest (an incomplete
    save), a manifest that is damaged, names files outside the folder or does not cover
    meta.json and every array file, a missing, truncated or altered file (naming the file and
    both hashes), and a damaged meta.json.
    """
    path = absolute(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint: expected a checkpoint folder, got {str(path)!r} (not a folder)")
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint: {path} has no manifest.json: an incomplete save, not a valid checkpoint")
    manifest = _check_manifest(path, _read_json(manifest_path), manifest_path)
    for rel, want in manifest.items():
        f = path / rel
        try:
            if not f.is_file():
                raise CheckpointError(f"checkpoint: {f} is listed in the manifest but missing")
            size = f.stat().st_size
            sha = file_sha256(f) if size == want["bytes"] else "(not computed)"
        except OSError as e:
            raise CheckpointError(f"checkpoint: {f} cannot be read ({e.strerror or e})") from None
        if size != want["bytes"] or sha != want["sha256"]:
            raise CheckpointError(
                f"checkpoint: {f} was truncated or altered: {size} bytes, sha256 {sha}, "
                f"expected {want['bytes']} bytes, sha256 {want['sha256']}"
            )
    return _check_meta(_read_json(path / "meta.json"), path)


def _read_verified(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(meta, arrays as nested dicts) of the checkpoint at `path`, verified file by file and value by value."""
    meta = verify(path)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            plain = ckptr.restore(path / "arrays")
    except Exception as e:  # the files match the manifest, so Orbax failing means they were not nnlab's to begin with
        raise CheckpointError(f"checkpoint: {path / 'arrays'} cannot be read by Orbax ({type(e).__name__}: {e})") from e
    if not (
        isinstance(plain, dict)
        and isinstance(plain.get("state"), dict)
        and (plain.get("best") is None or isinstance(plain["best"], dict))
    ):
        raise CheckpointError(f"checkpoint: {path / 'arrays'} does not hold nnlab's 'state' and 'best' trees")
    if params_sha256(plain) != meta["arrays_sha256"]:
        raise CheckpointError(
            f"checkpoint: {path}: the restored values differ from the saved ones "
            f"(sha256 {params_sha256(plain)}, expected {meta['arrays_sha256']})"
        )
    return meta, plain


def _restored(path: Path, meta: dict[str, Any], plain: dict[str, Any], template: Any) -> Checkpoint:
    state, best = plain["state"], plain.get("best")
    if template is not None:
        state = from_plain(state, template, name=f"{path}: state")
        if best is not None:
            best = from_plain(best, template.variables, name=f"{path}: best variables")
    return Checkpoint(path, meta["epoch"], state, best, meta["log"], meta.get("config"))


def read_checkpoint(path: str | os.PathLike[str], template: Any = None) -> Checkpoint:
    """The verified checkpoint at `path`; its state restored into the structure of
    `template` (a TrainState) and its best variables into `template.variables` when given,
    else both as plain nested dicts of NumPy arrays."""
    path = absolute(path)
    meta, plain = _read_verified(path)
    return _restored(path, meta, plain, template)


def _rank(metrics: dict[str, Any]) -> tuple[float, ...]:
    """Orbax's retention ranks checkpoints by this (the lowest is the best)."""
    return tuple(metrics["rank"])


class Checkpointer:
    """Saves checkpoints into `directory` and finds them again.

    every: `fit` saves every `every` epochs (and at the end); keep: the last `keep`
    checkpoints stay, plus the one of the best validation error. config: saved with each
    checkpoint (e.g. `RunConfig.to_dict()`). async_save: the save runs in a background thread
    (the arrays are copied to the host first); a failure is raised by the next `save` or by
    `wait` / `close`. (Not Orbax's own asynchronous mode: in orbax-checkpoint 0.12.8, after a
    failed write its signalling threads kept the process from exiting for their 20-minute
    timeout.) While it writes, a Checkpointer holds the folder's lock: from `open()`
    to `close()` (`fit` does both, and so does `with Checkpointer(...) as ckpt:`), or else
    for each `save` (until its background write is done).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        every: int = 1,
        keep: int = 3,
        config: dict[str, Any] | None = None,
        async_save: bool = False,
    ) -> None:
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every: expected a positive number of epochs, got {every!r}")
        if not (isinstance(keep, int) and keep >= 1):
            raise ValueError(f"keep: expected a positive number of checkpoints, got {keep!r}")
        self.directory, self.every, self.keep, self.config = absolute(directory), every, keep, config
        self.async_save = async_save
        self._lock: BinaryIO | None = None  # the open lock file while this Checkpointer writes
        self._manager: ocp.CheckpointManager | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1) if async_save else None
        self._pending: concurrent.futures.Future[None] | None = None
        self._warned: set[Path] = set()
        self._implicit = False  # opened by `save` itself: released when that save is done

    def __enter__(self) -> Checkpointer:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> Checkpointer:
        """Takes the folder for writing (creating it): holds its lock and starts Orbax's manager.

        A folder that another process or Checkpointer is writing raises CheckpointError at
        once, and nothing in it changes.
        """
        if self._lock is None:
            if self.directory.exists() and not self.directory.is_dir():
                raise CheckpointError(f"checkpoint_dir: expected a folder, got {self.directory} (not a folder)")
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                # read-only: flock needs no write access, and an open writable file would keep a
                # file system from being remounted read-only
                lock = os.fdopen(os.open(self.directory / _LOCK, os.O_RDONLY | os.O_CREAT, 0o644), "rb")
            except OSError as e:
                raise CheckpointError(
                    f"checkpoint_dir: cannot write checkpoints to {self.directory} ({e.strerror or e})"
                ) from None
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                raise CheckpointError(
                    f"checkpoint_dir: {self.directory} is being written by another process (it "
                    f"holds the lock {self.directory / _LOCK}); wait for it to end, or use "
                    f"another folder"
                ) from None
            self._lock = lock
        if self._manager is None:
            policy = checkpoint_managers.AnyPreservationPolicy(
                [
                    checkpoint_managers.LatestN(n=self.keep),
                    checkpoint_managers.BestN(
                        get_metric_fn=_rank, reverse=True, n=1, keep_checkpoints_without_metrics=False
                    ),
                ]
            )
            options = ocp.CheckpointManagerOptions(
                step_prefix=_PREFIX[:-1],
                step_format_fixed_length=6,
                preservation_policy=policy,
                best_fn=_rank,
                enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
                create=False,
            )
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        return self

    def close(self) -> None:
        """Waits for a background save, stops Orbax's manager and releases the folder's lock."""
        try:
            self.wait()
        finally:
            self._release()

    def _release(self) -> None:
        self._implicit = False
        if self._manager is not None:
            self._manager.close()
            self._manager = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def epochs(self) -> list[int]:
        """The epochs of the complete checkpoints (folders epoch_* with a manifest), ascending."""
        if not self.directory.is_dir():
            return []
        found = [(_STEP.fullmatch(p.name), p) for p in self.directory.iterdir()]
        return sorted(int(m.group(1)) for m, p in found if m and (p / "manifest.json").is_file())

    def path(self, epoch: int) -> Path:
        """The folder of the checkpoint of `epoch` (whether or not it exists)."""
        return self.directory / f"{_PREFIX}{epoch:06d}"

    def latest(self) -> Path | None:
        """The newest complete checkpoint (not verified: see `restore`)."""
        epochs = self.epochs()
        return self.path(epochs[-1]) if epochs else None

    def best(self) -> Path | None:
        """The checkpoint with the lowest (val_error, val_loss) of its epoch, else the latest."""
        scored = []
        for e in self.epochs():
            try:
                meta = _read_json(self.path(e) / "meta.json")
            except CheckpointError:
                continue
            if isinstance(meta, dict) and _is_number(meta.get("val_error")) and _is_number(meta.get("val_loss")):
                scored.append(((meta["val_error"], meta["val_loss"], e), e))
        return self.path(min(scored)[1]) if scored else self.latest()

    def save(
        self,
        state: Any,
        *,
        epoch: int | None = None,
        best_variables: Any = None,
        log: dict[str, Any] | None = None,
        score: tuple[float, float] | None = None,
    ) -> Path:
        """Saves `state` (a TrainState; `fit` saves it stacked [S, ...] with log['members'] = S)
        as the checkpoint of `epoch` (default: the state's largest epoch counter); returns its
        folder. score: (val_error, val_loss) that ranks it for keeping the best (None: not validated).

        Checkpoints of this epoch and later ones are replaced (an incomplete save, or those of
        the run this one resumed); the retention of Orbax's manager then removes the oldest.
        """
        self.wait()
        implicit = self._lock is None
        self.open()
        self._implicit = implicit
        try:
            epoch = int(np.max(state.epoch)) if epoch is None else epoch
            arrays = {"state": to_plain(state)}
            if best_variables is not None:
                arrays["best"] = to_plain(best_variables)
            val_error, val_loss = score if score is not None else (None, None)
            meta = {
                "format": FORMAT,
                "epoch": epoch,
                "arrays_sha256": params_sha256(arrays),
                "val_error": val_error,
                "val_loss": val_loss,
                "log": log or {},
                "config": self.config,
            }
            rank: list[float] = (
                [val_error, val_loss, epoch]
                if _is_number(val_error) and _is_number(val_loss)
                else [_NOT_VALIDATED, 0.0, -epoch]
            )
            with critical():
                if self._pool is None:
                    self._commit(epoch, arrays, meta, rank)
                else:
                    self._pending = self._pool.submit(self._commit, epoch, arrays, meta, rank)
            return self.path(epoch)
        finally:
            if self._implicit and self._pending is None:
                self._release()

    def _commit(self, epoch: int, arrays: dict[str, Any], meta: dict[str, Any], rank: list[float]) -> None:
        """Writes the checkpoint of `epoch` whole (Orbax's save, then meta.json and the manifest)."""
        try:
            manager = self._manager
            if manager is None:
                raise CheckpointError(f"checkpoint_dir: {self.directory} is not open for writing")
            self._drop_from(epoch, manager)
            manager.save(
                epoch, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays)), metrics={"rank": rank}, force=True
            )
            manager.wait_until_finished()
            _add_manifest(self.path(epoch), meta)
        except Exception as e:
            self._failed(epoch, e)

    def _drop_from(self, epoch: int, manager: ocp.CheckpointManager) -> None:
        """Removes the checkpoints (complete or not) of `epoch` and later epochs from this folder."""
        dropped = False
        for p in self.directory.iterdir():
            m = _STEP.fullmatch(p.name)
            if (
                m
                and int(m.group(1)) >= epoch
                and p.is_dir()
                and not p.is_symlink()
                and ((p / "arrays").is_dir() or (p / "manifest.json").is_file())
            ):
                shutil.rmtree(p)
                dropped = True
        if dropped:
            manager.reload()

    def _failed(self, epoch: int, error: Exception) -> NoReturn:
        """Removes what this save left (Orbax's temporary folder of `epoch`, or the unfinished
        checkpoint) and raises CheckpointError; the manager is restarted by the next save."""
        final = self.path(epoch)
        for tmp in self.directory.glob(f"{final.name}.orbax-checkpoint-tmp*"):
            shutil.rmtree(tmp, ignore_errors=True)
        if final.is_dir() and not (final / "manifest.json").is_file():
            shutil.rmtree(final, ignore_errors=True)
        if self._manager is not None:
            with contextlib.suppress(Exception):  # the manager is broken already; a fresh one starts at the next save
                self._manager.close()
            self._manager = None
        latest = self.latest()
        raise CheckpointError(
            f"checkpoint_dir: could not write the checkpoint of epoch {epoch} to {self.directory} ({error}); "
            f"the previous checkpoint {latest.name if latest else '(none)'} is untouched"
        ) from error

    def wait(self) -> None:
        """Blocks until a background save is done; raises its error, if any."""
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                with critical():
                    pending.result()
        finally:
            if self._implicit:
                self._release()

    def _newest(self, read: Callable[[Path], _T]) -> tuple[Path | None, _T | None]:
        """(path, read(path)) of the newest checkpoint `read` accepts, (None, None) without one; newer
        damaged ones are skipped with a CheckpointWarning (once per checkpoint)."""
        for path in map(self.path, reversed(self.epochs())):
            try:
                return path, read(path)
            except CheckpointError as error:
                if path not in self._warned:
                    self._warned.add(path)
                    warnings.warn(
                        f"checkpoint: skipping {path}, which is damaged ({error}); using the newest valid "
                        f"checkpoint before it",
                        CheckpointWarning,
                        stacklevel=3,
                    )
        return None, None

    def latest_valid(self) -> Path | None:
        """The newest checkpoint whose files verify; newer damaged ones are skipped with a CheckpointWarning."""
        return self._newest(verify)[0]

    def restore(self, template: Any, path: str | os.PathLike[str] | None = None) -> Checkpoint:
        """The checkpoint at `path`, or else the newest valid one, restored into the structure of
        `template`; a damaged newer checkpoint is skipped with a CheckpointWarning."""
        if path is not None:
            return read_checkpoint(path, template)
        path, read = self._newest(_read_verified)
        if path is None or read is None:
            raise CheckpointError(f"checkpoint_dir: no complete, valid checkpoint in {self.directory}")
        return _restored(path, *read, template)


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """`path` itself when it is one checkpoint; for a folder of checkpoints, its latest one,
    whose 'best' arrays hold the run's best variables so far (the best epoch itself may
    not have been saved when checkpoints are written every N > 1 epochs)."""
    path = absolute(path)
    if (path / "manifest.json").is_file() or path.name.startswith(_PREFIX):
        return path
    found = Checkpointer(path).latest()
    if found is None:
        raise CheckpointError(f"checkpoint: expected a checkpoint or a folder of them, got {str(path)!r} (none found)")
    return found


class LoadedModel(NamedTuple):
    """A trained model as plain data: `apply(variables, x) -> outputs` is pure and jit-able
    (x: [batch, *input_shape] -> [batch, classes]); `variables` is the best epoch's pytree."""

    variables: dict[str, Any]
    apply: Callable[[dict[str, Any], jax.Array], jax.Array]
    model: Model
    config: dict[str, Any]
    path: Path


def load_model(path: str | os.PathLike[str], *, member: int = 0) -> LoadedModel:
    """The model of a checkpoint written by `nnlab train` / `nnlab seeds` / `nnlab.run` (a named
    model), rebuilt from its saved config, with the best variables of member `member` (of a
    seed study; 0 for a single run); no training code is involved."""
    ckpt_path = find_checkpoint(path)
    ckpt = read_checkpoint(ckpt_path)
    config = ckpt.config or {}
    if "model" not in config:
        raise CheckpointError(
            f"checkpoint: {ckpt_path} has no named model in its config; "
            "restore its arrays with read_checkpoint and apply your own model"
        )
    model = get_model(config["model"], **config.get("model_kwargs", {}))
    input_shape = model.input_shape
    if input_shape is None:
        raise CheckpointError(
            f"checkpoint: model {config['model']!r} of {ckpt_path} has no input_shape to rebuild it with"
        )
    if config.get("normalize", "none") != "none":
        shape = input_shape if config["normalize"] == "per_feature" else ()
        model = with_normalization(model, Normalization(jnp.zeros(shape), jnp.ones(shape)))
    template = model.init(jax.random.key(0), jnp.zeros((1, *input_shape), jnp.float32))
    best = ckpt.best_variables
    if best is None:  # trained without validation: the last epoch's variables
        best = {"params": ckpt.state["params"], **ckpt.state.get("model_state", {})}
    if "members" in ckpt.log:  # written by fit / fit_many: a leading member axis
        members = ckpt.log["members"]
        if not (isinstance(member, int) and 0 <= member < members):
            raise CheckpointError(f"member: expected a member in [0, {members - 1}] of {ckpt_path}, got {member!r}")
        best = jax.tree.map(lambda a: a[member], best)
    variables = from_plain(best, template, name=f"{ckpt_path}: variables")

    def apply(variables: dict[str, Any], x: jax.Array) -> jax.Array:
        return model.apply(variables, x, train=False)[0]

    return LoadedModel(variables, apply, model, config, ckpt_path)
