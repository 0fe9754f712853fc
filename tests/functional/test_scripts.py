"""The console scripts, run as an operator runs them: an ini file, a subprocess, exit status."""

from __future__ import annotations

import os
import pty
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from myapp.accounts import find_user
from myapp.sessions.operations.purge import PURGE_LOCK_ID
from myapp.sessions.stores.redisstore import RedisStore, make_client
from myapp.sessions.stores.sqlstore import SqlStore
from tests.conftest import REDIS_URL
from tests.support.databases import (
    REPO,
    create_database,
    drop_database,
    emptied_engine,
    migrated_database,
    pg_url,
)
from tests.support.ops import BIN, add_session, run, write_ini
from tests.support.records import authenticator
from tests.support.site import CHEAP_HASHER, new_user, sign_in, signed_in_as

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def ops_url() -> Iterator[str]:
    """A database of its own: these tests count every session in it."""
    with migrated_database("myapp_ops") as url:
        yield url


@pytest.fixture
def engine(ops_url: str) -> Iterator[sa.Engine]:
    with emptied_engine(ops_url) as engine:
        yield engine


@pytest.fixture
def sql_store(engine: sa.Engine) -> Iterator[SqlStore]:
    store = SqlStore(engine, authenticator=authenticator("sql"))
    yield store
    store.close()  # its own autocommit pool too


@pytest.fixture
def redis_store(redis_prefix: str) -> Iterator[RedisStore]:
    prefix = f"{redis_prefix}ops:"
    store = RedisStore(
        make_client(REDIS_URL, 1.0),
        prefix=prefix,
        max_lifetime=86_400,
        authenticator=authenticator("redis"),
    )
    yield store
    for key in store.client.scan_iter(match=prefix + "*"):
        store.client.delete(key)
    store.close()


@pytest.fixture
def ini(tmp_path: Path, ops_url: str, redis_store: RedisStore) -> Path:
    return write_ini(tmp_path, ops_url, redis_prefix=redis_store.prefix)


class TestCheck:
    def test_ready_when_the_first_store_is(self, ini):
        result = run("myapp-sessions", "check", ini)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[2].split() == ["store", "ready", "check", "why", "/", "fix"]
        assert lines[3].split()[:2] == ["sql", "yes"]
        assert lines[4].split()[:2] == ["redis", "yes"]
        assert lines[5].startswith("memory  yes")
        assert "READY: sessions would be served by 'sql'." in result.stdout

    def test_database_down_fails_with_a_readable_reason(
        self, tmp_path, closed_port_url, redis_store
    ):
        ini = write_ini(tmp_path, closed_port_url, redis_prefix=redis_store.prefix)
        started = time.monotonic()
        result = run("myapp-sessions", "check", ini)
        assert time.monotonic() - started < 20
        assert result.returncode == 1
        sql_line = next(line for line in result.stdout.splitlines() if line.startswith("sql"))
        assert sql_line.split()[:2] == ["sql", "NO"]
        assert "cannot connect to the database" in sql_line
        assert "refused" in sql_line.lower()
        assert "fix: check sqlalchemy.url and that the database server is running" in sql_line
        assert "NOT READY: the first store, 'sql', is not ready" in result.stdout
        assert "start degraded on 'redis'" in result.stdout

    def test_no_store_ready(self, tmp_path, closed_port_url, redis_store):
        ini = write_ini(tmp_path, closed_port_url, redis_prefix="x:", backends="sql")
        result = run("myapp-sessions", "check", ini)
        assert result.returncode == 1
        assert "NOT READY: no store is ready; the app would refuse to start." in result.stdout

    def test_unmigrated_database_names_the_migration(self, tmp_path, redis_store):
        name = create_database("myapp_ops_empty")
        try:
            ini = write_ini(tmp_path, pg_url(name), redis_prefix=redis_store.prefix)
            result = run("myapp-sessions", "check", ini)
        finally:
            drop_database(name)
        assert result.returncode == 1
        assert "table user_sessions is missing" in result.stdout
        assert f"alembic -c {ini} upgrade head" in result.stdout

    def test_bad_configuration_exits_2(self, tmp_path, ops_url):
        ini = write_ini(tmp_path, ops_url, redis_prefix="x:", secret="short")
        result = run("myapp-sessions", "check", ini)
        assert result.returncode == 2
        assert "configuration error" in result.stderr
        assert "at least 32 characters" in result.stderr


class TestPurge:
    def test_deletes_expired_sessions_in_batches_and_keeps_live_ones(
        self, ini, sql_store, redis_store
    ):
        live = [add_session(sql_store) for _ in range(3)]
        for _ in range(25):
            add_session(sql_store, expired=True)
        result = run("myapp-sessions", "purge", "--batch-size", "10", ini)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "sql: 25 expired sessions to delete" in result.stdout
        assert "sql: deleted 25 expired sessions in 3 batches of up to 10" in result.stdout
        assert "memory: skipped" in result.stdout
        assert sql_store.count(time.time()) == (3, 0)
        assert all(sql_store.load(key, time.time()) for key in live)

    def test_batch_size_defaults_to_the_setting(self, tmp_path, ops_url, sql_store, redis_store):
        ini = write_ini(
            tmp_path, ops_url, redis_prefix=redis_store.prefix, **{"session.purge_batch_size": 4}
        )
        for _ in range(9):
            add_session(sql_store, expired=True)
        result = run("myapp-sessions", "purge", ini)
        assert result.returncode == 0
        assert "sql: deleted 9 expired sessions in 3 batches of up to 4" in result.stdout

    def test_a_second_purge_exits_3_while_the_lock_is_held(self, ini, engine, sql_store):
        add_session(sql_store, expired=True)
        with engine.connect() as holder:
            holder.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": PURGE_LOCK_ID})
            result = run("myapp-sessions", "purge", ini)
            holder.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": PURGE_LOCK_ID})
        assert result.returncode == 3
        assert "another purge is running" in result.stdout
        assert sql_store.count(time.time()) == (0, 1)  # it did nothing
        assert run("myapp-sessions", "purge", ini).returncode == 0
        assert sql_store.count(time.time()) == (0, 0)

    def test_draws_a_progress_bar_on_a_terminal(self, ini, sql_store):
        for _ in range(6):
            add_session(sql_store, expired=True)
        controller, terminal = pty.openpty()
        try:
            process = subprocess.Popen(
                [str(BIN / "myapp-sessions"), "purge", "--batch-size", "2", str(ini)],
                stdout=terminal,
                stderr=subprocess.DEVNULL,
            )
            os.close(terminal)
            output = b""
            while True:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the terminal closed: the script is done
                    break
                if not chunk:
                    break
                output += chunk
            assert process.wait(60) == 0
        finally:
            os.close(controller)
        text = output.decode()
        assert "\rsql: [##########--------------------]  33% 2/6" in text
        assert "\rsql: [##############################] 100% 6/6" in text

    def test_prints_plain_counts_without_a_terminal(self, ini, sql_store):
        for _ in range(4):
            add_session(sql_store, expired=True)
        result = run("myapp-sessions", "purge", "--batch-size", "2", ini)
        assert "\r" not in result.stdout
        assert "sql: deleted 2 of 4" in result.stdout


class TestStatsAndEndUser:
    def test_stats_counts_per_store_and_top_users(self, ini, engine, sql_store, redis_store):
        heavy, _ = new_user(engine, "heavy")
        light, _ = new_user(engine, "light")
        with engine.connect() as conn:
            heavy_id = str(find_user(conn, heavy)[0].id)
            light_id = str(find_user(conn, light)[0].id)
        for _ in range(3):
            add_session(sql_store, user_id=heavy_id)
        add_session(sql_store, user_id=light_id)
        add_session(sql_store)
        add_session(sql_store, expired=True)
        add_session(redis_store, user_id=light_id)
        result = run("myapp-sessions", "stats", "--top", "5", ini)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[1].split() == ["sql", "5", "1"]
        assert lines[2].split()[:3] == ["redis", "1", "0"]
        sql_top = result.stdout.split("(sql):\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert [line.split() for line in sql_top] == [
            ["3", heavy, "(id", f"{heavy_id})"],
            ["1", light, "(id", f"{light_id})"],
        ]
        redis_top = result.stdout.split("(redis):\n", 1)[1].splitlines()
        assert [line.split() for line in redis_top] == [["1", light, "(id", f"{light_id})"]]
        health = result.stdout.split("user_sessions table", 1)[1].split("\n\n", 1)[0]
        assert "heap-only updates" in health and "dead" in health and "indexes" in health
        assert "verdict" in health

    def test_stats_on_redis_counts_sessions_not_cache_or_throttle_keys(
        self, tmp_path, ops_url, redis_store
    ):
        first = add_session(redis_store, user_id="stats-user")
        add_session(redis_store)
        client, prefix = redis_store.client, redis_store.prefix
        # Keys that share the prefix and are not sessions: a read-cache entry and its
        # tombstone, sign-in throttle counters, the user index add_session made.
        client.set(f"{prefix}cache:{first}", "entry", ex=60)
        client.set(f"{prefix}cache:{'b' * 64}", "T", ex=60)
        client.set(f"{prefix}throttle:{{account:{'c' * 64}}}:n", 3, ex=60)
        client.set(f"{prefix}throttle:{{address:{'d' * 64}}}:b", 1, ex=60)
        ini = write_ini(tmp_path, ops_url, redis_prefix=prefix, backends="redis memory")
        result = run("myapp-sessions", "stats", ini)
        assert result.returncode == 0, result.stdout + result.stderr
        redis_line = next(line for line in result.stdout.splitlines() if line.startswith("redis"))
        assert redis_line.split()[:3] == ["redis", "2", "0"]

    def test_end_user_ends_their_sessions_on_every_shared_store(
        self, ini, engine, sql_store, redis_store
    ):
        name, _ = new_user(engine, "ended")
        with engine.connect() as conn:
            user_id = str(find_user(conn, name)[0].id)
        mine = [add_session(sql_store, user_id=user_id) for _ in range(2)]
        mine.append(add_session(redis_store, user_id=user_id))
        other = add_session(sql_store, user_id="someone-else")
        result = run("myapp-sessions", "end-user", ini, name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"sql: ended 2 sessions of '{name}'" in result.stdout
        assert f"redis: ended 1 session of '{name}'" in result.stdout
        now = time.time()
        assert not any(sql_store.load(key, now) or redis_store.load(key, now) for key in mine)
        assert sql_store.load(other, now) is not None

    def test_end_user_of_an_unknown_name_fails(self, ini):
        result = run("myapp-sessions", "end-user", ini, "nobody-here")
        assert result.returncode == 1
        assert "no user named 'nobody-here'" in result.stdout


class TestSignUnsigned:
    def test_rows_an_older_release_stored_are_signed_once_and_served_again(
        self, ini, engine, sql_store
    ):
        older = [add_session(sql_store) for _ in range(3)]
        expired = add_session(sql_store, expired=True)
        forged = add_session(sql_store)
        kept = add_session(sql_store)
        with engine.begin() as conn:  # as the release before the mac column left them
            conn.execute(
                sa.text("UPDATE user_sessions SET mac = NULL WHERE id = ANY(:ids)"),
                {"ids": [*older, expired]},
            )
            conn.execute(
                sa.text("UPDATE user_sessions SET mac = :mac WHERE id = :id"),
                {"mac": "0" * 64, "id": forged},
            )
        now = time.time()
        assert [sql_store.load(key, now) for key in older] == [None] * 3

        result = run("myapp-sessions", "sign-unsigned", "--batch-size", "2", ini)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "sql: signed 3 sessions stored without one" in result.stdout
        assert "redis: nothing to sign" in result.stdout
        now = time.time()
        assert all(sql_store.load(key, now) is not None for key in [*older, kept])
        assert sql_store.load(forged, now) is None  # a wrong authenticator stays wrong
        with engine.connect() as conn:
            mac = conn.execute(
                sa.text("SELECT mac FROM user_sessions WHERE id = :id"), {"id": expired}
            ).scalar()
        assert mac is None  # expired: left for the purge

        again = run("myapp-sessions", "sign-unsigned", ini)
        assert "sql: signed 0 sessions stored without one" in again.stdout


class TestCreateUser:
    def test_creates_a_user_whose_password_verifies(self, ini, engine):
        result = run(
            "myapp-create-user",
            "--ini",
            ini,
            "--password-stdin",
            "Carol",
            input="carol-secret-pw\n",
        )
        assert result.returncode == 0, result.stderr
        assert "created user 'carol'" in result.stdout
        with engine.connect() as conn:
            _, password_hash = find_user(conn, "carol")
        assert password_hash.startswith("$argon2id$")
        assert PasswordHasher().verify(password_hash, "carol-secret-pw")
        assert "carol-secret-pw" not in result.stdout + result.stderr

    def test_an_existing_user_fails_unless_if_missing(self, ini, engine):
        with engine.begin() as conn:
            if find_user(conn, "dave") is None:
                from myapp.accounts import create_user

                create_user(conn, "dave", "dave-password", hasher=CHEAP_HASHER)
        again = run("myapp-create-user", "--ini", ini, "--password-stdin", "dave", input="other\n")
        assert again.returncode == 1
        assert "already exists" in again.stderr
        idempotent = run(
            "myapp-create-user", "--ini", ini, "--if-missing", "--password-stdin", "dave", input=""
        )
        assert idempotent.returncode == 0
        assert "nothing to do" in idempotent.stdout

    def test_a_password_on_the_command_line_is_refused(self, ini, engine):
        result = run("myapp-create-user", "--ini", ini, "frank", "frank-secret-pw")
        assert result.returncode == 2
        assert "never taken on the command line" in result.stderr
        with engine.connect() as conn:
            assert find_user(conn, "frank") is None

    def test_without_a_terminal_or_stdin_flag_it_says_how(self, ini, engine):
        result = run("myapp-create-user", "--ini", ini, "grace", input="grace-pw\n")
        assert result.returncode == 1
        assert "--password-stdin" in result.stderr
        with engine.connect() as conn:
            assert find_user(conn, "grace") is None

    def test_an_empty_standard_input_creates_nobody(self, ini, engine):
        result = run("myapp-create-user", "--ini", ini, "--password-stdin", "heidi", input="")
        assert result.returncode == 1
        assert "standard input is empty" in result.stderr
        with engine.connect() as conn:
            assert find_user(conn, "heidi") is None

    def test_database_down_is_a_readable_error(self, tmp_path, closed_port_url):
        ini = write_ini(tmp_path, closed_port_url, redis_prefix="x:")
        result = run("myapp-create-user", "--ini", ini, "--password-stdin", "erin", input="pw\n")
        assert result.returncode == 1
        assert "cannot write to the database" in result.stderr
        assert "Traceback" not in result.stderr


def test_make_run_set_up_gives_a_working_demo_account(tmp_path, make_app):
    """What `make run` does on a fresh SQLite file, then signing in as demo / demo-password."""
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    ini = write_ini(tmp_path, url, redis_prefix="unused:", backends="sql")
    migrated = run("alembic", "-c", ini, "upgrade", "head")
    assert migrated.returncode == 0, migrated.stderr
    makefile = (REPO / "Makefile").read_text()
    assert (
        "printf '%s\\n' demo-password | $(BIN)/myapp-create-user --ini $(INI) --if-missing "
        "--password-stdin demo" in makefile
    )
    for _ in range(2):  # the second run is a no-op thanks to --if-missing
        created = run(
            "myapp-create-user",
            *("--ini", ini, "--if-missing", "--password-stdin", "demo"),
            input="demo-password\n",
        )
        assert created.returncode == 0, created.stderr
    handle = make_app("sql-sqlite", **{"sqlalchemy.url": url})
    assert signed_in_as(sign_in(handle.app, "demo", "demo-password")) == "demo"
    assert "`demo` / `demo-password`" in (REPO / "docs" / "operations.md").read_text()
