"""The ``user_sessions`` table: one row per web session, keyed by the hash of its token."""

from sqlalchemy import JSON, Column, DateTime, Index, Integer, String, Table
from sqlalchemy.dialects.postgresql import JSONB

from .meta import metadata

# The Alembic revision that gives user_sessions the shape this code needs.
USER_SESSIONS_REVISION = "0001_user_sessions"

user_sessions = Table(
    "user_sessions",
    metadata,
    Column("id", String(64), primary_key=True, comment="SHA-256 hex of the cookie token"),
    Column("data", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_active_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("user_id", String(64), nullable=True),
    Column("user_agent", String(256), nullable=True),
    Column("version", Integer, nullable=False, server_default="1"),
    Index("ix_user_sessions_expires_at", "expires_at"),
    Index("ix_user_sessions_user_id", "user_id"),
)

#: Columns the session store reads and writes; start-up checks they all exist.
REQUIRED_COLUMNS = frozenset(column.name for column in user_sessions.columns)
