"""Application-level deadlines for blocking socket calls that have no timeout of their own.

A query on an open connection to a frozen PostgreSQL stays blocked however the driver
is tuned (see FACTS: connect_timeout, keepalives and statement_timeout do not help).
One watchdog thread keeps a heap of deadlines; when one passes it shuts down the
socket of the call that overran, so the call fails at once and the pool drops it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


class Deadline:
    """One armed deadline; ``fired`` tells the caller its socket was shut down."""

    __slots__ = ("cancelled", "fileno", "fired", "what", "when")

    def __init__(self, fileno: int, when: float, what: str) -> None:
        self.fileno = fileno
        self.when = when
        self.what = what
        self.fired = False
        self.cancelled = False


class Watchdog:
    """Shuts down the socket of any guarded call still running past its deadline."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Deadline]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def arm(self, fileno: int, seconds: float, what: str = "call") -> Deadline:
        """Start a deadline for the socket ``fileno``; cancel it when the call returns."""
        deadline = Deadline(fileno, self._clock() + seconds, what)
        with self._cond:
            self._ensure_thread()
            # Wake the thread only if it would sleep past this deadline: waking it for
            # every guarded statement (a thread switch each) cost ~100 us CPU per request.
            wake = not self._heap or deadline.when < self._heap[0][0]
            heapq.heappush(self._heap, (deadline.when, next(self._counter), deadline))
            if wake:
                self._cond.notify()
        return deadline

    def cancel(self, deadline: Deadline) -> None:
        # Under the lock: once this returns, the watchdog can no longer touch the
        # socket, so the caller may hand the connection back to the pool.
        with self._cond:
            deadline.cancelled = True

    @contextlib.contextmanager
    def guard(
        self, fileno: int | None, seconds: float, what: str = "call"
    ) -> Iterator[Deadline | None]:
        """Run the block under a deadline; ``fileno`` None (no socket) runs it unguarded."""
        if fileno is None or fileno < 0:
            yield None
            return
        deadline = self.arm(fileno, seconds, what)
        try:
            yield deadline
        finally:
            self.cancel(deadline)

    def _ensure_thread(self) -> None:
        # Caller holds the lock. A forked worker inherits no threads: start one per pid.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="session-deadlines", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                when, _, deadline = self._heap[0]
                delay = when - self._clock()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                deadline.fired = True
                _shutdown(deadline.fileno)
                log.warning(
                    "a session store %s overran its deadline; its connection was shut down",
                    deadline.what,
                )


def _shutdown(fileno: int) -> None:
    """Shut the socket down through a duplicate, so the owner's descriptor stays valid."""
    try:
        dup = os.dup(fileno)
    except OSError:
        return
    try:
        with socket.socket(fileno=dup) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError as exc:
        log.info("could not shut down a session store socket: %s", exc)


#: One watchdog per process is enough: it only sleeps until the nearest deadline.
WATCHDOG = Watchdog()
