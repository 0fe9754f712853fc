"""The fallback chain: the configured stores in order of preference, which one serves,
where a miss reads through, and what ``/healthz`` reports. Its breakers, failover and
recovery are a ``recovery.Recovery`` it holds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from ..events import SessionObserver
from ..exceptions import BUILD_ERRORS, NoStoreReady, StoreError, StoreNotReady
from ..options import SessionOptions
from ..stores.base import SessionStore
from .recovery import Breaker, Recovery, StoreState

__all__ = ["Breaker", "NoStoreReady", "StoreChain", "StoreState", "build_chain"]

log = logging.getLogger(__name__)


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
    # When a failing store is refused, how soon it is probed (then backing off up to
    # recheck_interval), and whether the process moves on to the next store meanwhile.
    recheck_interval: float = SessionOptions.recheck_interval
    breaker_threshold: int = SessionOptions.breaker_threshold
    breaker_cooldown: float = SessionOptions.breaker_cooldown
    runtime_failover: bool = SessionOptions.runtime_failover
    recovery: Recovery = field(init=False, repr=False)
    breakers: list[Breaker] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.recovery = Recovery(
            self.states,
            check=self.check,
            serving=lambda: self.active_index,
            move_to=self._activate,
            observer=self.observer,
            clock=self.clock,
            recheck_interval=self.recheck_interval,
            breaker_threshold=self.breaker_threshold,
            breaker_cooldown=self.breaker_cooldown,
            runtime_failover=self.runtime_failover,
        )
        self.breakers = self.recovery.breakers

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

    def serving_index(self, avoid: frozenset[str] = frozenset()) -> int | None:
        """The store a request starts with: the active one unless this request avoids it."""
        index = self.active_index
        if index is None or self.states[index].name not in avoid:
            return index
        return self.next_store(index, avoid)

    def note_served(self, index: int) -> None:
        """A request was served by a store other than the active one: read through it later."""
        if index != self.active_index and index not in self.previous:
            with self._lock:
                if index not in self.previous:
                    self.previous.insert(0, index)

    # -- what a request asks of the breakers (the recovery answers) ---------------------
    def breaker_open(self, index: int) -> bool:
        """True while the store is refused at once (a probe brings it back)."""
        return self.breakers[index].open

    def refusal(self, index: int) -> StoreError:
        """The error a request gets, without any store call, while the breaker is open."""
        return self.recovery.refusal(index)

    def next_store(self, after: int, avoid: frozenset[str] = frozenset()) -> int | None:
        """The first store after ``after`` that may serve a request, or None."""
        return self.recovery.next_store(after, avoid)

    def succeeded(self, index: int) -> None:
        """A call to the store went through (closes its breaker if it was failing)."""
        self.recovery.succeeded(index)

    def failed(self, index: int, cause: str, *, timeout: bool = False) -> None:
        """A call to the store failed: see ``Recovery.failed``."""
        self.recovery.failed(index, cause, timeout=timeout)

    def ensure_probing(self) -> None:
        """Keep the probe and standby threads running in this process (every request)."""
        self.recovery.ensure_probing()

    def check_standby(self) -> None:
        """Check each store after the active one whose breaker is closed."""
        self.recovery.check_standby()

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
                # The stores after it are checked too, so health knows what could take over.
                self.check_standby()
                return self.active
            skipped.append(f"{state.name}: {state.cause}")
            # Refused until a probe finds it ready: the process finds its way back.
            self.breakers[index].failure(state.cause or "not ready", at_once=True)
            following = self.states[index + 1].name if index + 1 < len(self.states) else None
            log.warning(
                "session store %r is not ready: %s. Fix: %s. %s",
                state.name,
                state.cause,
                state.fix,
                f"Trying {following!r} next." if following else "No store is left to try.",
            )
        self.recovery.stop()  # the app does not start: nothing to probe for
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

    def unreachable_before(self, serving: int, failed: AbstractSet[int] = frozenset()) -> list[str]:
        """Stores preferred to ``serving`` that cannot be asked now.

        Any of them may hold a session the serving store does not know: a miss then
        means "unknown for now", never "ended".
        """
        return [
            state.name
            for index, state in enumerate(self.states[:serving])
            if index in failed or self.breaker_open(index) or state.ready is False
        ]

    # -- health -----------------------------------------------------------------
    def health(self) -> dict[str, object]:
        """What ``/healthz`` reports: in-memory state only, never a store call."""
        now = self.clock()
        index = self.active_index
        active = self.states[index] if index is not None else None
        failing = None
        if index is not None and self.breakers[index].failing:
            failing = {"store": self.states[index].name, **self.breakers[index].as_dict()}
        status = "ok" if index == 0 else "degraded"
        if failing is not None:
            status = "failing"
        return {
            "status": status,
            "session_backend": active.name if active else None,
            "session_backend_shared": bool(active and active.store and active.store.shared),
            "serving_store_failing": failing,
            "configured_backends": list(self.names),
            "runtime_failover": self.runtime_failover,
            "seconds_since_fallback": (
                None if self.last_fallback_at is None else round(now - self.last_fallback_at, 1)
            ),
            "stores": [
                state.as_dict(now, breaker)
                for state, breaker in zip(self.states, self.breakers, strict=True)
            ],
        }

    def close(self) -> None:
        self.recovery.stop()
        for state in self.states:
            if state.store is not None:
                state.store.close()


def build_chain(
    names: tuple[str, ...],
    build: Callable[[str], SessionStore],
    observer: SessionObserver,
    *,
    recheck_interval: float = SessionOptions.recheck_interval,
    breaker_threshold: int = SessionOptions.breaker_threshold,
    breaker_cooldown: float = SessionOptions.breaker_cooldown,
    runtime_failover: bool = SessionOptions.runtime_failover,
) -> StoreChain:
    """Build every configured store; one that cannot be built is recorded as not ready."""
    states = []
    for name in names:
        try:
            store = build(name)
            # Named as the store names itself (a store of the app's own is configured
            # by its dotted path).
            states.append(StoreState(store.name or name, store))
        except BUILD_ERRORS as exc:
            states.append(
                StoreState(name, None, cause=f"cannot be built: {exc}", fix="check its settings")
            )
    return StoreChain(
        states,
        observer=observer,
        recheck_interval=recheck_interval,
        breaker_threshold=breaker_threshold,
        breaker_cooldown=breaker_cooldown,
        runtime_failover=runtime_failover,
    )
