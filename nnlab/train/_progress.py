"""A one-line progress display for long runs: shown on a terminal, silent otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Rewrites one line per epoch on `stream` (default stderr) while it is a terminal."""

    def __init__(self, total: int, *, label: str = "train", enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.label, self.start = total, label, time.perf_counter()

    def update(self, done: int, record: dict) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - done)
        bar = "#" * (20 * done // self.total)
        parts = [
            f"{k} {v:.4f}"
            for k, v in record.items()
            if k in ("train_loss", "train_error", "val_error") and v is not None
        ]
        self.stream.write(
            f"\r{self.label} {done}/{self.total} [{bar:<20}] {'  '.join(parts)}  {elapsed:.0f}s, eta {eta:.0f}s "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
