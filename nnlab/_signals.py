"""Ending a run cleanly on SIGINT (Ctrl-C) or SIGTERM.

Inside `deferred_signals()` the first SIGINT / SIGTERM is only noted: the training loop
finishes its epoch, writes a final checkpoint and raises `Interrupted`. A second signal
raises `Interrupted` at once, except inside `critical()` (a checkpoint being written),
where it waits until the write is complete: a checkpoint is written whole or not at all.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A run ended by SIGINT or SIGTERM.

    epoch: the last complete epoch (None when not known); checkpoint: the newest complete
    checkpoint (None without one); exit_code: 128 + the signal's number (130, 143).
    """

    def __init__(
        self, signum: int, *, epoch: int | None = None, checkpoint: Path | None = None, during_epoch: bool = False
    ):
        self.signum, self.epoch, self.checkpoint, self.during_epoch = signum, epoch, checkpoint, during_epoch
        super().__init__(self.describe())

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        """The signal's name, e.g. 'SIGINT'."""
        return signal.Signals(self.signum).name

    def describe(self) -> str:
        """One line: which signal, where training stopped, what was saved and how to resume."""
        if self.epoch is None:
            where = ""  # outside the training loop
        elif self.during_epoch:
            where = f" during epoch {self.epoch + 1} (that epoch is lost)"
        else:
            where = f" after epoch {self.epoch}"
        saved = (
            f"the newest checkpoint is {self.checkpoint}" if self.checkpoint is not None else "no checkpoint was saved"
        )
        return f"interrupted by {self.signal_name}{where}: {saved}"


class _Deferral:
    """The state of one `deferred_signals()` block."""

    def __init__(self) -> None:
        self.requested: int | None = None  # the first signal, for the loop to act on
        self.pending: int | None = None  # a second signal that arrived during a critical section
        self.depth = 0  # nesting of critical sections

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested = signum
            print(
                f"nnlab: {signal.Signals(signum).name} received: stopping at the end of this epoch "
                f"(send it again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
        elif self.depth:
            self.pending = signum
        else:
            raise Interrupted(signum)


_active: _Deferral | None = None


@contextlib.contextmanager
def deferred_signals() -> Iterator[_Deferral]:
    """Defers SIGINT / SIGTERM as the module says; yields the `_Deferral` (its `requested`
    is the first signal's number, or None). Outside the main thread it changes nothing."""
    global _active
    if threading.current_thread() is not threading.main_thread() or _active is not None:
        yield _active or _Deferral()
        return
    deferral, previous = _Deferral(), {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, deferral.handle)
    _active = deferral
    try:
        yield deferral
    finally:
        _active = None
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A section a second signal must not cut (a checkpoint write); the signal is raised after it."""
    deferral = _active if threading.current_thread() is threading.main_thread() else None
    if deferral is None:
        yield
        return
    deferral.depth += 1
    try:
        yield
    finally:
        deferral.depth -= 1
    if deferral.depth == 0 and deferral.pending is not None:
        signum, deferral.pending = deferral.pending, None
        raise Interrupted(signum)
