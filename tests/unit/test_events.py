"""The observer group: every event reaches every observer, those added later too."""

from __future__ import annotations

from myapp.sessions.events import ObserverGroup, SessionObserver


class Recorder(SessionObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[object, ...]]] = []

    def session_loaded(self, store: str) -> None:
        self.seen.append(("session_loaded", (store,)))

    def store_latency(self, store: str, operation: str, seconds: float) -> None:
        self.seen.append(("store_latency", (store, operation, seconds)))


def test_every_event_reaches_every_observer_with_its_arguments():
    first, second = Recorder(), Recorder()
    group = ObserverGroup([first])
    group.add(second)
    group.session_loaded("sql")
    group.store_latency("redis", "load", 0.5)
    group.purged("sql", 3)  # an event neither records: ignored, not an error
    expected = [("session_loaded", ("sql",)), ("store_latency", ("redis", "load", 0.5))]
    assert first.seen == expected
    assert second.seen == expected


def test_every_event_of_the_observer_interface_fans_out():
    events = [name for name in vars(SessionObserver) if not name.startswith("_")]
    assert events and all(
        getattr(ObserverGroup, name) is not getattr(SessionObserver, name) for name in events
    )
