"""The SQL store's I/O methods, each one statement, written against ``_read`` and
``_write`` (how a statement runs is the store's business, or its request-bound form's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from zope.interface import implementer

from ...database.table import expiry_bucket, user_sessions
from ...exceptions import StaleSession
from ...interfaces import IPurgeable, IStoreStatistics, IUserSessions, IUserSessionsTable
from ..authenticator import RecordAuthenticator
from ..base import SessionRecord
from .statements import (
    PURGE_POSTGRES,
    SqlStatements,
    param,
    record_from_row,
    row_mac,
    t,
    to_datetime,
    unverified_record,
)

T = TypeVar("T")


@implementer(IUserSessions, IPurgeable, IStoreStatistics, IUserSessionsTable)
class SqlOperations:
    """The store's I/O methods, each one statement, written against ``_read`` and
    ``_write``: :class:`SqlStore` runs them on its own connections, its request-bound
    form (:class:`RequestSqlStore`) in the request's transactions."""

    name = "sql"
    shared = True
    statements: SqlStatements
    authenticator: RecordAuthenticator

    def _read(self, fn: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    def _write(self, fn: Callable[[Connection], T]) -> T:
        raise NotImplementedError

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
            raise StaleSession(self.name, gone=False)
        check = {"b_key": record.key, "b_now": to_datetime(record.last_active)}
        live_version = self.statements.live_version
        still_live = self._read(lambda conn: conn.execute(live_version, check).first())
        raise StaleSession(self.name, gone=still_live is None)

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
        check = {"b_key": record.key, "b_now": params["b_now"]}
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
