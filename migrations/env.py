"""Alembic environment: reads sqlalchemy.url from the same ini as the app.

On PostgreSQL every run first takes an advisory lock, so any number of processes
(one per container at deploy time) can run ``alembic upgrade head`` at once: the
first migrates, the others wait and then find nothing left to do. Without it they
race on CREATE TABLE and fail with ``pg_type_typname_nsp_index`` violations.

The lock is a session lock, so migrations must reach PostgreSQL itself (or a
session-pooling PgBouncer): behind transaction pooling the lock and the DDL may run
on different server connections, and the unlock on a third. With ``db.pgbouncer =
transaction`` in the ini, give the server's own URL: ``alembic -c INI -x
db_url=postgresql+psycopg://... upgrade head``. A run that finds itself behind
transaction pooling anyway stops before any DDL.
"""

from __future__ import annotations

import sys
import time

from alembic import context
from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from myapp.models import metadata as site_metadata
from myapp.sessions.database import get_engine, pgbouncer_mode
from myapp.sessions.stores.sqlstore.table import metadata as sessions_metadata

# The app's tables and the session package's own.
target_metadata = [site_metadata, sessions_metadata]

# Any constant works; it only has to be the same for every migrating process.
MIGRATION_LOCK_ID = 0x6D79617070  # "myapp"
# Seconds between tries while another process migrates.
MIGRATION_LOCK_POLL = 0.2

config = context.config
if config.config_file_name:
    setup_logging(config.config_file_name)
    settings = get_appsettings(config.config_file_name)
else:  # pragma: no cover - alembic always passes -c
    settings = {}
direct_url = context.get_x_argument(as_dictionary=True).get("db_url")
url = direct_url or config.get_main_option("sqlalchemy.url") or settings.get("sqlalchemy.url")


class BehindTransactionPooling(SystemExit):
    """Migrations were pointed at a transaction-pooling PgBouncer."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"alembic: refusing to migrate: {why}. Migrations take a session-level lock "
            "and must run against PostgreSQL directly (or a session-pooling PgBouncer): "
            "run `alembic -c <ini> -x db_url=postgresql+psycopg://USER@DB-HOST:5432/DB "
            "upgrade head`."
        )


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _backend_pid(connection: Connection) -> int:
    pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    connection.commit()
    return int(pid)


def _refuse_shared_server_connections(engine: Engine, connection: Connection) -> None:
    """Stop before any lock if two client connections share one server connection.

    Directly, or behind session pooling, two open client connections are always two
    server backends. Behind transaction pooling the server connection that served
    one goes back to the pool between transactions, and a quiet pool hands the idle
    one to the next client.
    """
    mine = _backend_pid(connection)
    with engine.connect() as other:
        if _backend_pid(other) == mine:
            raise BehindTransactionPooling(
                "two client connections were served by one server connection"
            )


def _lock(connection: Connection) -> int:
    """Take the migration lock (waiting for other migrators); the holder's pid.

    It is tried, not waited for in one statement: a statement waiting on a lock holds
    a snapshot, and the holder's ``CREATE INDEX CONCURRENTLY`` waits for every older
    snapshot to end, which would leave both waiting on each other.
    """
    while True:
        pid, taken = connection.execute(
            text("SELECT pg_backend_pid(), pg_try_advisory_lock(:id)"),
            {"id": MIGRATION_LOCK_ID},
        ).one()
        connection.commit()
        if taken:
            return int(pid)
        time.sleep(MIGRATION_LOCK_POLL)


def _refuse_unheld_lock(connection: Connection, holder: int) -> None:
    """Stop unless the server connection that will run the DDL holds the lock.

    On a refusal the lock sits on a pooled server connection no client controls: that
    backend is ended, which releases it (PgBouncer opens another).
    """
    held = connection.execute(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND pid = pg_backend_pid() AND objid = :low"
        ),
        {"low": MIGRATION_LOCK_ID & 0xFFFFFFFF},
    ).scalar_one()
    connection.rollback()
    if not held:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
        connection.commit()
        raise BehindTransactionPooling(
            "the migration lock is not held by the server connection that would run the DDL"
        )


def run_migrations_online() -> None:
    if pgbouncer_mode(settings) == "transaction" and not direct_url:
        raise BehindTransactionPooling(
            "the ini says db.pgbouncer = transaction and no -x db_url was given"
        )
    engine = get_engine({**settings, "sqlalchemy.url": url, "db.pgbouncer": "none"})
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            _refuse_shared_server_connections(engine, connection)
            holder = _lock(connection)
        try:
            if is_postgres:
                _refuse_unheld_lock(connection, holder)
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if is_postgres:
                connection.rollback()
                connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
                connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    try:
        run_migrations_online()
    except BehindTransactionPooling as exc:
        print(exc.code, file=sys.stderr)
        raise SystemExit(2) from None
