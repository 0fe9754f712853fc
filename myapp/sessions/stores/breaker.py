"""One circuit breaker per store: refuse at once while a store is failing, probe it alone.

Used by the store chain (for every configured store) and by the Redis read cache. A
request never probes: while a breaker is open its callers learn "failing" from two
attribute reads, and one background thread per breaker and process checks the store
with back-off (the first probe ``first_delay`` after the breaker opened, then a quarter
longer each time, jittered, up to ``max_delay``). The probe's success closes the
breaker and calls ``on_recover``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from ..options import SessionOptions

log = logging.getLogger(__name__)

#: Each failed probe waits this much longer than the one before: the wait stays about a
#: quarter of the outage so far, so the return comes soon after the repair.
BACKOFF_FACTOR = 1.25
#: Probe times are spread by this fraction either way, so a fleet does not probe in step.
JITTER = 0.2


class Breaker:
    """Closed (calls go through), or open (refused at once; one background probe)."""

    def __init__(
        self,
        name: str,
        probe: Callable[[], str | None],
        *,
        threshold: int = SessionOptions.breaker_threshold,
        first_delay: float = SessionOptions.breaker_cooldown,
        max_delay: float = SessionOptions.recheck_interval,
        on_recover: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.probe = probe  # None when the store answers, else why it does not
        self.threshold = threshold
        self.first_delay = first_delay
        self.max_delay = max(max_delay, first_delay)
        self.on_recover = on_recover
        self.clock = clock
        self.wall = wall
        self.open = False
        self.failures = 0  # in a row, since the last success
        self.failing_since: float | None = None  # wall clock of the first of them
        self.opened_at: float | None = None  # wall clock
        self.cause: str | None = None
        self.probes = 0  # probes since the breaker opened
        self._delay = first_delay
        self._next_probe: float = 0.0  # monotonic
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stop = threading.Event()

    # -- what requests do (cheap) ----------------------------------------------
    @property
    def failing(self) -> bool:
        """The last call (or check) failed: health says so, even before the breaker opens."""
        return self.failures > 0

    def failure(self, cause: str, *, at_once: bool = False) -> bool:
        """Count a failure; True when this one opened the breaker.

        ``at_once`` opens it whatever the count: a timeout says every further call
        would cost a full timeout too.
        """
        with self._lock:
            self.failures += 1
            self.cause = cause
            if self.failing_since is None:
                self.failing_since = self.wall()
            if self.open or (self.failures < self.threshold and not at_once):
                return False
            self.open = True
            self.opened_at = self.wall()
            self.probes = 0
            self._delay = self.first_delay
            self._next_probe = self.clock() + _jittered(self._delay)
        self.ensure_probing()
        return True

    def success(self) -> bool:
        """A call went through; True when that closed an open breaker."""
        if not self.failures and not self.open:
            return False  # the common case: no lock
        with self._lock:
            was_open = self.open
            self.open = False
            self.failures = 0
            self.failing_since = self.opened_at = None
            self.cause = None
        return was_open

    def ensure_probing(self) -> None:
        """While open, keep one probe thread in this process (a forked worker starts its own)."""
        if not self.open or self._stop.is_set():
            return
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            thread = self._thread
            if thread is not None and thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._probe_loop, name=f"session-probe-{self.name}", daemon=True
            )
            self._thread.start()

    def seconds_to_next_probe(self) -> float | None:
        if not self.open:
            return None
        return max(0.0, self._next_probe - self.clock())

    # -- the probe thread -----------------------------------------------------------
    def _probe_loop(self) -> None:
        while self.open and not self._stop.is_set():
            if self._stop.wait(max(0.0, self._next_probe - self.clock())):
                return
            if not self.open:
                return
            self.probe_now()

    def probe_now(self) -> bool:
        """Run the probe once (in the calling thread); True when the store answered."""
        self.probes += 1
        cause = self.probe()
        if cause is not None:
            with self._lock:
                self.cause = cause
                self._delay = min(self.max_delay, self._delay * BACKOFF_FACTOR)
                self._next_probe = self.clock() + _jittered(self._delay)
            log.info(
                "session store %r is still failing (%s); next probe in %.1fs",
                self.name,
                self.cause,
                self._next_probe - self.clock(),
            )
            return False
        downtime = None if self.failing_since is None else self.wall() - self.failing_since
        if self.success():
            log.warning(
                "session store %r answers again after %s; its breaker is closed",
                self.name,
                "?" if downtime is None else f"{downtime:.1f}s",
            )
            if self.on_recover is not None:
                self.on_recover()
        return True

    def stop(self) -> None:
        self._stop.set()

    # -- reporting --------------------------------------------------------------------
    def as_dict(self) -> dict[str, object]:
        """For ``/healthz``: plain values, read without a lock (a snapshot may be torn)."""
        since = self.failing_since
        return {
            "breaker": "open" if self.open else "closed",
            "failures_in_a_row": self.failures,
            "failing_since": None if since is None else _iso(since),
            "seconds_failing": None if since is None else round(self.wall() - since, 1),
            "last_error": self.cause,
            "next_probe_seconds": _round(self.seconds_to_next_probe()),
        }


def _jittered(delay: float) -> float:
    return delay * random.uniform(1 - JITTER, 1 + JITTER)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
