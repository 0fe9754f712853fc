"""Alembic environment: reads sqlalchemy.url from the same ini as the app.

On PostgreSQL every run first takes an advisory lock, so any number of processes
(one per container at deploy time) can run ``alembic upgrade head`` at once: the
first migrates, the others wait and then find nothing left to do. Without it they
race on CREATE TABLE and fail with ``pg_type_typname_nsp_index`` violations.
"""

from __future__ import annotations

from alembic import context
from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy import text

from myapp.models import get_engine, metadata

# Any constant works; it only has to be the same for every migrating process.
MIGRATION_LOCK_ID = 0x6D79617070  # "myapp"

config = context.config
if config.config_file_name:
    setup_logging(config.config_file_name)
    settings = get_appsettings(config.config_file_name)
else:  # pragma: no cover - alembic always passes -c
    settings = {}
url = config.get_main_option("sqlalchemy.url") or settings.get("sqlalchemy.url")


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = get_engine({**settings, "sqlalchemy.url": url})
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=metadata)
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
    run_migrations_online()
