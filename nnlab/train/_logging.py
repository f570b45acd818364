"""Per-epoch metrics to disk as they come: TensorBoard event files (tensorboardX, no TensorFlow)
and JSON Lines, one run per member, as a callback of `fit` and `fit_many`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS = ("train_loss", "train_error", "val_loss", "val_error", "seconds")


class Logger:
    """A callback that writes every epoch's record of every member.

    `logdir/metrics.jsonl`: one line per member and epoch, {"member", "run", "epoch", metrics...};
    `logdir/<run>/events.out.tfevents.*`: TensorBoard scalars tagged `train/loss`, `train/error`,
    `val/loss`, `val/error`, `time/epoch_seconds`, step = epoch. Runs are named `runs[i]`
    (default: 'member_0', 'member_1', ...; 'run' for `fit`, whose callbacks get one record).
    Works as `fit(..., callbacks=[logger])` and `fit_many(..., callbacks=[logger])`; call
    `close()` (or use it as a context manager) to flush the files. TensorBoard needs the
    optional extra `pip install nnlab[logging]` (tensorboardX); `tensorboard=False` writes JSON
    Lines only; `tensorboard=None` writes event files when tensorboardX is installed (see the
    `tensorboard` attribute).
    """

    def __init__(
        self, logdir: str | os.PathLike, *, runs: Sequence[str] | None = None, tensorboard: bool | None = True
    ):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.runs = None if runs is None else [str(r) for r in runs]
        if self.runs is not None and (len(set(self.runs)) != len(self.runs) or not all(self.runs)):
            raise ValueError(f"runs: expected distinct, non-empty run names, got {list(runs)}")
        self._summary_writer = None
        if tensorboard or tensorboard is None:
            try:
                from tensorboardX import SummaryWriter

                self._summary_writer = SummaryWriter
            except ImportError as e:
                if tensorboard:
                    raise ImportError(
                        "tensorboard=True: expected tensorboardX (pip install nnlab[logging]); "
                        "or pass tensorboard=False for JSON Lines only"
                    ) from e
        self.tensorboard = self._summary_writer is not None
        self._writers: dict[str, Any] = {}
        self._jsonl = open(self.logdir / "metrics.jsonl", "a", encoding="utf-8")

    def _name(self, i: int, single: bool) -> str:
        if self.runs is not None:
            if i >= len(self.runs):
                raise ValueError(
                    f"runs: expected a name for each of the members, got {len(self.runs)} names for member {i}"
                )
            return self.runs[i]
        return "run" if single else f"member_{i}"

    def __call__(self, epoch: int, state, records) -> bool:
        single = isinstance(records, dict)
        for i, record in enumerate([records] if single else records):
            if record is None:  # a member that stopped early or diverged
                continue
            self.write(self._name(i, single), record, member=i)
        self._jsonl.flush()
        return False

    def write(self, run: str, record: dict, *, member: int = 0) -> None:
        """Writes one epoch's `record` (a `fit` history entry) under run name `run`."""
        epoch = int(record["epoch"])
        values = {k: record.get(k) for k in METRICS}
        self._jsonl.write(
            json.dumps(
                {"member": member, "run": run, "epoch": epoch, **{k: _finite_or_none(v) for k, v in values.items()}}
            )
            + "\n"
        )
        if self._summary_writer is None:
            return
        if run not in self._writers:
            self._writers[run] = self._summary_writer(str(self.logdir / run))
        writer = self._writers[run]
        for key, tag in (
            ("train_loss", "train/loss"),
            ("train_error", "train/error"),
            ("val_loss", "val/loss"),
            ("val_error", "val/error"),
            ("seconds", "time/epoch_seconds"),
        ):
            if values[key] is not None:
                writer.add_scalar(tag, float(values[key]), epoch)

    def close(self) -> None:
        """Flushes and closes every file (idempotent)."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        if not self._jsonl.closed:
            self._jsonl.close()

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _finite_or_none(value):
    """JSON has no NaN or Inf: a non-finite metric (a diverged epoch) is written as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a `metrics.jsonl` file, in the order written."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
