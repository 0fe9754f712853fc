"""Outages as a shopper lives them: nobody signed out by a failover, honest health, fast
refusals, a quick return to the primary, and a stop that answers what is in flight.

Real waitress processes (4 threads) on throwaway PostgreSQL and Redis servers, with
signed-in shoppers going through the site's own forms (``bench/soak_client.py``).
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from bench.soak_client import Crowd, Tally
from myapp.accounts import create_user
from tests.conftest import SECRET
from tests.servers import ThrowawayPostgres, ThrowawayRedis, free_port
from tests.support.databases import migrate
from tests.support.site import CHEAP_HASHER

from .apps import AppProcess, Client, app_settings, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

STORE_TIMEOUT = 1.0
#: The issue's bound for a request that arrives while PostgreSQL is frozen.
REFUSAL_BOUND = STORE_TIMEOUT + 0.5
#: From "PostgreSQL accepts connections" to "/healthz says ok".
RETURN_BOUND = 5.0
SHOPPERS = 8


@pytest.fixture
def pg() -> Iterator[tuple[ThrowawayPostgres, str]]:
    with ThrowawayPostgres() as server:
        url = server.create_database("app")
        migrate(url)
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            # A crash must not lose commits the site confirmed (see bench/load_soak.py).
            conn.execute("ALTER DATABASE app SET synchronous_commit = on")
        yield server, url


def _accounts(server: ThrowawayPostgres, count: int) -> list[tuple[str, str]]:
    accounts = [(f"shopper{i}", f"shopper-password-{i}") for i in range(count)]
    engine = sa.create_engine(server.url_for("app"))
    with engine.begin() as conn:
        for name, password in accounts:
            create_user(conn, name, password, hasher=CHEAP_HASHER)
    engine.dispose()
    return accounts


def _settings(url: str, **extra: Any) -> dict[str, str]:
    return app_settings(
        **{
            "sqlalchemy.url": url,
            "session.secret": SECRET,
            "session.store_timeout": str(STORE_TIMEOUT),
            "session.check_timeout": "1",
            "session.recheck_interval": "10",
            "session.breaker_cooldown": "1",
            **extra,
        }
    )


def _health(app: AppProcess, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(app.url + "/healthz", timeout=timeout) as response:
        return json.loads(response.read())


def _signed_in_crowd(app: AppProcess, accounts: list[tuple[str, str]]) -> tuple[Crowd, Tally]:
    tally = Tally()
    crowd = Crowd(app.port, len(accounts), tally, accounts=accounts).start()
    wait_for(lambda: crowd.signed_in == len(accounts), 20, "every shopper signed in")
    wait_for(lambda: tally.confirmed_adds >= 3 * len(accounts), 20, "carts with items")
    return crowd, tally


def _seconds_to_ok(app: AppProcess, limit: float) -> float:
    started = time.monotonic()
    wait_for(lambda: _health(app)["status"] == "ok", limit + 5, "/healthz saying ok", 0.05)
    return time.monotonic() - started


def test_failover_without_the_cache_signs_nobody_out_and_every_cart_comes_back(
    pg, throwaway_redis: ThrowawayRedis, tmp_path: Path
) -> None:
    server, url = pg
    accounts = _accounts(server, SHOPPERS)
    settings = _settings(
        url,
        **{
            "session.backends": "sql redis",
            "session.redis_url": throwaway_redis.url,
            "session.runtime_failover": "true",
        },
    )
    app = AppProcess(settings, tmp_path).start().wait_ready()
    try:
        crowd, tally = _signed_in_crowd(app, accounts)
        try:
            server.kill()
            time.sleep(4)
            during = _health(app)
            assert during["status"] != "ok" and during["session_backend"] == "redis"
            assert tally.unavailable_pages > 0  # shoppers saw the banner, not a sign-in form
            server.start()
            assert _seconds_to_ok(app, RETURN_BOUND) <= RETURN_BOUND
            time.sleep(2)
        finally:
            crowd.stop()
        crowd.final_check()
    finally:
        app.stop()
    assert tally.users_signed_out == 0, app.log()[-3000:]
    assert crowd.signed_in == SHOPPERS
    assert tally.items_lost == 0, tally.lost_examples
    assert "Max-Age=0" not in app.log()


@pytest.mark.parametrize("failover", [False, True])
def test_healthz_is_not_ok_while_the_serving_store_fails(
    pg, throwaway_redis: ThrowawayRedis, tmp_path: Path, failover: bool
) -> None:
    server, url = pg
    backends = "sql redis" if failover else "sql"
    settings = _settings(
        url,
        **{
            "session.backends": backends,
            "session.redis_url": throwaway_redis.url,
            "session.runtime_failover": str(failover).lower(),
        },
    )
    app = AppProcess(settings, tmp_path).start().wait_ready()
    try:
        client = Client(app.url)
        assert client.request("/_t/write?value=1").status == 200
        server.kill()
        if failover:
            throwaway_redis.kill()  # nothing left to fail over to
        for _ in range(6):
            assert client.request("/_t/read").status == 503
        health = _health(app)
        assert health["status"] == "failing"
        failing = health["serving_store_failing"]
        assert failing["store"] == ("redis" if failover else "sql")
        assert failing["failing_since"] and failing["last_error"]
        assert all(store["ready"] is False for store in health["stores"])
        server.start()
        if failover:
            throwaway_redis.start()
        assert _seconds_to_ok(app, RETURN_BOUND) <= RETURN_BOUND
        assert client.request("/_t/read").status == 200
    finally:
        app.stop()


def test_requests_during_a_freeze_are_refused_within_the_store_timeout(pg, tmp_path: Path) -> None:
    server, url = pg
    app = AppProcess(_settings(url, **{"session.backends": "sql"}), tmp_path).start().wait_ready()
    tally = Tally()
    crowd = Crowd(app.port, 20, tally).start()  # 20 shoppers queue on 4 threads
    try:
        wait_for(lambda: tally.confirmed_adds >= 40, 20, "shopping under way")
        frozen_at = time.monotonic()
        server.freeze()
        try:
            time.sleep(1.5)
            started = time.monotonic()
            health = _health(app)
            health_seconds = time.monotonic() - started
            time.sleep(2.5)
        finally:
            thawed_at = time.monotonic()
            server.thaw()
        assert _seconds_to_ok(app, RETURN_BOUND) <= RETURN_BOUND
    finally:
        crowd.stop()
        crowd.final_check()
        app.stop()
    during = [
        (end - start, status)
        for start, end, status in tally.samples
        if frozen_at <= start and end <= thawed_at
    ]
    assert len(during) > 100  # refusals are fast, so there are many
    slowest = max(seconds for seconds, _ in during)
    assert slowest <= REFUSAL_BOUND, sorted(during)[-10:]
    assert health["status"] == "failing" and health_seconds <= REFUSAL_BOUND
    assert tally.items_lost == 0, tally.lost_examples


def test_sigterm_answers_the_requests_in_flight_then_exits(pg, tmp_path: Path) -> None:
    _, url = pg
    app = AppProcess(_settings(url, **{"session.backends": "sql"}), tmp_path, grace=10)
    app.start().wait_ready()
    answers: list[tuple[int, str]] = []

    def slow() -> None:
        response = Client(app.url).request("/_r/slow_read?sleep=2", timeout=15)
        answers.append((response.status, response.body))

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the three are in the view now
    assert app.proc is not None
    app.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):  # no longer accepting
        Client(app.url).request("/healthz", timeout=2)
    for thread in threads:
        thread.join(15)
    exit_code = app.proc.wait(15)
    assert answers == [(200, '{"value": null}')] * 3
    assert exit_code == 0
    log = app.log()
    assert "every request in flight was answered" in log and "APP EXITED" in log


def test_a_queue_of_requests_is_reported_once_not_per_request(pg, tmp_path: Path) -> None:
    _, url = pg
    app = AppProcess(_settings(url, **{"session.backends": "sql"}), tmp_path, threads=2)
    app.start().wait_ready()
    try:
        threads = [
            threading.Thread(target=Client(app.url).request, args=("/_r/slow_read?sleep=0.3",))
            for _ in range(12)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    finally:
        app.stop()
    log = app.log()
    assert "Task queue depth" not in log
    assert log.count("requests are waiting for a free worker thread") == 1


def test_healthz_says_ready_or_not_for_every_store_including_the_standby_ones(make_app):
    up = make_app("sql-postgres", **{"session.backends": "sql redis memory"})
    stores = {s["name"]: s for s in up.app.get("/healthz").json["stores"]}
    assert [stores[name]["ready"] for name in ("sql", "redis", "memory")] == [True] * 3

    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    down = make_app(
        "sql-postgres",
        **{"session.backends": "sql redis memory", "session.redis_url": dead_redis},
    )
    health = down.app.get("/healthz").json
    stores = {s["name"]: s for s in health["stores"]}
    assert health["status"] == "ok"  # the serving store is fine
    assert stores["redis"]["ready"] is False and "PING failed" in stores["redis"]["cause"]
    assert stores["memory"]["ready"] is True


def test_a_frozen_redis_cache_is_probed_by_one_thread_while_requests_go_on(
    pg, throwaway_redis: ThrowawayRedis, tmp_path: Path
) -> None:
    _, url = pg
    settings = _settings(
        url,
        **{
            "session.backends": "sql",
            "session.cache": "redis",
            "session.redis_url": throwaway_redis.url,
        },
    )
    app = AppProcess(settings, tmp_path).start().wait_ready()
    tally = Tally()
    crowd = Crowd(app.port, 20, tally).start()  # 20 shoppers queue on 4 threads
    try:
        wait_for(lambda: tally.confirmed_adds >= 40, 20, "shopping under way")
        frozen_at = time.monotonic()
        throwaway_redis.freeze()
        try:
            time.sleep(5)  # several probe intervals (breaker_cooldown 1 s, backing off)
            cache = {s["name"]: s for s in _health(app)["stores"]}["sql"]["cache"]
        finally:
            thawed_at = time.monotonic()
            throwaway_redis.thaw()
        wait_for(
            lambda: {s["name"]: s for s in _health(app)["stores"]}["sql"]["cache"]["ready"],
            RETURN_BOUND + 5,
            "the cache answering again",
        )
    finally:
        crowd.stop()
        crowd.final_check()
        app.stop()
    assert cache["ready"] is False and cache["breaker"] == "open"
    during = [
        (start - frozen_at, end - start)
        for start, end, _ in tally.samples
        if frozen_at <= start and end <= thawed_at
    ]
    assert len(during) > 100
    assert max(seconds for _, seconds in during) <= REFUSAL_BOUND
    # Once the breaker is open (the first timeout, plus the queue behind it), no request
    # waits for Redis again: the probes run in one background thread. Before, every
    # thread retried the frozen server after each cool-down, a store timeout each.
    later = [seconds for started, seconds in during if started >= REFUSAL_BOUND]
    assert later and max(later) < STORE_TIMEOUT / 2, sorted(later)[-5:]
    assert tally.errors_5xx == 0 and tally.items_lost == 0
    assert app.log().count("session cache (Redis) failed") == 1
