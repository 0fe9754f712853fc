"""The primary store: the ``user_sessions`` table, through SQLAlchemy Core.

Every operation is one statement (``operations``). Outside a request each is one
autocommit statement on a held connection (``held``), run on the driver's cursor on
PostgreSQL (``driver``); a request uses the store's request-bound form (``request``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection

from ...database import (
    AUTOCOMMIT_ENGINE_KEY,
    ENGINE_KEY,
    PGBOUNCER_KEY,
    autocommit_engine,
    get_engine,
)
from ...database.pool import answered_read_only, note_failure
from ...exceptions import StoreError, StoreNotReady, error_summary
from ...options import SessionOptions
from ..authenticator import RecordAuthenticator
from ..base import SessionStore
from .driver import DriverConnection, kept_cursor
from .guard import (
    WATCHDOG,
    Deadline,
    Watchdog,
    driver_fileno,
    fileno_of,
    guard_pre_ping,
    store_error,
)
from .held import HeldConnections
from .operations import SqlOperations
from .schema import data_kept_verbatim, schema_problem
from .statements import SqlStatements

if TYPE_CHECKING:
    from pyramid.registry import Registry
    from pyramid.request import Request

    from ...interfaces import IRequestBoundStore

log = logging.getLogger(__name__)
T = TypeVar("T")
_BOUND_KEY = "myapp.sessions.sql_store"
READ_ONLY_CAUSE = "the database server is read-only now (a fenced or demoted primary?)"


class SqlStore(SqlOperations, SessionStore):
    """The ``user_sessions`` table; outside a request, one autocommit statement each."""

    def __init__(
        self,
        engine: Engine,
        *,
        authenticator: RecordAuthenticator,
        autocommit: Engine | None = None,
        config_file: str | None = None,
        timeout: float = SessionOptions.store_timeout,
        check_timeout: float = SessionOptions.check_timeout,
        watchdog: Watchdog = WATCHDOG,
        transaction_pooling: bool = False,
    ) -> None:
        self.engine = engine
        self.authenticator = authenticator
        # Behind a transaction-pooling PgBouncer a request holds at most one server
        # connection at a time: no session transaction beside the view's own, which
        # could wait for each other's server connections in a small pool.
        self.session_transactions = not transaction_pooling
        self.config_file = config_file
        self.timeout = timeout
        self.check_timeout = check_timeout
        self.watchdog = watchdog
        guard_pre_ping(engine, watchdog, timeout)
        self.statements = SqlStatements(engine)
        if self.statements.is_postgres:
            # Statements outside a request's transaction: a pool that stays in autocommit.
            self._autocommit = autocommit or autocommit_engine(engine)
        else:
            self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._statements = self.statements.compiled
        self._held: HeldConnections | None = None
        if self._statements is not None:
            self._held = HeldConnections(self._autocommit)

    # -- how statements run ------------------------------------------------------
    def _guarded(self, conn: Connection, fn: Callable[[Connection], T], *, commit: bool) -> T:
        """Run ``fn`` (and the commit) under the store deadline: a frozen server costs
        ``timeout`` seconds, then the connection is shut down and dropped."""
        deadline: Deadline | None = None
        try:
            with self.watchdog.guard(fileno_of(conn), self.timeout, "sql statement") as deadline:
                result = fn(conn)
                if commit:
                    conn.commit()
        except SQLAlchemyError as exc:
            raise store_error(exc, deadline, self.timeout) from exc
        if answered_read_only(conn.info, conn.connection.driver_connection):
            conn.invalidate()  # see _guard_driver
            raise StoreError("sql", "read_only", READ_ONLY_CAUSE)
        return result

    def _read(self, fn: Callable[[Connection], T]) -> T:
        # Every read is one statement, which needs no transaction around it: in
        # autocommit it is one round trip instead of three (BEGIN, SELECT, ROLLBACK)
        # and nothing can be left idle in transaction.
        if self._statements is not None:
            return self._on_driver(fn)
        try:
            with self._autocommit.connect() as conn:
                return self._guarded(conn, fn, commit=False)
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc

    def _write(self, fn: Callable[[Connection], T]) -> T:
        # Every write is one statement too: on PostgreSQL its own autocommit
        # transaction, elsewhere a short transaction.
        if self._statements is not None:
            return self._on_driver(fn)
        try:
            with self.engine.connect() as conn:
                return self._guarded(conn, fn, commit=True)
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc

    def _on_driver(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn``'s one statement on a held autocommit connection, on its driver.

        A connection on which anything failed (an error the driver reported, a
        terminated backend, an overrun deadline) is closed and the pool replaces it:
        whatever state the failure left on it never reaches the next statement. Any
        other goes back to the held ones.
        """
        assert self._statements is not None and self._held is not None
        pooled = self._acquire_held()
        statements = self._statements
        try:
            result = self._guard_driver(
                pooled,
                lambda: fn(DriverConnection(kept_cursor(pooled), statements)),  # type: ignore[arg-type]
            )
        except BaseException as exc:
            self._held.discard(pooled, exc)
            raise
        self._held.release(pooled)
        return result

    def _acquire_held(self) -> PoolProxiedConnection:
        assert self._held is not None
        try:
            return self._held.acquire()
        except (SQLAlchemyError, self._dbapi_error) as exc:  # the pool does not wrap these
            raise store_error(exc) from exc

    def _guard_driver(self, pooled: PoolProxiedConnection, run: Callable[[], T]) -> T:
        """``run()`` a round trip on ``pooled`` under the store deadline; driver errors
        become :class:`StoreError` (kind ``timeout`` once the deadline fired)."""
        deadline: Deadline | None = None
        try:
            with self.watchdog.guard(
                driver_fileno(pooled.driver_connection), self.timeout, "sql statement"
            ) as deadline:
                result = run()
        except self._dbapi_error as exc:
            note_failure(pooled.info, exc)  # a read-only server: retire its connections
            raise store_error(exc, deadline, self.timeout) from exc
        if answered_read_only(pooled.info, pooled.driver_connection):
            # Not the primary any more (fenced, or a standby behind a name that moved):
            # what it answered may be stale, so it is refused and the connection closed.
            raise StoreError("sql", "read_only", READ_ONLY_CAUSE)
        return result

    def bind(self, request: Request, *, session_transaction: bool = True) -> IRequestBoundStore:
        """This store, running its statements in ``request``'s transactions (the same
        object for every call in one request: it holds the request's state).

        With ``session_transaction`` a state-changing request (see ``pipeline``)
        loads and writes its session in one transaction of its own.
        """
        bound = request.environ.get(_BOUND_KEY)
        # pyramid_retry reuses the environ for a new request: bound to that one anew.
        if bound is None or bound.parent is not self or bound.request is not request:
            # Imported here: the request-bound form is typed to this store (no circle).
            from .request import RequestSqlStore

            bound = RequestSqlStore(self, request, session_transaction=session_transaction)
            request.environ[_BOUND_KEY] = bound
        return bound

    def check(self) -> None:
        fix = f"run `alembic -c {self.config_file or '<your ini file>'} upgrade head`"
        deadline: Deadline | None = None
        try:
            with self.engine.connect() as conn:
                guard = self.watchdog.guard(fileno_of(conn), self.check_timeout, "readiness check")
                with guard as deadline:
                    problem = schema_problem(conn, self.statements.is_postgres)
                    if problem is None:
                        verbatim = data_kept_verbatim(conn, self.statements.is_postgres)
                        self.statements.data_verbatim = verbatim
        except SQLAlchemyError as exc:
            cause = error_summary(exc)
            if deadline is not None and deadline.fired:
                cause = f"no answer within {self.check_timeout:g}s (frozen or overloaded?)"
            raise StoreNotReady(
                self.name,
                f"cannot connect to the database ({cause})",
                "check sqlalchemy.url and that the database server is running",
            ) from exc
        if problem:
            raise StoreNotReady(self.name, problem, fix)

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
        self.engine.dispose()
        self._autocommit.dispose()


def build(options: SessionOptions, registry: Registry) -> SqlStore:
    engine = registry.get(ENGINE_KEY)
    if engine is None:  # pragma: no cover - register_engine runs first
        engine = get_engine(dict(registry.settings))
    return SqlStore(
        engine,
        authenticator=RecordAuthenticator(options.secret_bytes, "sql"),
        autocommit=registry.get(AUTOCOMMIT_ENGINE_KEY),
        config_file=options.config_file,
        timeout=options.store_timeout,
        check_timeout=options.check_timeout,
        transaction_pooling=registry.get(PGBOUNCER_KEY) == "transaction",
    )
