"""The pool's checks on PostgreSQL connections before reuse: alive, and still on the primary.

Alive, without a round trip on every checkout: ``pool_pre_ping`` sends a query before
every checkout, one more round trip and transaction per request. A connection the
server closed (a restart, an idle timeout, a terminated backend) has a readable socket
(the FATAL message or EOF), which a zero-timeout poll sees at no cost; only such
connections, and those idle long enough for a silent network drop, are pinged.

On the primary, across a failover: after a switchover the server a pooled connection
talks to may still answer, read-only: a primary fenced with
``default_transaction_read_only``, or one demoted behind a pooler or a DNS name that now
points elsewhere. A ping passes there (a ``SELECT 1`` works on a read-only server) and
so would every read, served from a server that no longer receives the writes. So:

- a write refused with SQLSTATE 25006 (``read_only_sql_transaction``) means the server
  every pooled connection was opened to may no longer be the primary: each connection
  opened before that moment is closed instead of reused, and the next one is made
  afresh, where libpq's ``target_session_attrs=read-write`` finds the primary;
- with ``target_session_attrs`` asking for the primary, a server that reports what
  libpq would refuse to connect to (``in_hot_standby``, and for ``read-write``
  ``default_transaction_read_only`` too, which PostgreSQL 14+ sends to the client with
  the first answer after they change) has its answer refused (the SQL store checks after each round
  trip) and its connections retired the same way. No round trip: psycopg keeps the
  last values the server sent.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

# -- alive: pinged only when a connection looks closed or stale ---------------------
IDLE_PING_SECONDS = 10.0
_CHECKED_IN = "myapp.checked_in_at"


def needs_ping(
    dbapi_connection: Any, idle_since: float | None, now: float, idle_seconds: float
) -> bool:
    """Whether a connection idle since ``idle_since`` must be pinged before use."""
    if idle_since is None or now - idle_since >= idle_seconds:
        return True
    return looks_closed(dbapi_connection)


def looks_closed(dbapi_connection: Any) -> bool:
    """Whether the server closed this idle psycopg connection (no round trip)."""
    if dbapi_connection.closed:
        return True
    fileno = dbapi_connection.fileno()
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLERR | select.POLLHUP)
    # Nothing is pending on a healthy idle connection; anything there means trouble.
    return bool(poller.poll(0))


def ping_when_stale(engine: Engine, idle_seconds: float = IDLE_PING_SECONDS) -> None:
    """Ping on checkout only connections that look closed or sat idle ``idle_seconds``."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def checkin(dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get(_CHECKED_IN)
        if not needs_ping(dbapi_connection, idle_since, time.monotonic(), idle_seconds):
            return
        try:
            dialect.do_ping(dbapi_connection)  # looked up now: others may wrap it
        except dialect.loaded_dbapi.Error as error:
            # The pool replaces the connection and tries again.
            raise exc.DisconnectionError(f"pooled connection failed its ping: {error}") from error


# -- on the primary: connections to a server that turned read-only retired ---------

#: SQLSTATE of a write refused by a read-only server (a standby, or a fenced primary).
READ_ONLY_SQLSTATE = "25006"
#: Where a pooled connection's record keeps (its fence, the generation it was opened in).
FENCE_KEY = "myapp.primary_fence"


def is_read_only_error(error: BaseException | None) -> bool:
    """Whether a driver error (or SQLAlchemy's wrapper of one) is a read-only refusal."""
    driver_error = getattr(error, "orig", None) or error
    return getattr(driver_error, "sqlstate", None) == READ_ONLY_SQLSTATE


#: What each target_session_attrs refuses, as the server reports it (PostgreSQL 14+).
_READ_ONLY_REPORTS = {
    "read-write": (b"in_hot_standby", b"default_transaction_read_only"),
    "primary": (b"in_hot_standby",),
}


def serves_read_only(dbapi_connection: Any, reports: tuple[bytes, ...]) -> bool:
    """Whether the server behind a psycopg connection last reported one of ``reports``
    (parameter names) as ``on``."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None or getattr(dbapi_connection, "closed", True):
        return False
    # libpq's own copy of what the server reported (~0.2 us; ``info`` builds an object).
    status = pgconn.parameter_status
    return any(status(name) == b"on" for name in reports)


class PrimaryFence:
    """A generation counter: connections opened before the last read-only refusal are
    not reused. Each new connection's pool record holds the fence and its generation,
    so whoever holds a connection can check it, through the pool or beside it."""

    def __init__(self, target_session_attrs: str = "") -> None:
        #: What the URL's target_session_attrs would refuse to connect to, as reported
        #: by the server: a connection that reports it is retired. Empty: any server.
        self.refused_reports = _READ_ONLY_REPORTS.get(target_session_attrs.lower(), ())
        self.generation = 0
        self._lock = threading.Lock()

    def raise_fence(self, reason: str) -> None:
        """Retire every connection opened so far (logged once per wave of refusals)."""
        with self._lock:
            self.generation += 1
            first = self.generation == 1
        (log.warning if first else log.info)(
            "the database server is read-only (%s): pooled connections opened before now"
            " are closed instead of reused; new ones go to the primary when sqlalchemy.url"
            " says target_session_attrs=read-write",
            reason,
        )


def watch_for_failover(engine: Engine) -> PrimaryFence:
    """Stamp each new connection of ``engine``'s pool (and of pools recreated from it)
    with a fence; the pool's checkout refuses a retired connection (``retired``)."""
    attrs = engine.url.query.get("target_session_attrs") or ""
    if not isinstance(attrs, str):
        attrs = attrs[-1]
    fence = PrimaryFence(attrs)

    @event.listens_for(engine, "connect")
    def stamp(dbapi_connection: Any, record: Any) -> None:
        record.info[FENCE_KEY] = (fence, fence.generation)

    @event.listens_for(engine, "checkout")
    def refuse_retired(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if retired(record.info, dbapi_connection):
            raise exc.DisconnectionError("pooled connection to a read-only server retired")

    return fence


def retired(info: dict[str, Any], dbapi_connection: Any) -> bool:
    """Whether a pooled connection (its record's ``info``) must not be used again."""
    stamp = info.get(FENCE_KEY)
    if stamp is None:
        return False
    fence, generation = stamp
    if generation < fence.generation:
        return True
    if fence.refused_reports and serves_read_only(dbapi_connection, fence.refused_reports):
        fence.raise_fence("it reported itself read-only")
        return True
    return False


def answered_read_only(info: dict[str, Any], dbapi_connection: Any) -> bool:
    """After a statement: whether its server now says it is read-only while the URL asks
    for the primary. What it answered may be stale; the fence is raised."""
    stamp = info.get(FENCE_KEY)
    if stamp is None or not stamp[0].refused_reports:
        return False
    if serves_read_only(dbapi_connection, stamp[0].refused_reports):
        stamp[0].raise_fence("it reported itself read-only")
        return True
    return False


def note_failure(info: dict[str, Any] | None, error: BaseException | None) -> None:
    """Raise the fence of the connection on which ``error`` happened, if it says the
    server is read-only."""
    stamp = (info or {}).get(FENCE_KEY)
    if stamp is not None and is_read_only_error(error):
        stamp[0].raise_fence(_first_line(error))


def _first_line(error: BaseException | None) -> str:
    driver_error = getattr(error, "orig", None) or error
    text = str(driver_error).strip().splitlines()
    return text[0] if text else READ_ONLY_SQLSTATE
