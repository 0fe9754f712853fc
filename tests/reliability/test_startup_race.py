"""The incident, beaten: many migrators and many app processes start at the same moment."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from myapp.sessions.stores.sqlstore.table import MIGRATIONS_LOCATION as SESSION_MIGRATIONS
from tests.conftest import REDIS_URL
from tests.support.databases import ADMIN_DSN, REPO, create_database, drop_database, pg_url
from tests.support.rediskeys import unique_prefix

from .apps import AppProcess, Client, app_settings, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PROCESSES = 8


@pytest.fixture
def empty_db() -> Iterator[str]:
    name = create_database("myapp_race")
    yield name
    drop_database(name)


@pytest.fixture
def prefix() -> Iterator[str]:
    with unique_prefix("myapp-race") as prefix:
        yield prefix


def _alembic_ini(tmp_path: Path, url: str) -> Path:
    ini = tmp_path / "alembic.ini"
    ini.write_text(
        f"[app:main]\nuse = egg:myapp\nsqlalchemy.url = {url}\n\n"
        f"[alembic]\nscript_location = {REPO / 'migrations'}\n"
        f"version_locations = {REPO / 'migrations' / 'versions'} {SESSION_MIGRATIONS}\n"
        "path_separator = space\n"
        "sqlalchemy.url = " + url.replace("%", "%%") + "\n"
    )
    return ini


def _upgrade_at(ini: Path, when: float) -> subprocess.Popen[bytes]:
    # Every process imports first, then sleeps until the same instant: a real stampede.
    code = (
        "import sys, time\nfrom alembic.config import main\n"
        f"time.sleep(max(0, {when} - time.time()))\n"
        f"main(argv=['-c', {str(ini)!r}, 'upgrade', 'head'])\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _tables(name: str) -> set[str]:
    dsn = ADMIN_DSN.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows}


def _head(name: str) -> set[str]:
    dsn = ADMIN_DSN.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}


def _script_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    directory = ScriptDirectory(
        str(REPO / "migrations"),
        version_locations=[str(REPO / "migrations" / "versions"), SESSION_MIGRATIONS],
    )
    return set(directory.get_heads())


def test_eight_concurrent_alembic_upgrades_all_succeed(empty_db: str, tmp_path: Path) -> None:
    ini = _alembic_ini(tmp_path, pg_url(empty_db))
    start = time.time() + 3.0
    procs = [_upgrade_at(ini, start) for _ in range(PROCESSES)]
    outputs = [proc.communicate(timeout=120)[0].decode(errors="replace") for proc in procs]

    failures = [out for proc, out in zip(procs, outputs, strict=True) if proc.returncode != 0]
    assert not failures, failures[0]
    assert _head(empty_db) == _script_heads()
    assert "user_sessions" in _tables(empty_db)


def test_eight_apps_on_an_unmigrated_database_fall_back_then_return(
    empty_db: str, prefix: str, tmp_path: Path
) -> None:
    settings = app_settings(
        **{
            "sqlalchemy.url": pg_url(empty_db),
            "session.backends": "sql redis",
            "session.redis_url": REDIS_URL,
            "session.redis_prefix": prefix,
        }
    )
    apps = [AppProcess(settings, tmp_path, threads=2) for _ in range(PROCESSES)]
    try:
        for app in apps:
            app.start()  # all at once: they race exactly like the incident's workers
        for app in apps:
            app.wait_ready()
        for app in apps:
            health = app.health()
            assert health["status"] == "degraded"
            assert health["session_backend"] == "redis"
            log = app.log()
            assert "table user_sessions is missing" in log
            assert "alembic" in log and "upgrade head" in log  # the fix is named
            assert "FALLBACK" in log
            assert "Traceback" not in log
        assert _tables(empty_db) == set(), "an app created a table at start-up"

        # A shopper arrives while the site is degraded.
        shopper = Client(apps[0].url)
        assert shopper.request("/_r/cart_add?item=during-outage").status == 200

        ini = _alembic_ini(tmp_path, pg_url(empty_db))
        subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=120,
        )
        for app in apps:
            wait_for(
                lambda app=app: app.health()["session_backend"] == "sql",
                timeout=20,
                what=f"app on port {app.port} to return to sql",
            )
            assert app.health()["status"] == "ok"
            assert "is ready again" in app.log()

        # The session made on Redis survives the switch, through another process.
        elsewhere = Client(apps[5].url)
        shopper.copy_cookies_to(elsewhere)
        response = elsewhere.request("/_r/cart_add?item=after-recovery")
        assert response.status == 200
        assert elsewhere.request("/_r/cart").json()["cart"] == ["during-outage", "after-recovery"]
        dsn = ADMIN_DSN.replace("dbname=postgres", f"dbname={empty_db}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM user_sessions").fetchone()[0] == 1
    finally:
        for app in apps:
            app.stop()
