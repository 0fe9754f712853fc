"""Every request refused with a 503 leaves a WARNING naming its cause, without flooding.

The first refusal of a kind (the page, the exception's type) is logged at once; more of
the same kind within ``interval`` seconds are counted and summed up in the next line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pyramid.config import Configurator
from pyramid.request import Request
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

REFUSALS_KEY = "myapp.refusals"
INTERVAL_SECONDS = 60.0


def cause_of(exc: BaseException | None) -> str:
    """The exception in one line, without the SQL statement SQLAlchemy appends."""
    if exc is None:
        return "unknown cause"
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0] if text else 'no message'}"


class RefusalLog:
    """Rate-limited WARNINGs, one line per kind of refusal and interval."""

    def __init__(
        self, interval: float = INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}
        self._quiet: dict[tuple[str, str], int] = {}

    def note(self, where: str, exc: BaseException | None) -> bool:
        """Log this refusal unless one of its kind was logged less than ``interval``
        ago; True when a line was written."""
        kind = (where, type(exc).__name__)
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._quiet[kind] = self._quiet.get(kind, 0) + 1
                return False
            self._last[kind] = now
            quiet = self._quiet.pop(kind, 0)
        also = (
            f" ({quiet} more refused for the same cause in the last {int(now - last)} s)"
            if quiet and last is not None
            else ""
        )
        log.warning("refused %s with 503: %s%s", where, cause_of(exc), also)
        return True


def note_refusal(request: Request, where: str, exc: BaseException | None) -> None:
    """Log a 503 answered to ``request`` (``where``: the page or the action)."""
    request.registry[REFUSALS_KEY].note(where, exc)


def includeme(config: Configurator) -> None:
    config.registry[REFUSALS_KEY] = RefusalLog()
