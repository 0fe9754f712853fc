"""The fallback chain: the configured stores in order of preference, and which one serves."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
                raise StoreNotReady(state.name, state.cause or "could not be built", state.fix or "")
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

    def read_through_stores(self) -> list[SessionStore]:
        """Stores that served earlier, to look in when the active one misses."""
        return [s for s in (self.states[i].store for i in self.previous) if s is not None]

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
        for state in self.states:
            if state.store is not None:
                state.store.close()


def build_chain(
    names: tuple[str, ...],
    build: Callable[[str], SessionStore],
    observer: SessionObserver,
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
    return StoreChain(states, observer=observer)
