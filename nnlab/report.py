"""Results as data: parameter counts and hashes, environment facts, JSON files and tables."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np


def count_params(params: Any) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(math.prod(np.shape(p)) for p in jax.tree.leaves(params)))


def params_sha256(params: Any) -> str:
    """SHA-256 over the parameters' bytes, leaves in `jax.tree.leaves` order (dict keys sorted)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor()
            )
    except OSError:
        return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    """Where a figure was measured: device, backend and versions."""
    import flax
    import optax

    dev = jax.devices()[0]
    return {
        "device": f"cpu ({_cpu_name()})" if dev.platform == "cpu" else f"{dev.platform} ({dev.device_kind})",
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "flax_version": flax.__version__,
        "optax_version": optax.__version__,
        "python_version": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }


def to_json_data(value: Any) -> Any:
    """`value` as strict JSON data: arrays and NumPy scalars as lists and numbers, tuples as
    lists, NaN and infinities as None (JSON has no such numbers; Python's `json` would write
    bare `NaN`, which other readers reject)."""
    if isinstance(value, dict):
        return {str(k): to_json_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_data(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)) or isinstance(value, jax.Array):
        return to_json_data(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes `path` whole or not at all: a sibling temporary file (created with the umask's
    permissions), fsync, then a rename, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        with open(tmp, "x") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], results: dict[str, Any]) -> None:
    """Writes `results` as indented, strict JSON (non-finite numbers as null), atomically (`write_text`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(to_json_data(results), indent=2, allow_nan=False) + "\n")


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table with a header row; floats get 4 significant digits."""
    columns = list(columns or (rows[0].keys() if rows else []))

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else str(v))

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
