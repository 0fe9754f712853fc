"""The primary store: the ``user_sessions`` table, through SQLAlchemy Core.

Every operation is one statement. Inside a request, a write joins the request's
database transaction when the view has opened one (``request.dbsession``), and so
commits or rolls back with the view's own data; otherwise the session factory
queues it until the request's transaction votes. A read joins that transaction if
it has begun. On PostgreSQL a state-changing request (POST...) loads and writes in
a session transaction of its own (``sessiontxn``). Everything else is one autocommit
statement on a held connection, run on the driver's cursor on PostgreSQL
(``sqldriver``, ``heldconnections``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import sqlalchemy as sa
import zope.sqlalchemy
from pyramid_tm import is_tm_active
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection
from zope.interface import implementer

from ..database import (
    AUTOCOMMIT_ENGINE_KEY,
    ENGINE_KEY,
    PGBOUNCER_KEY,
    autocommit_engine,
    existing_dbsession,
    get_engine,
)
from ..deadline import WATCHDOG, Deadline, Watchdog
from ..exceptions import StaleSession, StoreError, StoreNotReady
from ..interfaces import IRequestBoundStore
from ..options import SessionOptions
from ..table import REQUIRED_COLUMNS, USER_SESSIONS_REVISION, user_sessions
from .base import SessionRecord, SessionStore
from .heldconnections import HeldConnections
from .sessiontxn import SessionTransaction, expects_writes
from .sqldriver import CompiledStatements, DriverConnection, kept_cursor

if TYPE_CHECKING:
    from pyramid.registry import Registry
    from pyramid.request import Request
    from sqlalchemy.orm import Session as DBSession


log = logging.getLogger(__name__)
T = TypeVar("T")
_BOUND_KEY = "myapp.sessions.sql_store"
t = user_sessions.c


def _to_dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _param(name: str, column: sa.Column) -> sa.BindParameter:
    """A named parameter typed like ``column`` (SQLite needs the DateTime type)."""
    return sa.bindparam(name, type_=column.type)


def _to_epoch(value: datetime) -> float:
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _record(row: Sequence[Any]) -> SessionRecord:
    """A record from a row of ``SqlStatements.record_columns``."""
    key, data, created, last_active, expires, user_id, user_agent, version = row
    return SessionRecord(
        key=key,
        data=data,
        created=_to_epoch(created),
        last_active=_to_epoch(last_active),
        expires=_to_epoch(expires),
        user_id=user_id,
        user_agent=user_agent,
        version=version,
    )


class SqlStatements:
    """The store's Core statements for one dialect, built once.

    Constructing an UPDATE and computing its cache key cost ~380 us per save (an
    INSERT ~240 us), more than the round trip itself: the hot ones are built here,
    and on PostgreSQL compiled once for the driver (``sqldriver``).
    """

    def __init__(self, engine: Engine) -> None:
        self.is_postgres = engine.dialect.name == "postgresql"
        insert = postgresql.insert if self.is_postgres else sqlite.insert
        data = sa.bindparam("data", type_=sa.Text)
        # The JSON text is made (and checked) by the serializer; bind it as text so
        # SQLAlchemy does not encode it a second time.
        data_param = sa.cast(data, postgresql.JSONB) if self.is_postgres else data
        self.insert_new = (
            insert(user_sessions)
            .values(
                id=_param("b_key", t.id),
                data=data_param,
                created_at=_param("b_created", t.created_at),
                last_active_at=_param("b_last_active", t.last_active_at),
                expires_at=_param("b_expires", t.expires_at),
                user_id=_param("b_user_id", t.user_id),
                user_agent=_param("b_user_agent", t.user_agent),
                version=1,
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(t.version)
        )
        self.update_expected = (
            sa.update(user_sessions)
            .where(
                t.id == _param("b_key", t.id),
                t.version == _param("b_expected", t.version),
                t.expires_at > _param("b_last_active", t.expires_at),
            )
            .values(
                version=t.version + 1,
                data=data_param,
                last_active_at=_param("b_last_active", t.last_active_at),
                expires_at=_param("b_expires", t.expires_at),
                user_id=_param("b_user_id", t.user_id),
                user_agent=_param("b_user_agent", t.user_agent),
            )
            .returning(t.version)
        )
        self.touch = (
            sa.update(user_sessions)
            .where(t.id == _param("b_key", t.id), t.expires_at > _param("b_now", t.expires_at))
            .values(
                last_active_at=_param("b_last_active", t.last_active_at),
                expires_at=_param("b_expires", t.expires_at),
            )
        )
        # Every read selects the key first and then the record's fields, in the
        # order _record() takes them.
        self.record_columns = (
            t.id,
            sa.cast(t.data, sa.Text),
            t.created_at,
            t.last_active_at,
            t.expires_at,
            t.user_id,
            t.user_agent,
            t.version,
        )
        self.load = sa.select(*self.record_columns).where(
            t.id == sa.bindparam("key"), t.expires_at > sa.bindparam("now")
        )
        self.live_version = sa.select(t.version).where(
            t.id == _param("b_key", t.id), t.expires_at > _param("b_now", t.expires_at)
        )
        self.delete_key = sa.delete(user_sessions).where(t.id == _param("b_key", t.id))
        self.compiled: CompiledStatements | None = None
        if self.is_postgres:
            self.compiled = CompiledStatements(engine.dialect)
            self.compiled.keep(
                self.load,
                self.live_version,
                self.delete_key,
                self.insert_new,
                self.update_expected,
                self.touch,
            )


class _SqlOperations:
    """The store's I/O methods, each one statement, written against ``_read`` and
    ``_write``: :class:`SqlStore` runs them on its own connections, its request-bound
    form (:class:`RequestSqlStore`) in the request's transactions."""

    name = "sql"
    shared = True
    statements: SqlStatements

    def _read(self, fn: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    def _write(self, fn: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    def load(self, key: str, now: float) -> SessionRecord | None:
        load = self.statements.load
        row = self._read(lambda conn: conn.execute(load, {"key": key, "now": _to_dt(now)}).first())
        return None if row is None else _record(row)

    def save(self, record: SessionRecord, expected_version: int | None) -> int:
        params: dict[str, Any] = {
            "b_key": record.key,
            "data": record.data,
            "b_last_active": _to_dt(record.last_active),
            "b_expires": _to_dt(record.expires),
            "b_user_id": record.user_id,
            "b_user_agent": record.user_agent,
        }
        if expected_version is None:
            params["b_created"] = _to_dt(record.created)
            statement = self.statements.insert_new
        else:
            params["b_expected"] = expected_version
            statement = self.statements.update_expected
        stored_version = self._write(lambda conn: conn.execute(statement, params).scalar())
        if stored_version is not None:
            return int(stored_version)
        if expected_version is None:
            raise StaleSession(self.name, gone=False)
        check = {"b_key": record.key, "b_now": _to_dt(record.last_active)}
        live_version = self.statements.live_version
        still_live = self._read(lambda conn: conn.execute(live_version, check).first())
        raise StaleSession(self.name, gone=still_live is None)

    def touch(self, key: str, last_active: float, expires: float, now: float) -> bool:
        params = {
            "b_key": key,
            "b_now": _to_dt(now),
            "b_last_active": _to_dt(last_active),
            "b_expires": _to_dt(expires),
        }
        touch = self.statements.touch
        return self._write(lambda conn: conn.execute(touch, params).rowcount) == 1

    def delete(self, key: str) -> None:
        delete_key = self.statements.delete_key
        self._write(lambda conn: conn.execute(delete_key, {"b_key": key}))

    def delete_user(self, user_id: str, *, except_key: str | None = None) -> int:
        statement = sa.delete(user_sessions).where(t.user_id == user_id)
        if except_key is not None:
            statement = statement.where(t.id != except_key)
        return self._write(lambda conn: conn.execute(statement).rowcount)

    def list_user(self, user_id: str, now: float) -> list[SessionRecord]:
        statement = (
            sa.select(*self.statements.record_columns)
            .where(t.user_id == user_id, t.expires_at > _to_dt(now))
            .order_by(t.created_at)
        )
        rows = self._read(lambda conn: conn.execute(statement).all())
        return [_record(row) for row in rows]

    def purge_expired(self, now: float, batch_size: int) -> int:
        if self.statements.is_postgres:
            params = {"now": _to_dt(now), "n": batch_size}
            return self._write(lambda conn: conn.execute(_PURGE_POSTGRES, params).rowcount)
        victims = sa.select(t.id).where(t.expires_at <= _to_dt(now)).limit(batch_size)
        statement = sa.delete(user_sessions).where(t.id.in_(victims.scalar_subquery()))
        return self._write(lambda conn: conn.execute(statement).rowcount)

    def top_users(self, now: float, limit: int) -> list[tuple[str, int]]:
        count = sa.func.count().label("n")
        statement = (
            sa.select(t.user_id, count)
            .where(t.user_id.is_not(None), t.expires_at > _to_dt(now))
            .group_by(t.user_id)
            .order_by(count.desc(), t.user_id)
            .limit(limit)
        )
        rows = self._read(lambda conn: conn.execute(statement).all())
        return [(user_id, int(n)) for user_id, n in rows]

    def count(self, now: float) -> tuple[int, int]:
        moment = _to_dt(now)
        statement = sa.select(
            sa.func.count().filter(t.expires_at > moment),
            sa.func.count().filter(t.expires_at <= moment),
        )
        live, expired = self._read(lambda conn: conn.execute(statement).one())
        return int(live), int(expired)


class SqlStore(_SqlOperations, SessionStore):
    """The ``user_sessions`` table; outside a request, one autocommit statement each."""

    def __init__(
        self,
        engine: Engine,
        *,
        autocommit: Engine | None = None,
        config_file: str | None = None,
        timeout: float = SessionOptions.store_timeout,
        check_timeout: float = SessionOptions.check_timeout,
        watchdog: Watchdog = WATCHDOG,
        transaction_pooling: bool = False,
    ) -> None:
        self.engine = engine
        # Behind a transaction-pooling PgBouncer a request holds at most one server
        # connection at a time: no session transaction beside the view's own, which
        # could wait for each other's server connections in a small pool.
        self.session_transactions = not transaction_pooling
        self.config_file = config_file
        self.timeout = timeout
        self.check_timeout = check_timeout
        self.watchdog = watchdog
        _guard_pre_ping(engine, watchdog, timeout)
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
            with self.watchdog.guard(_fileno(conn), self.timeout, "sql statement") as deadline:
                result = fn(conn)
                if commit:
                    conn.commit()
                return result
        except SQLAlchemyError as exc:
            raise _store_error(exc, deadline, self.timeout) from exc

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
            raise _store_error(exc) from exc

    def _write(self, fn: Callable[[Connection], T]) -> T:
        # Every write is one statement too: on PostgreSQL its own autocommit
        # transaction, elsewhere a short transaction.
        if self._statements is not None:
            return self._on_driver(fn)
        try:
            with self.engine.connect() as conn:
                return self._guarded(conn, fn, commit=True)
        except SQLAlchemyError as exc:
            raise _store_error(exc) from exc

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
            raise _store_error(exc) from exc

    def _guard_driver(self, pooled: PoolProxiedConnection, run: Callable[[], T]) -> T:
        """``run()`` a round trip on ``pooled`` under the store deadline; driver errors
        become :class:`StoreError` (kind ``timeout`` once the deadline fired)."""
        deadline: Deadline | None = None
        try:
            with self.watchdog.guard(
                _driver_fileno(pooled.driver_connection), self.timeout, "sql statement"
            ) as deadline:
                return run()
        except self._dbapi_error as exc:
            raise _store_error(exc, deadline, self.timeout) from exc

    def bind(self, request: Request, *, session_transaction: bool = True) -> RequestSqlStore:
        """This store, running its statements in ``request``'s transactions (the same
        object for every call in one request: it holds the request's state).

        With ``session_transaction`` a state-changing request (see ``sessiontxn``)
        loads and writes its session in one transaction of its own.
        """
        bound = request.environ.get(_BOUND_KEY)
        # pyramid_retry reuses the environ for a new request: bound to that one anew.
        if bound is None or bound.parent is not self or bound.request is not request:
            bound = RequestSqlStore(self, request, session_transaction=session_transaction)
            request.environ[_BOUND_KEY] = bound
        return bound

    def check(self) -> None:
        fix = f"run `alembic -c {self.config_file or '<your ini file>'} upgrade head`"
        deadline: Deadline | None = None
        try:
            with self.engine.connect() as conn:
                guard = self.watchdog.guard(_fileno(conn), self.check_timeout, "readiness check")
                with guard as deadline:
                    problem = _schema_problem(conn, self.statements.is_postgres)
        except SQLAlchemyError as exc:
            cause = _short_cause(exc)
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


@implementer(IRequestBoundStore)
class RequestSqlStore(_SqlOperations, SessionStore):
    """The SQL store as one request uses it: the same statements, in the request's
    transactions. Its database session's when the view opened one, else its session
    transaction (state-changing requests on PostgreSQL), else one autocommit statement
    each on the parent store's connections."""

    answered_from_cache = False

    def __init__(self, parent: SqlStore, request: Request, *, session_transaction: bool) -> None:
        self.parent = parent
        self.request = request
        self.statements = parent.statements
        self._session_txn: SessionTransaction | None = None
        self._may_begin = (
            session_transaction
            and parent.session_transactions
            and parent._held is not None
            and expects_writes(request.method)
        )

    def bind(self, request: Request) -> RequestSqlStore:
        return self.parent.bind(request)

    def check(self) -> None:
        self.parent.check()

    def health(self) -> dict[str, object]:
        return self.parent.health()

    def close(self) -> None:
        """End this request's session transaction, if any; the parent keeps its pool."""
        if self._session_txn is not None:
            self._session_txn.close()

    def abandon(self) -> None:
        """Roll back the request's database transaction now.

        A save that fails in the before-commit hook leaves the transaction active:
        pyramid_tm does not abort it, so its row locks would be held (blocking every
        retry of the same session) until the request object is collected.
        """
        dbsession = self.request.__dict__.get("dbsession")
        if dbsession is None:
            return
        try:
            dbsession.rollback()
        except SQLAlchemyError as exc:
            log.info("rolling back after a failed session save failed too: %s", _short_cause(exc))

    def in_request_transaction(self) -> bool:
        dbsession = existing_dbsession(self.request)
        return dbsession is not None and dbsession.in_transaction()

    def session_transaction(self) -> SessionTransaction | None:
        txn = self._session_txn
        return txn if txn is not None and txn.open else None

    @property
    def _dbsession(self) -> DBSession:
        return self.request.dbsession

    def _read(self, fn: Callable[[Connection], T]) -> T:
        if not self.in_request_transaction():
            txn = self.session_transaction() or self._begin_session_transaction()
            if txn is not None:
                return fn(txn)  # type: ignore[arg-type]
            # Nothing of this request's transaction to see: read in autocommit on a
            # pooled connection, handed back before the view goes on, instead of
            # beginning the request's transaction for a read (~700 us CPU). A later
            # write's version check refuses what changed since this read.
            return self.parent._read(fn)
        try:
            conn = self._dbsession.connection()
        except SQLAlchemyError as exc:
            raise _store_error(exc) from exc
        return self.parent._guarded(conn, fn, commit=False)

    def _begin_session_transaction(self) -> SessionTransaction | None:
        """Begin the session transaction of a state-changing request, once."""
        request = self.request
        if not self._may_begin or not is_tm_active(request):
            return None
        self._may_begin = False
        parent = self.parent
        assert parent._held is not None and parent._statements is not None
        txn = SessionTransaction(
            parent._held,
            parent._statements,
            acquire=parent._acquire_held,
            guard=parent._guard_driver,
        )
        request.tm.get().join(txn)
        request.add_finished_callback(lambda request: txn.close())  # whatever happened
        self._session_txn = txn
        return txn

    def _write(self, fn: Callable[[Connection], T]) -> T:
        if not self.in_request_transaction():
            # Queued writes run in the session transaction; once that has ended
            # (an undo after a later resource failed), each is its own statement.
            txn = self.session_transaction()
            return fn(txn) if txn is not None else self.parent._write(fn)  # type: ignore[arg-type]
        dbsession = self._dbsession
        try:
            conn = dbsession.connection()
        except SQLAlchemyError as exc:
            raise _store_error(exc) from exc
        result = self.parent._guarded(conn, fn, commit=False)
        # Core statements are invisible to the ORM: tell zope.sqlalchemy to commit them.
        zope.sqlalchemy.mark_changed(dbsession)
        return result


# Victims by the expires_at index (a sequential scan re-reads every row deleted by
# earlier batches), deleted by ctid (no primary-key lookups); rows a concurrent
# purge or request holds are skipped, never waited on. 300k expired rows: 38,500
# rows/s and 85 ms batches with ``id IN (SELECT id ... LIMIT n)``, 87,000 rows/s
# and 30 ms batches with this.
_PURGE_POSTGRES = sa.text(
    "DELETE FROM user_sessions WHERE ctid = ANY(ARRAY("
    "SELECT ctid FROM user_sessions WHERE expires_at <= :now "
    "ORDER BY expires_at LIMIT :n FOR UPDATE SKIP LOCKED))"
)


def _schema_problem(conn: Connection, is_postgres: bool) -> str | None:
    """Why user_sessions cannot be used as it is, or None. Reads only; never creates."""
    if is_postgres:
        relkind = conn.execute(
            sa.text(
                "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = 'user_sessions' AND n.nspname = current_schema()"
            )
        ).scalar()
        if relkind is None:
            return "table user_sessions is missing"
        if relkind not in ("r", "p"):
            return f"user_sessions exists but is not a table (pg_class.relkind = {relkind!r})"
    inspector = sa.inspect(conn)
    if not inspector.has_table("user_sessions"):
        return "table user_sessions is missing"
    columns = {column["name"] for column in inspector.get_columns("user_sessions")}
    missing = REQUIRED_COLUMNS - columns
    if missing:
        return f"user_sessions lacks columns {', '.join(sorted(missing))}"
    if not inspector.has_table("alembic_version"):
        return "user_sessions exists but alembic_version does not (the schema is not Alembic's)"
    revisions = set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    if not revisions:
        return "alembic_version is empty: the database was never migrated"
    if USER_SESSIONS_REVISION not in revisions and _older_than_required(revisions):
        return (
            f"the database is at revision {', '.join(sorted(revisions))}, "
            f"older than {USER_SESSIONS_REVISION}"
        )
    return None


def _older_than_required(revisions: set[str]) -> bool:
    # Our revision ids start with a sequence number ("0001_..."); a database at a
    # later revision (a newer release migrated first) carries the columns we need.
    required = USER_SESSIONS_REVISION.split("_", 1)[0]
    return all(rev.split("_", 1)[0] < required for rev in revisions)


def _short_cause(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _store_error(
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
        return StoreError("sql", "query_canceled", _short_cause(exc))
    kind = "timeout" if "timeout" in str(exc).lower() else type(exc).__name__.lower()
    return StoreError("sql", kind, _short_cause(exc))


def _fileno(conn: Connection) -> int | None:
    """The socket under a connection, or None (SQLite has none)."""
    return _driver_fileno(conn.connection.dbapi_connection)


def _driver_fileno(dbapi_connection: Any) -> int | None:
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return None
    try:
        return int(fileno())
    except Exception:  # closed: there is no socket to guard
        return None


def _guard_pre_ping(engine: Engine, watchdog: Watchdog, timeout: float) -> None:
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


def build(options: SessionOptions, registry: Registry) -> SqlStore:
    engine = registry.get(ENGINE_KEY)
    if engine is None:  # pragma: no cover - register_engine runs first
        engine = get_engine(dict(registry.settings))
    return SqlStore(
        engine,
        autocommit=registry.get(AUTOCOMMIT_ENGINE_KEY),
        config_file=options.config_file,
        timeout=options.store_timeout,
        check_timeout=options.check_timeout,
        transaction_pooling=registry.get(PGBOUNCER_KEY) == "transaction",
    )
