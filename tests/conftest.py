"""Shared fixtures: a migrated PostgreSQL database and SQLite file per run, a Redis key
prefix per run, and apps built from settings on each store."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from pyramid.router import Router
from webtest import TestApp

import myapp
from myapp.sessions import get_chain
from tests.servers import ThrowawayPgBouncer
from tests.support.databases import migrate, migrated_database
from tests.support.rediskeys import REDIS_URL, unique_prefix

SECRET = "Pz3Kw8Nq1Xv6Rm4Tb9Lc2Yh7Jd5Fs0Ga3Ue8Wo"
# WebTest sends no client address; these tests browse as a client on this host, as an
# operator's own tools do (operator pages answer loopback clients).
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
BACKENDS = ("sql-postgres", "sql-pgbouncer", "sql-sqlite", "redis", "memory")

TEST_MARKS = sa.text("CREATE TABLE test_marks (id INTEGER PRIMARY KEY, note VARCHAR(64))")
TEST_MARKS_PG = sa.text("CREATE TABLE test_marks (id SERIAL PRIMARY KEY, note VARCHAR(64))")
# A unique constraint checked only at COMMIT: lets a test make the database commit fail
# after every other resource has voted.
TEST_DEFERRED_PG = sa.text(
    "CREATE TABLE test_deferred (n INTEGER, "
    "CONSTRAINT uq_test_deferred_n UNIQUE (n) DEFERRABLE INITIALLY DEFERRED)"
)


def _add_test_marks(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if url.startswith("postgresql"):
            conn.execute(TEST_MARKS_PG)
            conn.execute(TEST_DEFERRED_PG)
        else:
            conn.execute(TEST_MARKS)
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the shared PostgreSQL, migrated to head, dropped at the end."""
    with migrated_database() as url:
        _add_test_marks(url)
        yield url


@pytest.fixture(scope="session")
def make_pgbouncer() -> Callable[..., ThrowawayPgBouncer]:
    """A throwaway PgBouncer in front of the shared PostgreSQL (start it with ``with``).
    Missing PgBouncer skips, except in CI, where .ci/run installs it."""

    def make(**options: Any) -> ThrowawayPgBouncer:
        try:
            return ThrowawayPgBouncer(**options)
        except FileNotFoundError as exc:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"{exc} (.ci/run installs it)")

    return make


@pytest.fixture(scope="session")
def pgbouncer(make_pgbouncer: Callable[..., ThrowawayPgBouncer]) -> Iterator[ThrowawayPgBouncer]:
    """PgBouncer in transaction pooling mode, two server connections per database."""
    with make_pgbouncer(pool_mode="transaction", default_pool_size=2) as server:
        yield server


@pytest.fixture(scope="session")
def pgbouncer_url(postgres_url: str, pgbouncer: ThrowawayPgBouncer) -> str:
    """The test database, reached through PgBouncer in transaction pooling mode."""
    return pgbouncer.url_for(sa.make_url(postgres_url).database)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'myapp.sqlite'}"
    migrate(url)
    _add_test_marks(url)
    return url


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    """A key prefix no other run uses; its keys are deleted at the end."""
    with unique_prefix() as prefix:
        yield prefix


def base_settings(**overrides: Any) -> dict[str, Any]:
    settings = {
        "session.secret": SECRET,
        "session.redis_url": REDIS_URL,
        "session.check_timeout": "2",
        "session.store_timeout": "1",
        "pyramid.includes": "tests.support.views",
        # The test accounts' hashes are made with these parameters (tests.support.site).
        "myapp.password_hash_profile": "CHEAPEST",
    }
    settings.update({k: str(v) for k, v in overrides.items()})
    return settings


@dataclass
class AppHandle:
    """An app under test, with what the tests need to look behind it."""

    app: TestApp
    router: Router
    backend: str

    @property
    def registry(self):
        return self.router.registry

    @property
    def chain(self):
        return get_chain(self.registry)

    @property
    def store(self):
        return self.chain.active

    @property
    def engine(self) -> sa.Engine:
        return self.registry["dbengine"]


@pytest.fixture
def make_app(
    request: pytest.FixtureRequest, postgres_url: str, sqlite_url: str, redis_prefix: str
) -> Iterator[Callable[..., AppHandle]]:
    """Build an app for one of BACKENDS (the site unless ``main`` says otherwise); keyword
    arguments become settings."""
    built: list[AppHandle] = []

    def factory(
        backend: str = "sql-postgres", main: Callable[..., Router] = myapp.main, **overrides: Any
    ) -> AppHandle:
        through_pgbouncer = {}
        if backend == "sql-pgbouncer":  # started only for the tests that ask for it
            through_pgbouncer = {
                "sqlalchemy.url": request.getfixturevalue("pgbouncer_url"),
                "session.backends": "sql",
                "db.pgbouncer": "transaction",
            }
        settings = {
            "sql-pgbouncer": through_pgbouncer,
            "sql-postgres": {"sqlalchemy.url": postgres_url, "session.backends": "sql"},
            "sql-sqlite": {"sqlalchemy.url": sqlite_url, "session.backends": "sql"},
            "redis": {
                "sqlalchemy.url": postgres_url,
                "session.backends": "redis",
                "session.redis_prefix": redis_prefix,
            },
            "memory": {"sqlalchemy.url": postgres_url, "session.backends": "memory"},
        }.get(backend, {})
        settings = base_settings(**{**settings, **overrides})
        router = main({}, **settings)
        handle = AppHandle(TestApp(router, extra_environ=LOOPBACK), router, backend)
        built.append(handle)
        return handle

    yield factory
    for handle in built:
        handle.chain.close()
        handle.engine.dispose()


BACKEND_MARKS = {
    "sql-postgres": [pytest.mark.postgres],
    "sql-pgbouncer": [pytest.mark.postgres, pytest.mark.pgbouncer],
    "redis": [pytest.mark.redis],
}


@pytest.fixture(params=[pytest.param(name, marks=BACKEND_MARKS.get(name, [])) for name in BACKENDS])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def app(make_app: Callable[..., AppHandle], backend: str) -> AppHandle:
    return make_app(backend)


# Fixtures that need a server, and the marker that says so: ``-m "not redis"`` and the
# like deselect every test that would use one, however it reaches the fixture.
SERVER_MARKS = {
    "postgres_url": "postgres",
    "pgbouncer": "pgbouncer",
    "pgbouncer_url": "pgbouncer",
    "make_pgbouncer": "pgbouncer",
    "redis_prefix": "redis",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needed = {
            SERVER_MARKS[name] for name in getattr(item, "fixturenames", ()) if name in SERVER_MARKS
        }
        if "pgbouncer" in needed:
            needed.add("postgres")  # PgBouncer serves the shared PostgreSQL
        for marker in sorted(needed - {mark.name for mark in item.iter_markers()}):
            item.add_marker(getattr(pytest.mark, marker))
