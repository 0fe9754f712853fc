"""Checking pooled PostgreSQL connections without a round trip on every checkout.

``pool_pre_ping`` sends a query before every checkout: one more round trip and
transaction per request. A connection the server closed (a restart, an idle
timeout, a terminated backend) has a readable socket (the FATAL message or EOF),
which a zero-timeout poll sees at no cost; only such connections, and those idle
long enough for a silent network drop, are pinged.
"""

from __future__ import annotations

import select
import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

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
