"""Every SQL call under the store's deadline, and driver errors as :class:`StoreError`.

Deadlines are application-level: a blocking socket call has no timeout of its own.
A query on an open connection to a frozen PostgreSQL stays blocked however the driver
is tuned (see FACTS: connect_timeout, keepalives and statement_timeout do not help).
One watchdog thread looks at the calls in flight every ``SCAN_SECONDS``; when one has
overrun its deadline it shuts down that call's socket, so the call fails at once and
the pool drops the connection.

Arming and cancelling are a dictionary insert and pop under an uncontended lock
(about 1 us): only calls in flight are kept, so the scan is as short as the number of
busy threads, and the thread sleeps for good while nothing is in flight.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy.engine import Connection, Engine

from ...exceptions import StoreError, error_summary

log = logging.getLogger(__name__)

#: How often in-flight calls are checked: a deadline fires up to this much late.
SCAN_SECONDS = 0.05


class Deadline:
    """One armed deadline; ``fired`` tells the caller its socket was shut down."""

    __slots__ = ("fileno", "fired", "what", "when")

    def __init__(self, fileno: int, when: float, what: str) -> None:
        self.fileno = fileno
        self.when = when
        self.what = what
        self.fired = False


class Watchdog:
    """Shuts down the socket of any guarded call still running past its deadline."""

    def __init__(self, clock=time.monotonic, scan_seconds: float = SCAN_SECONDS) -> None:
        self._clock = clock
        self._scan_seconds = scan_seconds
        self._in_flight: dict[int, Deadline] = {}
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        self._busy = threading.Event()  # set while calls may be in flight
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def arm(self, fileno: int, seconds: float, what: str = "call") -> tuple[int, Deadline]:
        """Start a deadline for the socket ``fileno``; cancel it when the call returns."""
        deadline = Deadline(fileno, self._clock() + seconds, what)
        token = next(self._tokens)
        with self._lock:
            self._in_flight[token] = deadline
        if not self._busy.is_set() or self._pid != os.getpid():
            self._ensure_thread()
            self._busy.set()
        return token, deadline

    def cancel(self, token: int) -> None:
        # Under the lock: once this returns, the watchdog can no longer touch the
        # socket, so the caller may hand the connection back to the pool.
        with self._lock:
            self._in_flight.pop(token, None)

    @contextlib.contextmanager
    def guard(
        self, fileno: int | None, seconds: float, what: str = "call"
    ) -> Iterator[Deadline | None]:
        """Run the block under a deadline; ``fileno`` None (no socket) runs it unguarded."""
        if fileno is None or fileno < 0:
            yield None
            return
        token, deadline = self.arm(fileno, seconds, what)
        try:
            yield deadline
        finally:
            self.cancel(token)

    def _ensure_thread(self) -> None:
        # A forked worker inherits no threads: start one per pid.
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="session-deadlines", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            # Clear first, then look: an arm() in between sets the event again.
            self._busy.clear()
            if not self._in_flight:
                self._busy.wait()
            time.sleep(self._scan_seconds)
            self._fire_overdue()

    def _fire_overdue(self) -> None:
        now = self._clock()
        with self._lock:
            overdue = [
                (token, deadline)
                for token, deadline in self._in_flight.items()
                if deadline.when <= now
            ]
            for token, deadline in overdue:
                del self._in_flight[token]
                deadline.fired = True
                _shutdown(deadline.fileno)
        for _, deadline in overdue:
            log.warning(
                "a session store %s overran its deadline; its connection was shut down",
                deadline.what,
            )


def _shutdown(fileno: int) -> None:
    """Shut the socket down through a duplicate, so the owner's descriptor stays valid."""
    try:
        dup = os.dup(fileno)
    except OSError:
        return
    try:
        with socket.socket(fileno=dup) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError as exc:
        log.info("could not shut down a session store socket: %s", exc)


#: One watchdog per process is enough: it only wakes while calls are in flight.
WATCHDOG = Watchdog()


def store_error(
    exc: Exception, deadline: Deadline | None = None, timeout: float = 0.0
) -> StoreError:
    if deadline is not None and deadline.fired:
        return StoreError(
            "sql", "timeout", f"no answer within {timeout:g}s (frozen or overloaded?)"
        )
    driver_error = getattr(exc, "orig", None) or exc
    if isinstance(driver_error, psycopg.errors.QueryCanceled):
        # The server answered: it cancelled one statement (statement_timeout, a lock
        # wait, an operator's pg_cancel_backend). Not the silence of a frozen server.
        return StoreError("sql", "query_canceled", error_summary(exc))
    if isinstance(driver_error, psycopg.errors.ReadOnlySqlTransaction):
        # SQLSTATE 25006: a standby, or a primary fenced read-only (a switchover).
        return StoreError("sql", "read_only", error_summary(exc))
    kind = "timeout" if "timeout" in str(exc).lower() else type(exc).__name__.lower()
    return StoreError("sql", kind, error_summary(exc))


def fileno_of(conn: Connection) -> int | None:
    """The socket under a connection, or None (SQLite has none)."""
    return driver_fileno(conn.connection.dbapi_connection)


def driver_fileno(dbapi_connection: Any) -> int | None:
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return None
    try:
        return int(fileno())
    except Exception:  # closed: there is no socket to guard
        return None


def guard_pre_ping(engine: Engine, watchdog: Watchdog, timeout: float) -> None:
    """Put the pool's pre-ping under a deadline too.

    The ping runs on checkout, before any statement of ours, and on a frozen server
    it blocks like any query. A ping that fails marks the connection dead; the pool
    then opens a new one (bounded by ``connect_timeout``).
    """
    dialect = engine.dialect
    if getattr(dialect, "_myapp_guarded_ping", False):
        return
    plain_ping = dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        fileno = getattr(dbapi_connection, "fileno", None)
        with watchdog.guard(fileno() if fileno else None, timeout, "pool pre-ping"):
            return plain_ping(dbapi_connection)

    dialect.do_ping = do_ping  # type: ignore[method-assign]
    dialect._myapp_guarded_ping = True  # type: ignore[attr-defined]
