"""The SQL store's statements, built once per dialect, and the row <-> record mapping."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from ...database.table import user_sessions
from ..authenticator import RecordAuthenticator, canonical_data
from ..base import SessionRecord
from .driver import CompiledStatements

t = user_sessions.c


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def param(name: str, column: sa.Column) -> sa.BindParameter:
    """A named parameter typed like ``column`` (SQLite needs the DateTime type)."""
    return sa.bindparam(name, type_=column.type)


def to_epoch(value: datetime) -> float:
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


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


class SqlStatements:
    """The store's Core statements for one dialect, built once.

    Constructing an UPDATE and computing its cache key cost ~380 us per save (an
    INSERT ~240 us), more than the round trip itself: the hot ones are built here,
    and on PostgreSQL compiled once for the driver (``driver``).
    """

    def __init__(self, engine: Engine) -> None:
        self.is_postgres = engine.dialect.name == "postgresql"
        #: Whether ``user_sessions.data`` gives back the very text it was given (json,
        #: SQLite's text) rather than a form of its own (jsonb): rows are then signed over
        #: that text (``row_mac``). Found by the store's start-up check; until then, and
        #: on jsonb, rows are signed over the canonical form, which verifies on either.
        self.data_verbatim = False
        insert = postgresql.insert if self.is_postgres else sqlite.insert
        data = sa.bindparam("data", type_=sa.Text)
        # The JSON text is made (and checked) by the serializer; bind it as text so
        # SQLAlchemy does not encode it a second time. A json column keeps that text as
        # is (a jsonb one, before 0004_user_sessions_layout, takes it by assignment).
        data_param = sa.cast(data, postgresql.JSON) if self.is_postgres else data
        self.insert_new = (
            insert(user_sessions)
            .values(
                id=param("b_key", t.id),
                data=data_param,
                created_at=param("b_created", t.created_at),
                last_active_at=param("b_last_active", t.last_active_at),
                expires_at=param("b_expires", t.expires_at),
                expires_bucket=param("b_bucket", t.expires_bucket),
                user_id=param("b_user_id", t.user_id),
                user_agent=param("b_user_agent", t.user_agent),
                version=1,
                mac=param("b_mac", t.mac),
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(t.version)
        )
        self.update_expected = (
            sa.update(user_sessions)
            .where(
                t.id == param("b_key", t.id),
                t.version == param("b_expected", t.version),
                t.expires_at > param("b_last_active", t.expires_at),
            )
            .values(
                version=t.version + 1,
                data=data_param,
                last_active_at=param("b_last_active", t.last_active_at),
                expires_at=param("b_expires", t.expires_at),
                # The same value as before unless the expiry crossed into the next
                # bucket: an indexed column left as it was keeps the update heap-only.
                expires_bucket=param("b_bucket", t.expires_bucket),
                user_id=param("b_user_id", t.user_id),
                user_agent=param("b_user_agent", t.user_agent),
                mac=param("b_mac", t.mac),
            )
            .returning(t.version)
        )
        self.touch = (
            sa.update(user_sessions)
            .where(
                t.id == param("b_key", t.id),
                t.expires_at > param("b_now", t.expires_at),
                # The authenticator is re-signed for this version only.
                t.version == param("b_version", t.version),
            )
            .values(
                last_active_at=param("b_last_active", t.last_active_at),
                expires_at=param("b_expires", t.expires_at),
                expires_bucket=param("b_bucket", t.expires_bucket),
                mac=param("b_mac", t.mac),
            )
        )
        # Every read selects the key first and then the record's fields, in the
        # order record_from_row() takes them.
        self.record_columns = (
            t.id,
            sa.cast(t.data, sa.Text),
            t.created_at,
            t.last_active_at,
            t.expires_at,
            t.user_id,
            t.user_agent,
            t.version,
            t.mac,
        )
        self.load = sa.select(*self.record_columns).where(
            t.id == sa.bindparam("key"), t.expires_at > sa.bindparam("now")
        )
        self.live_version = sa.select(t.version).where(
            t.id == param("b_key", t.id), t.expires_at > param("b_now", t.expires_at)
        )
        self.delete_key = sa.delete(user_sessions).where(t.id == param("b_key", t.id))
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


# Victims by the expires_bucket index (a sequential scan re-reads every row deleted
# by earlier batches), deleted by ctid (no primary-key lookups); rows a concurrent
# purge or request holds are skipped, never waited on. A bucket is always later than
# its row's expiry, so every row the index range yields is expired; the exact
# expires_at is checked all the same (an older release's touch may have moved
# expires_at past a bucket it left as it was). Rows without a bucket (inserted by an
# older release during an upgrade) are found by the same index's NULL entries.
# 300k expired rows: 87,000 rows/s and 30 ms batches.
PURGE_POSTGRES = sa.text(
    "DELETE FROM user_sessions WHERE ctid = ANY(ARRAY("
    "SELECT ctid FROM user_sessions WHERE expires_bucket <= :bucket AND expires_at <= :now "
    "ORDER BY expires_bucket LIMIT :n FOR UPDATE SKIP LOCKED) || ARRAY("
    "SELECT ctid FROM user_sessions WHERE expires_bucket IS NULL AND expires_at <= :now "
    "LIMIT :n FOR UPDATE SKIP LOCKED))"
)
