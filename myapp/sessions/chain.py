"""The fallback chain: the configured stores in order of preference, and which one serves."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from pyramid.exceptions import ConfigurationError

from .events import SessionObserver
from .stores.base import SessionStore, StoreError, StoreNotReady

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StoreState:
    """What the chain last learned about one store."""

    name: str
    store: SessionStore | None
    ready: bool | None = None  # None: not checked (an earlier store serves)
    cause: str | None = None
    fix: str | None = None
    checked_at: float | None = None
    check_seconds: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "ready": self.ready,
            "cause": self.cause,
            "fix": self.fix,
            "check_seconds": None if self.check_seconds is None else round(self.check_seconds, 4),
            "shared": None if self.store is None else self.store.shared,
        }


class NoStoreReady(ConfigurationError):
    """Start-up cannot go on: not one configured store is ready."""


@dataclass
class StoreChain:
    """Holds every configured store; ``active`` is the one sessions are served from."""

    states: list[StoreState]
    observer: SessionObserver = field(default_factory=SessionObserver)
    clock: Callable[[], float] = time.time
    active_index: int | None = None
    last_fallback_at: float | None = None
    # Stores that served sessions before the current one, most recent first:
    # a miss in the active store looks there (read-through on recovery).
    previous: list[int] = field(default_factory=list)
    # How a degraded process finds its way back, and when a failing store is given up.
    recheck_interval: float = 30.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 10.0
    failures: dict[int, int] = field(default_factory=dict)
    opened_at: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _prober: threading.Thread | None = field(default=None, repr=False)
    _prober_pid: int | None = field(default=None, repr=False)
    _next_probe_delay: float | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(state.name for state in self.states)

    @property
    def active(self) -> SessionStore:
        if self.active_index is None:
            raise RuntimeError("the chain has not selected a store yet")
        store = self.states[self.active_index].store
        assert store is not None
        return store

    @property
    def active_name(self) -> str:
        return self.states[self.active_index or 0].name

    @property
    def degraded(self) -> bool:
        return self.active_index != 0

    def store_at(self, index: int) -> SessionStore:
        # Compared with None on purpose: an empty memory store has len() 0 and is falsy.
        store = self.states[index].store
        if store is None:
            raise RuntimeError(f"session store {self.states[index].name!r} was never built")
        return store

    def store(self, name: str) -> SessionStore | None:
        for state in self.states:
            if state.name == name:
                return state.store
        return None

    def check(self, index: int) -> StoreState:
        """Run one store's readiness check now and record the outcome."""
        state = self.states[index]
        started = time.perf_counter()
        try:
            if state.store is None:
                raise StoreNotReady(
                    state.name, state.cause or "could not be built", state.fix or ""
                )
            state.store.check()
        except StoreNotReady as exc:
            state.ready, state.cause, state.fix = False, exc.cause, exc.fix
        except StoreError as exc:
            state.ready, state.cause, state.fix = False, str(exc), "see the cause"
        else:
            state.ready, state.cause, state.fix = True, None, None
        state.checked_at = self.clock()
        state.check_seconds = time.perf_counter() - started
        return state

    def select(self) -> SessionStore:
        """Check the stores in order and serve from the first that is ready.

        Logs a WARNING for each store skipped, then one line naming the store chosen.
        Raises :class:`NoStoreReady` when none is.
        """
        skipped: list[str] = []
        for index, state in enumerate(self.states):
            self.check(index)
            if state.ready:
                self._activate(index, "; ".join(skipped) or None)
                return self.active
            skipped.append(f"{state.name}: {state.cause}")
            following = self.states[index + 1].name if index + 1 < len(self.states) else None
            log.warning(
                "session store %r is not ready: %s. Fix: %s. %s",
                state.name,
                state.cause,
                state.fix,
                f"Trying {following!r} next." if following else "No store is left to try.",
            )
        raise NoStoreReady(
            "no session store is ready ("
            + "; ".join(f"{s.name}: {s.cause}" for s in self.states)
            + "). Check session.backends, sqlalchemy.url (and that `alembic upgrade head` ran), "
            "session.redis_url, and that those servers are running."
        )

    def _activate(self, index: int, why_skipped: str | None) -> None:
        with self._lock:
            before = self.active_index
            if before is not None and before != index:
                if before in self.previous:
                    self.previous.remove(before)
                self.previous.insert(0, before)
            if index in self.previous:
                self.previous.remove(index)
            self.active_index = index
        name = self.states[index].name
        if index == 0:
            log.info("sessions are served by %r, the first configured store", name)
        else:
            self.last_fallback_at = self.clock()
            log.warning(
                "sessions are served by %r, a FALLBACK (degraded): %s",
                name,
                why_skipped or "the stores before it failed",
            )
            self.observer.fallback(
                None if before is None else self.states[before].name, name, why_skipped or ""
            )
        self.observer.active_store(name, index == 0)

    def read_through_stores(
        self,
        serving: int,
        avoid: frozenset[str] = frozenset(),
        failed: AbstractSet[int] = frozenset(),
    ) -> list[tuple[SessionStore, bool]]:
        """Stores to look in when the serving one misses, each with "offline only".

        The active store comes first when a request is served elsewhere, then the
        stores that served earlier. A store this request avoids or saw fail, or whose
        breaker is open, is read offline only (a cache's copy, never its server): a
        frozen one would cost every miss a full store timeout.
        """
        order = list(self.previous)
        if self.active_index is not None and self.active_index != serving:
            order.insert(0, self.active_index)
        found: list[tuple[SessionStore, bool]] = []
        for i in dict.fromkeys(order):
            state = self.states[i]
            if i == serving or state.store is None:
                continue
            offline = state.name in avoid or i in failed or self.breaker_open(i)
            found.append((state.store, offline))
        return found

    # -- runtime failover -------------------------------------------------------
    def breaker_open(self, index: int) -> bool:
        """True while the store failed too often; half-open (one more try) after the cool-down."""
        if self.failures.get(index, 0) < self.breaker_threshold:
            return False
        return self.clock() - self.opened_at.get(index, 0.0) < self.breaker_cooldown

    def serving_index(self, avoid: frozenset[str] = frozenset()) -> int | None:
        """The store a request starts with: the active one unless this request avoids it."""
        index = self.active_index
        if index is None or self.states[index].name not in avoid:
            return index
        return self.next_store(index, avoid)

    def next_store(self, after: int, avoid: frozenset[str] = frozenset()) -> int | None:
        """The first store after ``after`` that may serve a request, or None."""
        for index in range(after + 1, len(self.states)):
            state = self.states[index]
            if state.store is not None and state.name not in avoid and not self.breaker_open(index):
                return index
        return None

    def succeeded(self, index: int) -> None:
        if self.failures.get(index):
            self.failures[index] = 0
            self.opened_at.pop(index, None)

    def failed(self, index: int, cause: str) -> None:
        """Count a failure during traffic; at the threshold the breaker opens.

        An open breaker on the serving store moves the whole process to the next
        store and starts the probe that brings it back after the cool-down.
        """
        with self._lock:
            count = self.failures.get(index, 0) + 1
            self.failures[index] = count
            if count < self.breaker_threshold:
                return
            self.opened_at[index] = self.clock()  # each failure while half-open re-opens it
        following = self.next_store(index)
        switch = index == self.active_index and following is not None
        if count > self.breaker_threshold and not switch:
            return  # already open and said so
        state = self.states[index]
        state.ready, state.cause, state.checked_at = False, cause, self.clock()
        state.fix = "see the cause; the store is probed again after session.breaker_cooldown"
        log.warning(
            "circuit breaker for session store %r is open after %d failures in a row (%s); %s",
            state.name,
            count,
            cause,
            f"serving from {self.states[following].name!r}"
            if switch and following is not None
            else "no further store can take over",
        )
        if switch and following is not None:
            self._next_probe_delay = self.breaker_cooldown
            self._activate(following, f"{state.name}: {cause} (breaker open)")
            self.ensure_probing()

    def note_served(self, index: int) -> None:
        """A request was served by a store other than the active one: read through it later."""
        if index != self.active_index and index not in self.previous:
            with self._lock:
                if index not in self.previous:
                    self.previous.insert(0, index)

    # -- recovery ---------------------------------------------------------------
    def ensure_probing(self) -> None:
        """While degraded, keep one background thread probing the preferred stores.

        Cheap enough for every request: a forked worker inherits no thread, so the
        first request in it starts its own. Requests never wait for a probe.
        """
        if not self.degraded or self.recheck_interval <= 0 or self._stop.is_set():
            return
        prober = self._prober
        if prober is not None and prober.is_alive() and self._prober_pid == os.getpid():
            return
        with self._lock:
            prober = self._prober
            if prober is not None and prober.is_alive() and self._prober_pid == os.getpid():
                return
            self._prober_pid = os.getpid()
            self._prober = threading.Thread(
                target=self._probe_loop, name="session-store-probe", daemon=True
            )
            self._prober.start()

    def _probe_loop(self) -> None:
        while self.degraded and not self._stop.is_set():
            delay, self._next_probe_delay = self._next_probe_delay, None
            if delay is None:
                # Jitter, so the workers of a fleet do not all probe at the same moment.
                delay = self.recheck_interval * random.uniform(0.8, 1.2)
            if self._stop.wait(delay):
                return
            self.probe_once()

    def probe_once(self) -> bool:
        """Check every store preferred to the active one; switch back to the first ready."""
        active = self.active_index
        if active is None:
            return False
        for index in range(active):
            state = self.check(index)
            if state.ready:
                self.succeeded(index)
                log.warning(
                    "session store %r is ready again: sessions move back to it from %r "
                    "(sessions created meanwhile are read from %r and moved on first use)",
                    state.name,
                    self.states[active].name,
                    self.states[active].name,
                )
                self._activate(index, None)
                self.observer.recovered(self.states[active].name, state.name)
                return True
            log.info("session store %r is still not ready: %s", state.name, state.cause)
        return False

    def health(self) -> dict[str, object]:
        now = self.clock()
        active = self.states[self.active_index] if self.active_index is not None else None
        return {
            "status": "ok" if self.active_index == 0 else "degraded",
            "session_backend": active.name if active else None,
            "session_backend_shared": bool(active and active.store and active.store.shared),
            "configured_backends": list(self.names),
            "seconds_since_fallback": (
                None if self.last_fallback_at is None else round(now - self.last_fallback_at, 1)
            ),
            "stores": [state.as_dict() for state in self.states],
        }

    def close(self) -> None:
        self._stop.set()
        for state in self.states:
            if state.store is not None:
                state.store.close()


def build_chain(
    names: tuple[str, ...],
    build: Callable[[str], SessionStore],
    observer: SessionObserver,
    *,
    recheck_interval: float = 30.0,
    breaker_threshold: int = 5,
    breaker_cooldown: float = 10.0,
) -> StoreChain:
    """Build every configured store; one that cannot be built is recorded as not ready."""
    states = []
    for name in names:
        try:
            states.append(StoreState(name, build(name)))
        except (StoreError, ValueError, ImportError, OSError) as exc:
            states.append(
                StoreState(name, None, cause=f"cannot be built: {exc}", fix="check its settings")
            )
    return StoreChain(
        states,
        observer=observer,
        recheck_interval=recheck_interval,
        breaker_threshold=breaker_threshold,
        breaker_cooldown=breaker_cooldown,
    )
