"""The start-up check of ``user_sessions``: a real table, its columns, the migration. Reads only."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...database.table import REQUIRED_COLUMNS, USER_SESSIONS_REVISION


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
