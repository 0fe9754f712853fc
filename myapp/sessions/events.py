"""What the session layer reports as it works; metrics and tests listen here."""

from __future__ import annotations

from collections.abc import Callable


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


def _fan_out(name: str) -> Callable[..., None]:
    def method(self: ObserverGroup, *args: object) -> None:
        for observer in self.observers:
            getattr(observer, name)(*args)

    method.__name__ = method.__qualname__ = name
    return method


# One fan-out method per event, made once here rather than on every call.
for _name in [name for name in vars(SessionObserver) if not name.startswith("_")]:
    setattr(ObserverGroup, _name, _fan_out(_name))
del _name
