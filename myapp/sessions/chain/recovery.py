"""The chain's breakers, failover and recovery: refuse a failing store at once, move on
to the next one (with ``session.runtime_failover``), probe in the background, move back.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable

from ..events import SessionObserver
from ..exceptions import StoreError
from ..stores.breaker import Breaker
from .state import StoreState

log = logging.getLogger(__name__)


class Recovery:
    """The breaker side of ``chain.StoreChain`` (which provides these attributes)."""

    states: list[StoreState]
    breakers: list[Breaker]
    observer: SessionObserver
    clock: Callable[[], float]
    active_index: int | None
    previous: list[int]
    recheck_interval: float
    runtime_failover: bool
    _lock: threading.Lock
    _standby: threading.Thread | None
    _standby_pid: int | None
    _stop: threading.Event

    def check(self, index: int) -> StoreState:
        raise NotImplementedError

    def _activate(self, index: int, why_skipped: str | None) -> None:
        raise NotImplementedError

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
        if self.breakers[index].success():
            self._recovered(index)

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
        following = self.next_store(index) if self.runtime_failover else None
        switch = index == self.active_index and following is not None
        if switch and following is not None:
            outcome = f"serving from {self.states[following].name!r}"
        elif index == self.active_index:
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
            self._activate(following, f"{state.name}: {cause} (breaker open)")

    def note_served(self, index: int) -> None:
        """A request was served by a store other than the active one: read through it later."""
        if index != self.active_index and index not in self.previous:
            with self._lock:
                if index not in self.previous:
                    self.previous.insert(0, index)

    # -- probes and recovery ------------------------------------------------------------
    def ensure_probing(self) -> None:
        """Keep one probe thread per open breaker (cheap enough for every request).

        A forked worker inherits no thread, so the first request in it starts its own.
        Requests never wait for a probe.
        """
        for breaker in self.breakers:
            if breaker.open:
                breaker.ensure_probing()
        self._ensure_standby_checks()

    def _probe(self, index: int) -> str | None:
        state = self.check(index)
        return None if state.ready else state.cause or "not ready"

    def _recovered(self, index: int) -> None:
        """A probe (or a request) found the store answering again."""
        state = self.states[index]
        state.ready, state.cause, state.fix = True, None, None
        active = self.active_index
        if active is None or index >= active:
            return
        log.warning(
            "session store %r is ready again: sessions move back to it from %r "
            "(sessions created meanwhile are read from %r and moved on first use)",
            state.name,
            self.states[active].name,
            self.states[active].name,
        )
        self._activate(index, None)
        self.observer.recovered(self.states[active].name, state.name)

    def _ensure_standby_checks(self) -> None:
        """Re-check the stores after the serving one now and then, so health knows them."""
        if self.recheck_interval <= 0 or self._stop.is_set():
            return
        thread = self._standby
        if thread is not None and thread.is_alive() and self._standby_pid == os.getpid():
            return
        with self._lock:
            thread = self._standby
            if thread is not None and thread.is_alive() and self._standby_pid == os.getpid():
                return
            self._standby_pid = os.getpid()
            self._standby = threading.Thread(
                target=self._standby_loop, name="session-standby-check", daemon=True
            )
            self._standby.start()

    def _standby_loop(self) -> None:
        while not self._stop.wait(self.recheck_interval * random.uniform(0.8, 1.2)):
            self.check_standby()

    def check_standby(self) -> None:
        """Check each store after the active one whose breaker is closed (open ones probe)."""
        active = self.active_index
        if active is None:
            return
        for index in range(active + 1, len(self.states)):
            if self.breaker_open(index):
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
