"""Purge progress: a bar redrawn in place on a terminal, plain count lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO

from myapp.sessions.interfaces import IStoreStatistics
from myapp.sessions.operations.purge import StorePurge
from myapp.sessions.stores.base import SessionStore

BAR_WIDTH = 30


class PurgeProgress:
    """Receives the purger's callbacks and reports on ``stream``."""

    def __init__(self, stream: TextIO, *, plain_interval: float = 1.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.plain_interval = plain_interval
        self.expected = 0
        self._last_line = 0.0
        self._drawn = False

    def start(self, store: SessionStore, now: float) -> None:
        self.expected = store.count(now)[1] if IStoreStatistics.providedBy(store) else 0
        self._end_bar()
        self.stream.write(f"{store.name}: {self.expected:,} expired sessions to delete\n")
        self.stream.flush()

    def update(self, result: StorePurge) -> None:
        expected = max(self.expected, result.deleted)
        if self.tty:
            done = int(BAR_WIDTH * result.deleted / expected) if expected else BAR_WIDTH
            percent = 100 * result.deleted // expected if expected else 100
            bar = "#" * done + "-" * (BAR_WIDTH - done)
            self.stream.write(
                f"\r{result.store}: [{bar}] {percent:3d}% {result.deleted:,}/{expected:,}"
            )
            self._drawn = True
        else:
            # A log file gets a line now and then, not one per batch.
            now = time.monotonic()
            if now - self._last_line < self.plain_interval:
                return
            self._last_line = now
            self.stream.write(f"{result.store}: deleted {result.deleted} of {expected}\n")
        self.stream.flush()

    def _end_bar(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False

    def finish(self) -> None:
        self._end_bar()
        self.stream.flush()
