"""Per-run databases on the shared PostgreSQL, and Alembic run from Python."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from myapp.sessions.database import get_engine

REPO = Path(__file__).resolve().parents[2]
ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def pg_url(name: str, host: str = "127.0.0.1", port: int = 5432) -> str:
    return f"postgresql+psycopg://postgres@{host}:{port}/{name}"


def create_database(prefix: str = "myapp_test", dsn: str = ADMIN_DSN) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str, dsn: str = ADMIN_DSN) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def alembic_config(url: str) -> Config:
    config = Config(str(REPO / "development.ini"))
    config.set_main_option("script_location", str(REPO / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


@contextlib.contextmanager
def migrated_database(prefix: str = "myapp_test") -> Iterator[str]:
    """A new database on the shared PostgreSQL at the Alembic head; dropped afterwards."""
    name = create_database(prefix)
    try:
        url = pg_url(name)
        migrate(url)
        yield url
    finally:
        drop_database(name)


@contextlib.contextmanager
def emptied_engine(url: str, **settings: str) -> Iterator[Engine]:
    """The app's engine on ``url`` (``sqlalchemy.*`` ``settings`` too), with
    ``user_sessions`` emptied first; disposed afterwards."""
    engine = get_engine(
        {"sqlalchemy.url": url, **{f"sqlalchemy.{k}": v for k, v in settings.items()}}
    )
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM user_sessions"))
        yield engine
    finally:
        engine.dispose()


def advisory_locks(url: str) -> int:
    """Advisory locks held in the database at ``url`` right now (any session)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
                    " (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar_one()
    finally:
        engine.dispose()
