"""What every study script shares: small/full settings on the command line, seed statistics,
the persistent compilation cache, the data split, and the metadata and files written for each result."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

import nnlab


def parser(doc: str) -> argparse.ArgumentParser:
    """--size small|full (small: a minute, for tests and a first look), --seeds, --json, --png."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("small", "full"), default="full", help="small: a quick look; full: README's run")
    p.add_argument("--seeds", type=int, help="number of seeds S (0 .. S-1); default: 2 small, 3 full")
    p.add_argument("--data-dir", help="folder with the IDX files (default: nnlab's search order)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--png", metavar="PATH", help="write the figure to PATH")
    return p


def settings(args: argparse.Namespace, small: dict, full: dict) -> dict:
    """The chosen size's settings, with the number of seeds."""
    chosen = dict(small if args.size == "small" else full)
    chosen["seeds"] = args.seeds or (2 if args.size == "small" else 3)
    if chosen["seeds"] < 2:
        raise ValueError(f"--seeds: expected at least 2 seeds for a mean and a spread, got {chosen['seeds']}")
    return chosen


def compilation_cache() -> None:
    """JAX's persistent compilation cache (as the `nnlab` CLI uses it): members trained one
    after another (`fit_many(max_members=1)`) compile their program once and load it after."""
    folder = os.environ.get("NNLAB_COMPILATION_CACHE", str(Path.home() / ".cache" / "nnlab" / "jax"))
    if folder != "off":
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def spread(values) -> dict:
    """Mean, sample standard deviation (ddof=1), min and max over seeds."""
    v = np.asarray(values, np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
    }


def pm(values, scale: float = 1.0, digits: int = 2) -> str:
    """'mean ± std' of `values` * scale, for tables."""
    s = spread(np.asarray(values, np.float64) * scale)
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def metadata(args: argparse.Namespace, started: float, chosen: dict) -> dict:
    """Command, settings, wall time and environment of a study run."""
    return {
        "command": "python " + shlex.join(sys.argv),
        "size": args.size,
        "settings": chosen,
        "wall_seconds": time.perf_counter() - started,
        **nnlab.report.environment(),
    }


def subset(data: nnlab.Dataset, n: int | None) -> nnlab.Dataset:
    """The first n samples (all when n is None)."""
    return data if n is None else data.take(n)


def split(train: nnlab.Dataset, test: nnlab.Dataset, cfg: dict) -> nnlab.data.Splits:
    """The first n_train + n_val training samples split into train / val (split key 0), and `test`."""
    return nnlab.data.train_val_test(
        subset(train, cfg["n_train"] + cfg["n_val"]), test, n_val=cfg["n_val"], key=nnlab.train.as_key(0)
    )


def finish(results: dict, args: argparse.Namespace, plot: Callable[[str], None]) -> None:
    """Writes --json, draws --png with plot(path), and prints the run's wall time."""
    if args.json:
        nnlab.report.write_json(args.json, results)
    if args.png:
        plot(args.png)
    print(f"wall time {results['wall_seconds']:.0f} s")
