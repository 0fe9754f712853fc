"""user_sessions stays small: a coarse expiry index instead of expires_at, room on every page.

Online: every step is short and the table is never rewritten. The column is added
without a default (a catalog change), filled in batches of its own transactions,
indexed with CREATE INDEX CONCURRENTLY, and the old index dropped CONCURRENTLY. The
storage parameters apply to pages written from now on. Each step checks what is
already done, so a run that stopped half way (a deploy killed, a lock timeout) is
finished by the next ``alembic upgrade head``.

Revision ID: 0002_user_sessions_hot
Revises: 0001_user_sessions
"""

import logging

import sqlalchemy as sa
from alembic import op

from myapp.sessions.database.onlineddl import add_column_without_queueing

revision = "0002_user_sessions_hot"
down_revision = "0001_user_sessions"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# Frozen here as they were when this revision was written (the session table's module,
# myapp.sessions.stores.sqlstore.table, may change them later; any bucket later than its
# row's expires_at stays correct).
BUCKET_SECONDS = 3600
FILLFACTOR = 80
# A dead row is vacuumed once 2% of the table (not PostgreSQL's 20%) has changed, so
# a table of millions of sessions is vacuumed every few minutes rather than a day.
# The TOAST table (session data over ~2 KB) gets the same: every save of a large
# session leaves its previous value there, dead.
AUTOVACUUM = (
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_analyze_scale_factor",
    "toast.autovacuum_vacuum_scale_factor",
    "toast.autovacuum_vacuum_insert_scale_factor",
)
STORAGE = ", ".join([f"fillfactor = {FILLFACTOR}", *(f"{name} = 0.02" for name in AUTOVACUUM)])
BATCH_ROWS = 10_000

# The end of the hour (BUCKET_SECONDS) in which each row expires, in Unix seconds.
PG_FILL = (
    "UPDATE user_sessions SET expires_bucket = "
    "(floor(extract(epoch FROM expires_at))::bigint / 3600 + 1) * 3600 "
    "WHERE expires_bucket IS NULL"
)
SQLITE_FILL = (
    "UPDATE user_sessions SET expires_bucket = "
    "(CAST(strftime('%s', expires_at) AS INTEGER) / 3600 + 1) * 3600"
)


def _has_column(name: str) -> bool:
    columns = sa.inspect(op.get_bind()).get_columns("user_sessions")
    return any(column["name"] == name for column in columns)


def _index_state(name: str) -> str | None:
    """'valid', 'invalid' (a concurrent build that failed) or None (no such index)."""
    valid = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = :name AND n.nspname = current_schema()"
            ),
            {"name": name},
        )
        .scalar()
    )
    return None if valid is None else ("valid" if valid else "invalid")


def _add_column_postgres() -> None:
    add_column_without_queueing(
        "ALTER TABLE user_sessions ADD COLUMN IF NOT EXISTS expires_bucket bigint"
    )


def _backfill_postgres() -> None:
    """Fill expires_bucket in primary-key order, one short transaction per batch."""
    bind = op.get_bind()
    last, filled = "", 0
    while True:
        upper = bind.execute(
            sa.text(
                "SELECT id FROM user_sessions WHERE id > :last ORDER BY id OFFSET :skip LIMIT 1"
            ),
            {"last": last, "skip": BATCH_ROWS - 1},
        ).scalar()
        bound = " AND id > :last" + ("" if upper is None else " AND id <= :upper")
        filled += bind.execute(sa.text(PG_FILL + bound), {"last": last, "upper": upper}).rowcount
        if upper is None:
            break
        last = upper
    log.info("user_sessions: expires_bucket filled in on %d rows", filled)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        if not _has_column("expires_bucket"):
            op.add_column("user_sessions", sa.Column("expires_bucket", sa.BigInteger()))
        op.execute(SQLITE_FILL)
        op.create_index("ix_user_sessions_expires_bucket", "user_sessions", ["expires_bucket"])
        op.drop_index("ix_user_sessions_expires_at", table_name="user_sessions")
        return
    with op.get_context().autocommit_block():
        # Pages written from now on (the backfill's included) keep room for HOT updates.
        op.execute(f"ALTER TABLE user_sessions SET ({STORAGE})")
        _add_column_postgres()
        _backfill_postgres()
        if _index_state("ix_user_sessions_expires_bucket") == "invalid":
            op.execute("DROP INDEX CONCURRENTLY ix_user_sessions_expires_bucket")
        if _index_state("ix_user_sessions_expires_bucket") is None:
            op.execute(
                "CREATE INDEX CONCURRENTLY ix_user_sessions_expires_bucket "
                "ON user_sessions (expires_bucket)"
            )
        # Rows an older release inserted during the backfill, found by the new index.
        op.execute(PG_FILL)
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_user_sessions_expires_at")
        op.execute(
            "COMMENT ON COLUMN user_sessions.expires_bucket IS "
            "'end of the hour expires_at falls in (Unix seconds); what the purge indexes'"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        op.create_index("ix_user_sessions_expires_at", "user_sessions", ["expires_at"])
        op.drop_index("ix_user_sessions_expires_bucket", table_name="user_sessions")
        op.drop_column("user_sessions", "expires_bucket")
        return
    with op.get_context().autocommit_block():
        if _index_state("ix_user_sessions_expires_at") == "invalid":
            op.execute("DROP INDEX CONCURRENTLY ix_user_sessions_expires_at")
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_user_sessions_expires_at "
            "ON user_sessions (expires_at)"
        )
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_user_sessions_expires_bucket")
        op.execute(f"ALTER TABLE user_sessions RESET (fillfactor, {', '.join(AUTOVACUUM)})")
        op.execute("ALTER TABLE user_sessions DROP COLUMN IF EXISTS expires_bucket")
