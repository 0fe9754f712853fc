"""The chain's breakers, failover and recovery: refuse a failing store at once, move on
to the next one (with ``session.runtime_failover``), probe in the background, move back.

One circuit breaker per store (and one for the Redis read cache, built by the assembly).
A request never probes: while a breaker is open its callers learn "failing" from two
attribute reads, and one background thread per breaker and process checks the store
with back-off (the first probe ``first_delay`` after the breaker opened, then a quarter
longer each time, jittered, up to ``max_delay``). The probe's success closes the
breaker and calls ``on_recover``.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..events import SessionObserver
from ..exceptions import StoreError
from ..options import SessionOptions
from ..stores.base import SessionStore, health

log = logging.getLogger(__name__)

#: Each failed probe waits this much longer than the one before: the wait stays about a
#: quarter of the outage so far, so the return comes soon after the repair.
BACKOFF_FACTOR = 1.25
#: Probe times are spread by this fraction either way, so a fleet does not probe in step.
JITTER = 0.2


@dataclass(slots=True)
class StoreState:
    """What the chain last learned about one store."""

    name: str
    store: SessionStore | None
    ready: bool | None = None  # None: not checked yet
    cause: str | None = None
    fix: str | None = None
    checked_at: float | None = None
    check_seconds: float | None = None

    def as_dict(self, now: float, breaker: Breaker) -> dict[str, object]:
        failing = breaker.failing
        return {
            "name": self.name,
            # A store whose calls fail is not ready, whatever its last check said.
            "ready": False if failing else self.ready,
            "cause": breaker.cause if failing and breaker.cause else self.cause,
            "fix": self.fix,
            "check_seconds": None if self.check_seconds is None else round(self.check_seconds, 4),
            "checked_seconds_ago": (
                None if self.checked_at is None else round(max(0.0, now - self.checked_at), 1)
            ),
            "shared": None if self.store is None else self.store.shared,
            **breaker.as_dict(),
            **({} if self.store is None else health(self.store)),
        }


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


class Recovery:
    """The chain's breakers and what follows from them: refuse a failing store at once,
    fail over (with ``runtime_failover``), probe in the background, move back.

    The chain holds one and hands it the stores' states and what it needs of the chain:
    ``check`` (run one store's readiness check), ``serving`` (the active store's index)
    and ``move_to`` (serve from another store, with why).
    """

    def __init__(
        self,
        states: list[StoreState],
        *,
        check: Callable[[int], StoreState],
        serving: Callable[[], int | None],
        move_to: Callable[[int, str | None], None],
        observer: SessionObserver,
        clock: Callable[[], float] = time.time,
        recheck_interval: float = SessionOptions.recheck_interval,
        breaker_threshold: int = SessionOptions.breaker_threshold,
        breaker_cooldown: float = SessionOptions.breaker_cooldown,
        runtime_failover: bool = SessionOptions.runtime_failover,
    ) -> None:
        self.states = states
        self.check = check
        self.serving = serving
        self.move_to = move_to
        self.observer = observer
        self.clock = clock
        self.recheck_interval = recheck_interval
        self.runtime_failover = runtime_failover
        # recheck_interval 0 turns the back-off off: probes every breaker_cooldown.
        ceiling = max(recheck_interval, breaker_cooldown)
        self.breakers = [
            Breaker(
                state.name,
                functools.partial(self.probe, index),
                threshold=breaker_threshold,
                first_delay=breaker_cooldown,
                max_delay=ceiling,
                on_recover=functools.partial(self.recovered, index),
            )
            for index, state in enumerate(states)
        ]
        self._lock = threading.Lock()
        self._standby: threading.Thread | None = None
        self._standby_fork = -1  # the fork generation the standby thread runs in
        self._stop = threading.Event()

    # -- breakers and runtime failover ---------------------------------------------
    def breaker_open(self, index: int) -> bool:
        """True while the store is refused at once (a probe brings it back)."""
        return self.breakers[index].open

    def refusal(self, index: int) -> StoreError:
        """The error a request gets, without any store call, while the breaker is open."""
        state, breaker = self.states[index], self.breakers[index]
        return StoreError(
            state.name,
            "breaker_open",
            f"failing ({breaker.cause}); not asked again until a probe finds it answering",
        )

    def next_store(self, after: int, avoid: frozenset[str] = frozenset()) -> int | None:
        """The first store after ``after`` that may serve a request, or None."""
        for index in range(after + 1, len(self.states)):
            state = self.states[index]
            if state.store is not None and state.name not in avoid and not self.breaker_open(index):
                return index
        return None

    def succeeded(self, index: int) -> None:
        if self.breakers[index].success():
            self.recovered(index)

    def failed(self, index: int, cause: str, *, timeout: bool = False) -> None:
        """Count a failure during traffic; at the threshold (or a timeout) the breaker opens.

        Requests to an open store are refused at once, and one background probe per
        process brings it back. With runtime failover, an open breaker on the serving
        store also moves the whole process to the next store.
        """
        state, breaker = self.states[index], self.breakers[index]
        prefix = f"{state.name} store: "
        while cause.startswith(prefix):  # wrapped errors repeat it
            cause = cause[len(prefix) :]
        if not breaker.failure(cause, at_once=timeout):
            return
        state.ready, state.cause, state.checked_at = False, cause, self.clock()
        state.fix = "see the cause; the store is probed again in the background"
        active = self.serving()
        following = self.next_store(index) if self.runtime_failover else None
        switch = index == active and following is not None
        if switch and following is not None:
            outcome = f"serving from {self.states[following].name!r}"
        elif index == active:
            outcome = "requests needing it are refused at once until a probe finds it answering"
        else:
            outcome = "it is skipped until a probe finds it answering"
        log.warning(
            "circuit breaker for session store %r is open after %d failure%s in a row (%s); %s",
            state.name,
            breaker.failures,
            "" if breaker.failures == 1 else "s",
            cause,
            outcome,
        )
        if switch and following is not None:
            self.move_to(following, f"{state.name}: {cause} (breaker open)")

    # -- probes and recovery ------------------------------------------------------------
    def ensure_probing(self) -> None:
        """Keep one probe thread per open breaker (cheap enough for every request).

        A forked worker inherits no thread, so the first request in it starts its own.
        Requests never wait for a probe.
        """
        for breaker in self.breakers:
            if breaker.open:
                breaker.ensure_probing()
        if self._standby_fork != _forks:
            self._ensure_standby_checks()

    def probe(self, index: int) -> str | None:
        """One breaker's probe: the store's readiness check; None when it is ready."""
        state = self.check(index)
        return None if state.ready else state.cause or "not ready"

    def recovered(self, index: int) -> None:
        """A probe (or a request) found the store answering again."""
        state = self.states[index]
        state.ready, state.cause, state.fix = True, None, None
        active = self.serving()
        if active is None or index >= active:
            return
        log.warning(
            "session store %r is ready again: sessions move back to it from %r "
            "(sessions created meanwhile are read from %r and moved on first use)",
            state.name,
            self.states[active].name,
            self.states[active].name,
        )
        self.move_to(index, None)
        self.observer.recovered(self.states[active].name, state.name)

    def _ensure_standby_checks(self) -> None:
        """Start the thread that re-checks the stores after the serving one now and then,
        so health knows them: once per process (a forked worker inherits no thread)."""
        if self.recheck_interval <= 0 or self._stop.is_set():
            return
        with self._lock:
            if self._standby_fork == _forks:
                return
            self._standby_fork = _forks
            self._standby = threading.Thread(
                target=self._standby_loop, name="session-standby-check", daemon=True
            )
            self._standby.start()

    def _standby_loop(self) -> None:
        try:
            while not self._stop.wait(self.recheck_interval * random.uniform(0.8, 1.2)):
                self.check_standby()
        finally:
            self._standby_fork = -1  # ended (stopped, or an error): the next request restarts it

    def check_standby(self) -> None:
        """Check each store after the active one whose breaker is closed (open ones probe)."""
        active = self.serving()
        if active is None:
            return
        for index in range(active + 1, len(self.states)):
            if self.breakers[index].open:
                continue
            state = self.check(index)
            if state.ready:
                continue
            self.breakers[index].failure(state.cause or "not ready", at_once=True)
            log.warning(
                "standby session store %r is not ready: %s. Fix: %s. It cannot take over "
                "until a probe finds it ready.",
                state.name,
                state.cause,
                state.fix,
            )

    def stop(self) -> None:
        """Stop the standby checks and every probe (the process or the chain ends)."""
        self._stop.set()
        for breaker in self.breakers:
            breaker.stop()


def _jittered(delay: float) -> float:
    return delay * random.uniform(1 - JITTER, 1 + JITTER)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


#: How many forks this process descends from: a thread started under another count
#: belongs to a parent process and does not run here. Compared instead of calling
#: ``os.getpid()`` on every request.
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)
