"""The primary store: the ``user_sessions`` table, through SQLAlchemy Core; what SQL it
runs for each operation, and how a row becomes a record.

Every operation is one statement (:class:`SqlOperations`), run by whichever store form
holds it. Outside a request each is one autocommit statement, on PostgreSQL on a held
connection's cursor (``connection``); a request uses the store's request-bound form
(``transaction``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from zope.interface import implementer

from ...database import (
    AUTOCOMMIT_ENGINE_KEY,
    ENGINE_KEY,
    PGBOUNCER_KEY,
    autocommit_engine,
    get_engine,
)
from ...exceptions import StaleSession, StoreNotReady, error_summary
from ...interfaces import IPurgeable, IStoreStatistics, IUserSessions, IUserSessionsTable
from ...options import SessionOptions
from ..authenticator import RecordAuthenticator, canonical_data
from ..base import SessionRecord, SessionStore
from .connection import (
    WATCHDOG,
    Deadline,
    Driver,
    Guard,
    HeldConnections,
    Watchdog,
    fileno_of,
    guard_pre_ping,
    store_error,
)
from .statements import PURGE_POSTGRES, SqlStatements, param, t
from .table import EXPIRY_BUCKET_SECONDS, data_kept_verbatim, schema_problem, user_sessions

if TYPE_CHECKING:
    from pyramid.registry import Registry
    from pyramid.request import Request

    from ...interfaces import IRequestBoundStore

log = logging.getLogger(__name__)
T = TypeVar("T")
NAME = "sql"
_BOUND_KEY = "myapp.sessions.sql_store"


class Runs(Protocol):
    """How a store form runs one statement: ``fn`` given a connection to run it on."""

    def __call__(self, fn: Callable[[Connection], T], /) -> T: ...


# -- rows and records --------------------------------------------------------------


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def to_epoch(value: datetime) -> float:
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def expiry_bucket(expires: float) -> int:
    """The bucket of an expiry (Unix seconds): the end of the hour it falls in.

    Always later than ``expires`` itself, so ``expires_bucket <= now`` only ever
    selects expired rows; a row waits at most one bucket to be purged.
    """
    return (int(expires // EXPIRY_BUCKET_SECONDS) + 1) * EXPIRY_BUCKET_SECONDS


def unverified_record(row: Sequence[Any]) -> tuple[SessionRecord, str | None]:
    """The record in a row of ``SqlStatements.record_columns`` and its stored
    authenticator, not yet checked."""
    key, data, created, last_active, expires, user_id, user_agent, version, mac = row
    record = SessionRecord(
        key=key,
        data=data,
        created=to_epoch(created),
        last_active=to_epoch(last_active),
        expires=to_epoch(expires),
        user_id=user_id,
        user_agent=user_agent,
        version=version,
    )
    return record, mac


def record_from_row(row: Sequence[Any], authenticator: RecordAuthenticator) -> SessionRecord | None:
    """A record from a row of ``SqlStatements.record_columns``; None (said in the log)
    when its authenticator fails, or is NULL (a row written before the column existed,
    or one whose authenticator someone removed)."""
    record, mac = unverified_record(row)
    if mac is None:
        authenticator.refused("it has no authenticator")
        return None
    if authenticator.verify_stored(record, mac):  # signed over the data's very text
        return record
    # Signed over the data made canonical: written by a store on a jsonb column (the
    # layout before 0004_user_sessions_layout, or a release before it).
    try:
        canonical = canonical_data(record.data)
    except ValueError:
        authenticator.refused("its data is not JSON")
        return None
    return record if authenticator.verify(record, mac, canonical) else None


def row_mac(
    authenticator: RecordAuthenticator,
    record: SessionRecord,
    version: int,
    statements: SqlStatements,
) -> str:
    """The authenticator stored with ``record`` at ``version``: over the data's very text
    where the column keeps it (``statements.data_verbatim``), else over its canonical
    form, since ``jsonb`` hands back the JSON in a form of its own."""
    if statements.data_verbatim:
        return authenticator.sign_stored(record, version)
    return authenticator.sign(record, version, canonical_data(record.data))


# -- the operations ----------------------------------------------------------------


class SqlOperations:
    """The store's I/O methods, each one statement, run by the ``read`` and ``write``
    they are handed: :class:`SqlStore` hands its own (autocommit statements on its
    connections), its request-bound form (``transaction.RequestSqlStore``) the
    request's transactions."""

    def __init__(
        self,
        statements: SqlStatements,
        authenticator: RecordAuthenticator,
        *,
        read: Runs,
        write: Runs,
    ) -> None:
        self.statements = statements
        self.authenticator = authenticator
        self._read = read
        self._write = write

    def load(self, key: str, now: float) -> SessionRecord | None:
        load = self.statements.load
        row = self._read(
            lambda conn: conn.execute(load, {"key": key, "now": to_datetime(now)}).first()
        )
        return None if row is None else record_from_row(row, self.authenticator)

    def save(self, record: SessionRecord, expected_version: int | None) -> int:
        params: dict[str, Any] = {
            "b_key": record.key,
            "data": record.data,
            "b_last_active": to_datetime(record.last_active),
            "b_expires": to_datetime(record.expires),
            "b_bucket": expiry_bucket(record.expires),
            "b_user_id": record.user_id,
            "b_user_agent": record.user_agent,
        }
        new_version = 1 if expected_version is None else expected_version + 1
        params["b_mac"] = row_mac(self.authenticator, record, new_version, self.statements)
        if expected_version is None:
            params["b_created"] = to_datetime(record.created)
            statement = self.statements.insert_new
        else:
            params["b_expected"] = expected_version
            statement = self.statements.update_expected
        stored_version = self._write(lambda conn: conn.execute(statement, params).scalar())
        if stored_version is not None:
            return int(stored_version)
        if expected_version is None:
            raise StaleSession(NAME, gone=False)
        raise StaleSession(NAME, gone=not self._live(record.key, to_datetime(record.last_active)))

    def touch(self, record: SessionRecord, last_active: float, expires: float, now: float) -> bool:
        moved = record.with_changes(last_active=last_active, expires=expires)
        params = {
            "b_key": record.key,
            "b_now": to_datetime(now),
            "b_last_active": to_datetime(last_active),
            "b_expires": to_datetime(expires),
            "b_bucket": expiry_bucket(expires),
            "b_version": record.version,
            "b_mac": row_mac(self.authenticator, moved, record.version, self.statements),
        }
        touch = self.statements.touch
        if self._write(lambda conn: conn.execute(touch, params).rowcount) == 1:
            return True
        # Ended, or saved since it was read (that save moved the expiry already).
        return self._live(record.key, params["b_now"])

    def _live(self, key: str, now: datetime) -> bool:
        """Whether ``key`` is stored and live at ``now``: asked after a write that
        changed no row."""
        check = {"b_key": key, "b_now": now}
        live_version = self.statements.live_version
        return self._read(lambda conn: conn.execute(live_version, check).first()) is not None

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
            .where(t.user_id == user_id, t.expires_at > to_datetime(now))
            .order_by(t.created_at)
        )
        rows = self._read(lambda conn: conn.execute(statement).all())
        records = (record_from_row(row, self.authenticator) for row in rows)
        return [record for record in records if record is not None]

    def session_keys_of(self, user_id: str) -> list[str]:
        """The keys of every row of ``user_id``, expired ones too, without reading the
        records (the read cache's entries of them are ended with the rows, also by a
        tool that holds no session secret)."""
        statement = sa.select(t.id).where(t.user_id == user_id)
        return [row[0] for row in self._read(lambda conn: conn.execute(statement).all())]

    def sign_unsigned(self, now: float, batch_size: int) -> int:
        """Sign the live rows that carry no authenticator (written before the column
        existed), in batches by key; how many were signed.

        For an upgrade: run once with the session secret, after ``alembic upgrade head``
        and before the new release serves, so nobody is signed out by it. It trusts
        every row it signs, as the release before did. A row saved meanwhile is signed
        by that save, or (by an older release) on the next run.
        """
        batch = (
            sa.select(*self.statements.record_columns)
            .where(t.id > sa.bindparam("b_after"), t.expires_at > param("b_now", t.expires_at))
            .order_by(t.id)
            .limit(batch_size)
        )
        sign = (
            sa.update(user_sessions)
            .where(
                t.id == param("b_key", t.id),
                t.version == param("b_version", t.version),
                t.mac.is_(None),
            )
            .values(mac=param("b_mac", t.mac))
        )
        after, signed = "", 0
        while True:
            query = {"b_after": after, "b_now": to_datetime(now)}
            rows = self._read(lambda conn, query=query: conn.execute(batch, query).all())
            if not rows:
                return signed
            for row in rows:
                record, mac = unverified_record(row)
                if mac is not None:
                    continue
                try:
                    stored = row_mac(self.authenticator, record, record.version, self.statements)
                except ValueError:  # data that is not JSON: never served either way
                    continue
                values = {"b_key": record.key, "b_version": record.version, "b_mac": stored}
                signed += self._write(lambda conn, v=values: conn.execute(sign, v).rowcount)
            after = rows[-1][0]

    def purge_expired(self, now: float, batch_size: int) -> int:
        # Only buckets that have ended: every row in them is expired.
        params = {"bucket": int(now), "now": to_datetime(now), "n": batch_size}
        if self.statements.is_postgres:
            return self._write(lambda conn: conn.execute(PURGE_POSTGRES, params).rowcount)
        victims = (
            sa.select(t.id)
            .where(
                sa.or_(t.expires_bucket <= params["bucket"], t.expires_bucket.is_(None)),
                t.expires_at <= params["now"],
            )
            .limit(batch_size)
        )
        statement = sa.delete(user_sessions).where(t.id.in_(victims.scalar_subquery()))
        return self._write(lambda conn: conn.execute(statement).rowcount)

    def top_users(self, now: float, limit: int) -> list[tuple[str, int]]:
        count = sa.func.count().label("n")
        statement = (
            sa.select(t.user_id, count)
            .where(t.user_id.is_not(None), t.expires_at > to_datetime(now))
            .group_by(t.user_id)
            .order_by(count.desc(), t.user_id)
            .limit(limit)
        )
        rows = self._read(lambda conn: conn.execute(statement).all())
        return [(user_id, int(n)) for user_id, n in rows]

    def count(self, now: float) -> tuple[int, int]:
        moment = to_datetime(now)
        statement = sa.select(
            sa.func.count().filter(t.expires_at > moment),
            sa.func.count().filter(t.expires_at <= moment),
        )
        live, expired = self._read(lambda conn: conn.execute(statement).one())
        return int(live), int(expired)


# -- the store ---------------------------------------------------------------------


class SqlStoreForm(SessionStore):
    """What both forms of the SQL store share: the I/O methods, each its
    :class:`SqlOperations`' method, run as the form runs statements (``run_read`` and
    ``run_write``, which each form defines)."""

    name = NAME
    operations: SqlOperations

    def load(self, key: str, now: float) -> SessionRecord | None:
        return self.operations.load(key, now)

    def save(self, record: SessionRecord, expected_version: int | None) -> int:
        return self.operations.save(record, expected_version)

    def touch(self, record: SessionRecord, last_active: float, expires: float, now: float) -> bool:
        return self.operations.touch(record, last_active, expires, now)

    def delete(self, key: str) -> None:
        self.operations.delete(key)

    def delete_user(self, user_id: str, *, except_key: str | None = None) -> int:
        return self.operations.delete_user(user_id, except_key=except_key)

    def list_user(self, user_id: str, now: float) -> list[SessionRecord]:
        return self.operations.list_user(user_id, now)

    def session_keys_of(self, user_id: str) -> list[str]:
        return self.operations.session_keys_of(user_id)

    def sign_unsigned(self, now: float, batch_size: int) -> int:
        return self.operations.sign_unsigned(now, batch_size)

    def purge_expired(self, now: float, batch_size: int) -> int:
        return self.operations.purge_expired(now, batch_size)

    def top_users(self, now: float, limit: int) -> list[tuple[str, int]]:
        return self.operations.top_users(now, limit)

    def count(self, now: float) -> tuple[int, int]:
        return self.operations.count(now)


@implementer(IUserSessions, IPurgeable, IStoreStatistics, IUserSessionsTable)
class SqlStore(SqlStoreForm):
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
        self.guard = Guard(watchdog, timeout, engine.dialect.loaded_dbapi.Error)
        #: On PostgreSQL: its statements on held connections' cursors.
        self.driver: Driver | None = None
        if self.statements.compiled is not None:
            held = HeldConnections(self._autocommit)
            self.driver = Driver(held, self.statements.compiled, self.guard)
        self.operations = SqlOperations(
            self.statements, authenticator, read=self.run_read, write=self.run_write
        )

    # -- how statements run ------------------------------------------------------
    def run_read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn``'s one read outside a request's transaction."""
        # Every read is one statement, which needs no transaction around it: in
        # autocommit it is one round trip instead of three (BEGIN, SELECT, ROLLBACK)
        # and nothing can be left idle in transaction.
        if self.driver is not None:
            return self.driver.run(fn)
        try:
            with self._autocommit.connect() as conn:
                return self.guard.connection(conn, fn, commit=False)
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc

    def run_write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn``'s one write outside a request's transaction."""
        # Every write is one statement too: on PostgreSQL its own autocommit
        # transaction, elsewhere a short transaction.
        if self.driver is not None:
            return self.driver.run(fn)
        try:
            with self.engine.connect() as conn:
                return self.guard.connection(conn, fn, commit=True)
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc

    def bind(self, request: Request, *, session_transaction: bool = True) -> IRequestBoundStore:
        """This store, running its statements in ``request``'s transactions (the same
        object for every call in one request: it holds the request's state).

        With ``session_transaction`` a state-changing request (see ``transaction``)
        loads and writes its session in one transaction of its own.
        """
        bound = request.environ.get(_BOUND_KEY)
        # pyramid_retry reuses the environ for a new request: bound to that one anew.
        if bound is None or bound.parent is not self or bound.request is not request:
            # Imported here: the request-bound form builds on this module (no circle).
            from .transaction import RequestSqlStore

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
        if self.driver is not None:
            self.driver.held.close()
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
