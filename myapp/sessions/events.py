"""What the session layer reports as it works; metrics and tests listen here."""

from __future__ import annotations


class SessionObserver:
    """Receives one call per event. The base class ignores everything.

    Implementations must be cheap and must never raise: they run on the hot path.
    """

    def session_loaded(self, store: str) -> None: ...
    def session_created(self, store: str) -> None: ...
    def session_saved(self, store: str) -> None: ...
    def session_touched(self, store: str) -> None: ...
    def session_invalidated(self, store: str) -> None: ...
    def session_conflict(self, store: str, gone: bool) -> None: ...
    def bad_cookie(self, reason: str) -> None: ...
    def session_unavailable(self, store: str) -> None: ...
    def store_error(self, store: str, kind: str) -> None: ...
    def store_latency(self, store: str, operation: str, seconds: float) -> None: ...
    def active_store(self, store: str, preferred: bool) -> None: ...
    def fallback(self, from_store: str | None, to_store: str, reason: str) -> None: ...
    def recovered(self, from_store: str, to_store: str) -> None: ...
    def purged(self, store: str, count: int) -> None: ...


class ObserverGroup(SessionObserver):
    """Fans every event out to several observers."""

    def __init__(self, observers: list[SessionObserver] | None = None) -> None:
        self.observers = list(observers or [])

    def add(self, observer: SessionObserver) -> None:
        self.observers.append(observer)

    def session_loaded(self, store: str) -> None:
        for observer in self.observers:
            observer.session_loaded(store)

    def session_created(self, store: str) -> None:
        for observer in self.observers:
            observer.session_created(store)

    def session_saved(self, store: str) -> None:
        for observer in self.observers:
            observer.session_saved(store)

    def session_touched(self, store: str) -> None:
        for observer in self.observers:
            observer.session_touched(store)

    def session_invalidated(self, store: str) -> None:
        for observer in self.observers:
            observer.session_invalidated(store)

    def session_conflict(self, store: str, gone: bool) -> None:
        for observer in self.observers:
            observer.session_conflict(store, gone)

    def bad_cookie(self, reason: str) -> None:
        for observer in self.observers:
            observer.bad_cookie(reason)

    def session_unavailable(self, store: str) -> None:
        for observer in self.observers:
            observer.session_unavailable(store)

    def store_error(self, store: str, kind: str) -> None:
        for observer in self.observers:
            observer.store_error(store, kind)

    def store_latency(self, store: str, operation: str, seconds: float) -> None:
        for observer in self.observers:
            observer.store_latency(store, operation, seconds)

    def active_store(self, store: str, preferred: bool) -> None:
        for observer in self.observers:
            observer.active_store(store, preferred)

    def fallback(self, from_store: str | None, to_store: str, reason: str) -> None:
        for observer in self.observers:
            observer.fallback(from_store, to_store, reason)

    def recovered(self, from_store: str, to_store: str) -> None:
        for observer in self.observers:
            observer.recovered(from_store, to_store)

    def purged(self, store: str, count: int) -> None:
        for observer in self.observers:
            observer.purged(store, count)
