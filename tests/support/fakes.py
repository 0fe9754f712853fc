"""Fake stores and chains for unit tests: memory stores whose readiness a test switches."""

from __future__ import annotations

from myapp.sessions.chain import StoreChain, StoreState
from myapp.sessions.events import SessionObserver
from myapp.sessions.exceptions import StoreError, StoreNotReady
from myapp.sessions.stores.memorystore import MemoryStore


class FakeStore(MemoryStore):
    """A memory store whose readiness a test switches by hand."""

    def __init__(self, name: str, *, ready: bool = True, shared: bool = True) -> None:
        super().__init__(max_entries=100)
        self.name = name
        self.shared = shared
        self.ready = ready
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        if not self.ready:
            raise StoreNotReady(self.name, "switched off", "switch it on")


class Recorder(SessionObserver):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def fallback(self, from_store, to_store, reason) -> None:
        self.events.append(("fallback", from_store, to_store))

    def recovered(self, from_store, to_store) -> None:
        self.events.append(("recovered", from_store, to_store))


def make_chain(*stores: FakeStore, **kwargs) -> StoreChain:
    chain = StoreChain(
        [StoreState(store.name, store) for store in stores],
        observer=kwargs.pop("observer", SessionObserver()),
        recheck_interval=0,  # no standby thread
        **kwargs,
    )
    for breaker in chain.breakers:
        breaker.ensure_probing = lambda: None  # probes are run by hand here
    return chain


class DownStore(FakeStore):
    """Answers its start-up check, then fails every load as a dead server would."""

    def load(self, key, now):
        raise StoreError(self.name, "connection", "connection refused")
