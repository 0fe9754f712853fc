"""What the chain last learned about one store, as ``/healthz`` reports it."""

from __future__ import annotations

from dataclasses import dataclass

from ..stores.base import SessionStore, health
from ..stores.breaker import Breaker


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
