"""The fallback chain at start-up, against real dead endpoints and a real missing table."""

from __future__ import annotations

import logging

import psycopg
import pytest
import sqlalchemy as sa
from webtest import TestApp

import myapp
from myapp.sessions import get_chain
from myapp.sessions.chain import NoStoreReady
from tests.conftest import LOOPBACK, base_settings
from tests.servers import free_port
from tests.support.databases import create_database, drop_database, pg_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def dead_pg_url() -> str:
    return pg_url("nowhere", port=free_port())


def dead_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def unmigrated_url():
    name = create_database("myapp_empty")
    yield pg_url(name)
    drop_database(name)


@pytest.fixture
def build():
    """Build apps from settings; their pools are closed at the end of the test."""
    routers = []

    def factory(**settings):
        router = myapp.main({}, **base_settings(**settings))
        routers.append(router)
        return router, TestApp(router, extra_environ=LOOPBACK)

    yield factory
    for router in routers:
        get_chain(router.registry).close()
        router.registry["dbengine"].dispose()


def test_primary_unreachable_falls_back_to_redis(redis_prefix, caplog, build):
    caplog.set_level(logging.INFO, logger="myapp")
    _, app = build(
        **{
            "sqlalchemy.url": dead_pg_url(),
            "session.backends": "sql redis memory",
            "session.redis_prefix": redis_prefix,
        }
    )
    health = app.get("/healthz").json
    assert health["status"] == "degraded"
    assert health["session_backend"] == "redis"
    warning = next(
        r for r in caplog.records if r.levelno == logging.WARNING and "'sql'" in r.message
    )
    assert "cannot connect to the database" in warning.message
    assert "sqlalchemy.url" in warning.message
    # Sessions work on the fallback store.
    app.get("/_t/write?value=kept")
    assert app.get("/_t/read").json["value"] == "kept"


def test_primary_and_redis_unreachable_fall_back_to_memory(caplog, build):
    caplog.set_level(logging.WARNING, logger="myapp")
    _, app = build(
        **{
            "sqlalchemy.url": dead_pg_url(),
            "session.backends": "sql redis memory",
            "session.redis_url": dead_redis_url(),
        }
    )
    health = app.get("/healthz").json
    assert (health["status"], health["session_backend"]) == ("degraded", "memory")
    assert health["session_backend_shared"] is False
    messages = " ".join(r.message for r in caplog.records)
    assert "'redis' is not ready: PING failed" in messages
    assert "session.redis_url" in messages
    assert "FALLBACK" in messages


def test_missing_table_names_the_migration_command(unmigrated_url, redis_prefix, caplog, build):
    caplog.set_level(logging.WARNING, logger="myapp")
    _, app = build(
        **{
            "sqlalchemy.url": unmigrated_url,
            "session.backends": "sql redis",
            "session.redis_prefix": redis_prefix,
            "myapp.config_file": "production.ini",
        }
    )
    assert app.get("/healthz").json["session_backend"] == "redis"
    warning = next(r.message for r in caplog.records if "'sql' is not ready" in r.message)
    assert "table user_sessions is missing" in warning
    assert "run `alembic -c production.ini upgrade head`" in warning


def test_start_up_never_creates_the_table(unmigrated_url, redis_prefix, build):
    build(
        **{
            "sqlalchemy.url": unmigrated_url,
            "session.backends": "sql redis",
            "session.redis_prefix": redis_prefix,
        }
    )
    engine = sa.create_engine(unmigrated_url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []
    engine.dispose()


def test_a_leftover_non_table_object_is_not_mistaken_for_the_table(unmigrated_url, build):
    dsn = unmigrated_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE user_sessions")
    _, app = build(**{"sqlalchemy.url": unmigrated_url, "session.backends": "sql memory"})
    stores = app.get("/healthz").json["stores"]
    assert stores[0]["ready"] is False
    assert "not a table" in stores[0]["cause"]


def test_nothing_ready_stops_start_up_naming_the_settings(build):
    with pytest.raises(NoStoreReady) as info:
        build(
            **{
                "sqlalchemy.url": dead_pg_url(),
                "session.backends": "sql redis",
                "session.redis_url": dead_redis_url(),
            }
        )
    message = str(info.value)
    for setting in (
        "session.backends",
        "sqlalchemy.url",
        "session.redis_url",
        "alembic upgrade head",
    ):
        assert setting in message


def test_first_store_ready_reports_ok(make_app):
    handle = make_app("sql-postgres", **{"session.backends": "sql redis memory"})
    health = handle.app.get("/healthz").json
    assert (health["status"], health["session_backend"]) == ("ok", "sql")
    assert [s["name"] for s in health["stores"]] == ["sql", "redis", "memory"]
    assert health["stores"][0]["ready"] is True
    assert handle.app.get("/healthz").status_int == 200


def test_degraded_health_is_still_http_200(build):
    _, app = build(**{"sqlalchemy.url": dead_pg_url(), "session.backends": "sql memory"})
    response = app.get("/healthz")
    assert response.status_int == 200
    assert response.json["status"] == "degraded"
