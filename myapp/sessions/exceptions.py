"""Every exception the session package raises, in one place.

Stores raise :class:`StoreError` (and :class:`StoreNotReady` from ``check()``) and
:class:`StaleSession`; the factory turns them into what a request answers: a 503
(:class:`SessionStoreUnavailable`), a retry (:class:`SessionConflict`,
:class:`SessionStoreFailover`) or a 413 (:class:`SessionTooLarge`).
"""

from __future__ import annotations

from pyramid.exceptions import ConfigurationError
from transaction.interfaces import TransientError


class StoreError(Exception):
    """A store could not do what was asked (down, timed out, broken schema)."""

    def __init__(self, store: str, kind: str, message: str) -> None:
        super().__init__(f"{store} store: {message}")
        self.store = store
        self.kind = kind


class StoreNotReady(StoreError):
    """Raised by ``check()``: the store cannot serve; ``fix`` tells the operator what to do."""

    def __init__(self, store: str, cause: str, fix: str) -> None:
        super().__init__(store, "not_ready", cause)
        self.cause = cause
        self.fix = fix


class StaleSession(Exception):
    """A save lost a race: the stored session changed (or ended) since it was read."""

    def __init__(self, store: str, *, gone: bool) -> None:
        what = "ended or expired" if gone else "changed by a concurrent request"
        super().__init__(f"{store} store: the session was {what} since this request read it")
        self.store = store
        self.gone = gone


class SessionStoreUnavailable(StoreError):
    """The serving store failed during a request; rendered as a 503."""


class SessionStoreFailover(SessionStoreUnavailable, TransientError):
    """The serving store failed at commit while runtime failover is on.

    A TransientError: pyramid_retry runs the request again, and the new attempt
    avoids the failed store (noted in the environ). Rendered as a 503 when no
    attempt is left.
    """


class SessionTemporarilyUnavailable(SessionStoreUnavailable):
    """The request's session may live in a store that cannot be asked right now.

    Not "ended": the cookie stays, and the session is back once that store is. Raised
    (a 503 with Retry-After) when such a request needs its session to change state.
    """


class SessionConflict(TransientError):
    """Another request saved this session since ours read it.

    A TransientError: with pyramid_retry the whole request is run again on fresh
    data instead of overwriting the other request's change.
    """


class SessionTooLarge(ValueError):
    """The serialised session is larger than ``session.max_size``."""


class NoStoreReady(ConfigurationError):
    """Start-up cannot go on: not one configured store is ready."""


class PurgeLocked(Exception):
    """Another process holds the purge lock: it is purging right now."""


def error_summary(exc: BaseException) -> str:
    """The first line of a driver error: no parameters, no stack, fit for a log line."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


#: What building a store may raise (a bad setting, a missing driver, an unreachable
#: host while resolving it): the store is then recorded as not ready, never a crash.
BUILD_ERRORS: tuple[type[Exception], ...] = (StoreError, ValueError, ImportError, OSError)
