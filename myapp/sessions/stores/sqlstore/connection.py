"""How the SQL store's statements reach the server: every round trip under the store's
deadline, driver errors as :class:`StoreError`, and on PostgreSQL its statements run
on the cursor of a connection it holds between statements.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Select
from sqlalchemy.sql.expression import Executable

from ...database.pool import (
    IDLE_PING_SECONDS,
    answered_read_only,
    needs_ping,
    note_failure,
    retired,
)
from ...exceptions import StoreError, error_summary

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_ONLY_CAUSE = "the database server is read-only now (a fenced or demoted primary?)"

# -- deadlines ---------------------------------------------------------------------

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


class Guard:
    """Every round trip of the store under its deadline: a frozen server costs
    ``timeout`` seconds, then the connection is shut down and dropped. Driver errors
    become :class:`StoreError` (kind ``timeout`` once the deadline fired), and an
    answer from a server that turned read-only is refused."""

    def __init__(self, watchdog: Watchdog, timeout: float, driver_error: type[Exception]) -> None:
        self.watchdog = watchdog
        self.timeout = timeout
        self._driver_error = driver_error

    def connection(self, conn: Connection, fn: Callable[[Connection], T], *, commit: bool) -> T:
        """Run ``fn`` (and the commit) on a SQLAlchemy connection."""
        deadline: Deadline | None = None
        try:
            with self.watchdog.guard(fileno_of(conn), self.timeout, "sql statement") as deadline:
                result = fn(conn)
                if commit:
                    conn.commit()
        except SQLAlchemyError as exc:
            raise store_error(exc, deadline, self.timeout) from exc
        if answered_read_only(conn.info, conn.connection.driver_connection):
            conn.invalidate()  # see driver()
            raise StoreError("sql", "read_only", READ_ONLY_CAUSE)
        return result

    def driver(self, pooled: PoolProxiedConnection, run: Callable[[], T]) -> T:
        """``run()`` a round trip on ``pooled``'s driver connection."""
        deadline: Deadline | None = None
        try:
            with self.watchdog.guard(
                driver_fileno(pooled.driver_connection), self.timeout, "sql statement"
            ) as deadline:
                result = run()
        except self._driver_error as exc:
            note_failure(pooled.info, exc)  # a read-only server: retire its connections
            raise store_error(exc, deadline, self.timeout) from exc
        if answered_read_only(pooled.info, pooled.driver_connection):
            # Not the primary any more (fenced, or a standby behind a name that moved):
            # what it answered may be stale, so it is refused and the connection closed.
            raise StoreError("sql", "read_only", READ_ONLY_CAUSE)
        return result


# -- statements on the driver's cursor ---------------------------------------------
# Statements are still written with SQLAlchemy Core (``statements``) and compiled once
# for the engine's dialect. Only their execution skips SQLAlchemy's ``Connection``,
# which cost ~45 us CPU per statement in-process on top of psycopg's own ~40 us, and
# ~85 us per request through waitress. Used only where the store owns a pooled
# connection (one autocommit statement, or its session transaction); statements inside
# the request's database transaction go through that transaction's ``Connection``.


class DriverResult:
    """The part of SQLAlchemy's ``Result`` that the SQL store uses."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Sequence[Any]] | None, rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Sequence[Any] | None:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def one(self) -> Sequence[Any]:
        if self._rows is None or len(self._rows) != 1:
            raise ValueError(f"expected exactly one row, got {len(self._rows or ())}")
        return self._rows[0]

    def all(self) -> list[Sequence[Any]]:
        return list(self._rows or ())


class Compiled(NamedTuple):
    sql: str
    defaults: dict[str, Any]
    returns_rows: bool
    #: A SELECT: it writes nothing, so a transaction that ran only such is not undone.
    only_reads: bool


class CompiledStatements:
    """SQL text and default parameters of Core statements, compiled for one dialect.

    Statements given to ``keep`` are compiled once and remembered; any other is
    compiled on each use (the store's rare operations build theirs per call).
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._kept: dict[Executable, Compiled] = {}

    def keep(self, *statements: Executable) -> None:
        for statement in statements:
            self._kept[statement] = self._compile(statement)

    def kept(self) -> list[Compiled]:
        """The statements given to ``keep``, compiled."""
        return list(self._kept.values())

    def __call__(self, statement: Executable) -> Compiled:
        kept = self._kept.get(statement)
        return kept if kept is not None else self._compile(statement)

    def _compile(self, statement: Executable) -> Compiled:
        compiled = statement.compile(dialect=self._dialect)  # type: ignore[attr-defined]
        # PostgreSQL through psycopg binds every type this store uses (text, integer,
        # timestamptz) without a SQLAlchemy processor, so the values go as they are.
        if compiled._bind_processors:
            raise TypeError(f"statement needs bind processors: {compiled.string}")
        # Known here, so the cursor's description (costly in psycopg) is never needed.
        returns_rows = bool(getattr(statement, "exported_columns", ()))
        only_reads = isinstance(statement, Select)  # text() counts as a write: the safe side
        return Compiled(compiled.string, dict(compiled.params), returns_rows, only_reads)


_CURSOR = "myapp.sessions.cursor"


def kept_cursor(pooled: Any) -> Any:
    """The cursor kept with a pooled connection, made on its first use.

    It lives in the pool record's ``info`` next to the DB-API connection it belongs to
    (a reconnected record gets a new one): a new cursor per statement costs psycopg
    ~6 us. A pooled connection serves one thread at a time, and so does its cursor.
    """
    driver = pooled.driver_connection
    kept = pooled.info.get(_CURSOR)
    if kept is None or kept[0] is not driver:
        kept = pooled.info[_CURSOR] = (driver, driver.cursor())
    return kept[1]


class DriverConnection:
    """Runs the store's Core statements on a DB-API cursor: ``execute`` like
    SQLAlchemy's ``Connection`` for the calls the store makes."""

    __slots__ = ("_compiled", "_cursor")

    def __init__(self, cursor: Any, compiled: CompiledStatements) -> None:
        self._cursor = cursor
        self._compiled = compiled

    def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> DriverResult:
        sql, values, returns_rows, _ = self._compiled(statement)
        if parameters:
            values = {**values, **parameters}
        cursor = self._cursor
        cursor.execute(sql, values)
        return DriverResult(cursor.fetchall() if returns_rows else None, cursor.rowcount)


# -- connections held between statements -------------------------------------------


class HeldConnections:
    """A LIFO stack of the autocommit engine's pooled connections, kept checked out.

    Each one-statement call used to check a connection out of SQLAlchemy's pool and
    back in: events, record bookkeeping and a reset-on-return ROLLBACK (a no-op in
    autocommit, still a driver call) cost ~25 us CPU per request, as much as a third of
    psycopg's own cost for the statement. Here an idle connection waits on a stack
    instead, still checked out of (and so still counted by) the engine's pool, whose
    size and overflow keep bounding how many exist. At most ``pool_size`` wait; any
    other is closed when released, as the pool closes its overflow. Disposing of the
    engine closes the held ones too.

    What the pool did at checkout is done here when a connection is taken: one that
    looks closed (its socket is readable) or that idled ``idle_ping_seconds`` is
    pinged, and replaced when the ping fails; one opened before a server refused a
    write as read-only is closed (``database.pool``). ``pool_recycle`` applies only when a
    connection is taken from the pool itself.
    """

    def __init__(self, engine: Engine, idle_ping_seconds: float = IDLE_PING_SECONDS) -> None:
        self._engine = engine
        self._idle_ping_seconds = idle_ping_seconds
        self._dialect = engine.dialect
        #: The driver's own exceptions (the pool does not wrap them).
        self.driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._keep = max(1, int(getattr(engine.pool, "size", lambda: 5)()))
        self._idle: list[tuple[PoolProxiedConnection, float]] = []
        self._lock = threading.Lock()  # only for close() against release()
        self._closed = False
        self._pid = os.getpid()
        # Whoever disposes of the engine (shutdown, tests, a failover) means its
        # connections: the held ones are closed too.
        event.listen(engine, "engine_disposed", self._on_engine_disposed)

    def acquire(self) -> PoolProxiedConnection:
        """A connection for one statement; give it back with ``release`` or ``discard``."""
        if self._pid != os.getpid():
            self._forget_inherited()
        while True:
            try:
                pooled, idle_since = self._idle.pop()  # atomic: no lock on the hot path
            except IndexError:
                return self._engine.raw_connection()
            if self._usable(pooled, idle_since):
                return pooled

    def release(self, pooled: PoolProxiedConnection) -> None:
        """Keep a healthy connection for the next statement."""
        with self._lock:
            if not self._closed and len(self._idle) < self._keep:
                self._idle.append((pooled, time.monotonic()))
                return
        # Closed, as the pool closes its overflow: held and pooled idle connections
        # together stay within pool_size.
        self.discard(pooled)

    def discard(self, pooled: PoolProxiedConnection, error: BaseException | None = None) -> None:
        """Close a connection (one on which anything failed, or one not needed) and
        hand its slot back to the pool, which opens a new one when asked."""
        pooled.invalidate(error)
        pooled.close()

    def close(self) -> None:
        """Close every waiting connection and keep none from now on."""
        with self._lock:
            self._closed = True
        self._close_idle()

    def _on_engine_disposed(self, engine: Engine) -> None:
        if self._pid == os.getpid():
            self._close_idle()

    def _close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for pooled, _ in idle:
            # Closed, not checked back in: the pool they came from may be gone.
            self.discard(pooled)

    def __len__(self) -> int:
        return len(self._idle)

    def _usable(self, pooled: PoolProxiedConnection, idle_since: float) -> bool:
        driver = pooled.driver_connection
        if retired(pooled.info, driver):  # opened to a server that is read-only now
            self.discard(pooled)
            return False
        if not needs_ping(driver, idle_since, time.monotonic(), self._idle_ping_seconds):
            return True
        try:
            self._dialect.do_ping(driver)
        except self.driver_error as error:
            self.discard(pooled, error)
            return False
        return True

    def _forget_inherited(self) -> None:
        # A forked worker must neither talk on its parent's sockets nor close them:
        # it starts a pool of its own and leaves the inherited connections alone.
        self._idle = []
        self._pid = os.getpid()
        self._engine.dispose(close=False)


class Driver:
    """The store's statements on the cursors of its held connections (PostgreSQL),
    each round trip under its guard: one autocommit statement each outside a request,
    and the session transactions' statements."""

    def __init__(self, held: HeldConnections, compiled: CompiledStatements, guard: Guard) -> None:
        self.held = held
        self.compiled = compiled
        self.guard = guard

    def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn``'s one statement on a held autocommit connection, on its driver.

        A connection on which anything failed (an error the driver reported, a
        terminated backend, an overrun deadline) is closed and the pool replaces it:
        whatever state the failure left on it never reaches the next statement. Any
        other goes back to the held ones.
        """
        pooled = self.acquire()
        compiled = self.compiled
        try:
            result = self.guard.driver(
                pooled,
                lambda: fn(DriverConnection(kept_cursor(pooled), compiled)),  # type: ignore[arg-type]
            )
        except BaseException as exc:
            self.held.discard(pooled, exc)
            raise
        self.held.release(pooled)
        return result

    def acquire(self) -> PoolProxiedConnection:
        """A held connection; driver errors as :class:`StoreError`."""
        try:
            return self.held.acquire()
        except (SQLAlchemyError, self.held.driver_error) as exc:
            raise store_error(exc) from exc
