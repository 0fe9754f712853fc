"""The ``user_sessions`` table: one row per web session, keyed by the hash of its token;
and the start-up check that the database has it as this code needs it (reads only).

It belongs to a ``MetaData`` of its own, so any app can include the package without
sharing its tables; the schema is created by the Alembic migration that ships in
``myapp/sessions/migrations`` (never at start-up).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.engine import Connection

# The Alembic revision that gives user_sessions the shape this code needs.
USER_SESSIONS_REVISION = "0004_user_sessions_layout"
#: Where that migration lives, for an app's ``version_locations`` in its Alembic config.
MIGRATIONS_LOCATION = "myapp.sessions:migrations"

# Stable constraint names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Width of an expiry bucket (``store.expiry_bucket``). ``expires_at`` changes on every
#: write, so it is not indexed: an indexed column that changes rules out a heap-only
#: (HOT) update. The purge indexes ``expires_bucket`` instead, which changes only when a
#: session's expiry crosses the end of an hour. Changing this is safe at any time: every
#: bucket only has to be later than its row's ``expires_at``.
EXPIRY_BUCKET_SECONDS = 3600

#: Percentage of each heap page filled by inserts; the rest is room for the next
#: version of its rows, which a heap-only update needs (set by the migration).
FILLFACTOR = 80


#: The sessions' own metadata (Alembic's ``target_metadata`` lists it beside the app's).
metadata = MetaData(naming_convention=NAMING_CONVENTION)

# In physical order (0004_user_sessions_layout): every save changes last_active_at,
# expires_at, version, mac and data, and a heap-only update logs only the bytes from the
# first to the last that differ, so the columns a save leaves alone come after them.
user_sessions = Table(
    "user_sessions",
    metadata,
    Column("id", String(64), primary_key=True, comment="SHA-256 hex of the cookie token"),
    Column("last_active_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    # HMAC of the row's fields under the session secrets (stores.authenticator); NULL in
    # rows written before the column existed, which are never served.
    Column("mac", String(64), nullable=True),
    # json, not jsonb: the text as written (checked to be JSON), 142 B for a small
    # session where jsonb takes 242 B; nothing queries inside it.
    Column("data", JSON, nullable=False),
    Column(
        "expires_bucket",
        BigInteger,
        nullable=True,
        comment="end of the hour expires_at falls in (Unix seconds); what the purge indexes",
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("user_id", String(64), nullable=True),
    Column("user_agent", String(256), nullable=True),
    Index("ix_user_sessions_expires_bucket", "expires_bucket"),
    Index("ix_user_sessions_user_id", "user_id"),
)

#: Columns the session store reads and writes; start-up checks they all exist.
REQUIRED_COLUMNS = frozenset(column.name for column in user_sessions.columns)


# -- the start-up check ----------------------------------------------------------


def schema_problem(conn: Connection, is_postgres: bool) -> str | None:
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
    if USER_SESSIONS_REVISION not in revisions and older_than_required(revisions):
        return (
            f"the database is at revision {', '.join(sorted(revisions))}, "
            f"older than {USER_SESSIONS_REVISION}"
        )
    return None


def older_than_required(revisions: set[str]) -> bool:
    # Our revision ids start with a sequence number ("0001_..."); a database at a
    # later revision (a newer release migrated first) carries the columns we need.
    required = USER_SESSIONS_REVISION.split("_", 1)[0]
    return all(rev.split("_", 1)[0] < required for rev in revisions)


def data_kept_verbatim(conn: Connection, is_postgres: bool) -> bool:
    """Whether ``user_sessions.data`` gives back the very text it was given: ``json``
    (since 0004_user_sessions_layout) and SQLite's text do, ``jsonb`` does not."""
    if not is_postgres:
        return True
    kind = conn.execute(
        sa.text(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'user_sessions'::regclass AND attname = 'data' "
            "AND NOT attisdropped"
        )
    ).scalar()
    return kind == "json"
