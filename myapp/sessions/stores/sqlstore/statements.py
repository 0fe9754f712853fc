"""The SQL store's statements, built once per dialect (what its operations run)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from .connection import CompiledStatements
from .table import user_sessions

t = user_sessions.c


def param(name: str, column: sa.Column) -> sa.BindParameter:
    """A named parameter typed like ``column`` (SQLite needs the DateTime type)."""
    return sa.bindparam(name, type_=column.type)


class SqlStatements:
    """The store's Core statements for one dialect, built once.

    Constructing an UPDATE and computing its cache key cost ~380 us per save (an
    INSERT ~240 us), more than the round trip itself: the hot ones are built here,
    and on PostgreSQL compiled once for the driver (``connection``).
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
        # order ``store.record_from_row`` takes them.
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
