"""Several processes and threads on one session: shared stores, retries, late writes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from webtest import TestApp

from tests.support.cookies import token_of
from tests.support.rediskeys import unique_prefix

from .apps import AppProcess, Client, Response, app_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

INCLUDES = "tests.support.views tests.reliability.views"


@pytest.fixture
def prefix() -> Iterator[str]:
    with unique_prefix("myapp-conc") as prefix:
        yield prefix


@pytest.fixture(params=["sql", pytest.param("sql-pgbouncer", marks=pytest.mark.pgbouncer), "redis"])
def two_apps(request, postgres_url: str, prefix: str, tmp_path: Path) -> Iterator[list[AppProcess]]:
    backend = request.param
    through = {}
    if backend == "sql-pgbouncer":  # transaction pooling, two server connections
        backend = "sql"
        through = {
            "sqlalchemy.url": request.getfixturevalue("pgbouncer_url"),
            "db.pgbouncer": "transaction",
        }
    settings = app_settings(
        **{
            "sqlalchemy.url": postgres_url,
            "session.backends": backend,
            "session.redis_prefix": prefix,
            "retry.attempts": "30",
            **through,
        }
    )
    apps = [AppProcess(settings, tmp_path, threads=8).start() for _ in range(2)]
    try:
        for app in apps:
            app.wait_ready()
        yield apps
    finally:
        for app in apps:
            app.stop()


def test_a_session_made_in_one_process_is_read_and_changed_in_another(two_apps):
    first, second = Client(two_apps[0].url), Client(two_apps[1].url)
    assert first.request("/_r/cart_add?item=a").status == 200
    first.copy_cookies_to(second)
    assert second.request("/_r/cart").json()["cart"] == ["a"]
    assert second.request("/_r/cart_add?item=b").status == 200
    assert first.request("/_r/cart").json()["cart"] == ["a", "b"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_twenty_threads_on_one_cart_lose_nothing(two_apps, method):
    # A POST loads and writes in one transaction on PostgreSQL; a GET in two statements.
    shopper = Client(two_apps[0].url)
    assert shopper.request("/_r/cart_add?item=start").status == 200
    headers = {"X-CSRF-Token": shopper.request("/_t/csrf_form").json()["token"]}
    cookie = f"session={shopper.cookie()}"
    urls = [app.url for app in two_apps]

    def add(n: int) -> Response:
        # Both processes at once: the race crosses process boundaries too.
        return Client(urls[n % 2]).request(
            f"/_r/cart_add?item=i{n}", cookie=cookie, timeout=30, method=method, headers=headers
        )

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(add, range(20)))

    errors = [line for app in two_apps for line in app.log().splitlines() if "ERROR" in line]
    assert [r.status for r in responses] == [200] * 20, errors[:5]
    assert all(len(r.set_cookies) <= 1 for r in responses)
    cart = shopper.request("/_r/cart").json()["cart"]
    assert sorted(cart) == sorted(["start", *(f"i{n}" for n in range(20))])  # none lost, none twice


def test_a_slow_request_cannot_bring_back_a_signed_out_session(two_apps):
    shopper = Client(two_apps[0].url)
    shopper.request("/_t/write?value=secret")
    cookie = f"session={shopper.cookie()}"
    results: dict[str, Response] = {}

    def slow() -> None:
        results["slow"] = Client(two_apps[1].url).request(
            "/_r/slow_write?sleep=1.5&value=late", cookie=cookie
        )

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)  # the slow request has read the session by now
    assert shopper.request("/_t/invalidate").status == 200
    thread.join(10)

    assert results["slow"].status == 200
    replay = Client(two_apps[0].url).request("/_t/read", cookie=cookie)
    assert replay.json() == {"value": None, "new": True}


def test_a_retried_request_writes_once_and_sets_one_cookie(make_app):
    handle = make_app("sql-postgres", **{"pyramid.includes": INCLUDES, "retry.attempts": "3"})
    handle.app.get("/_t/write?value=first")
    before = handle.store.load(_key(handle.app), time.time())

    response = handle.app.get("/_r/race_once?value=mine")

    assert response.json == {"attempt": 1}  # the first attempt lost the race
    after = handle.store.load(_key(handle.app), time.time())
    # One version for the competing write, one for ours: no double write.
    assert after.version == before.version + 2
    assert json.loads(after.data) == {"value": "mine"}
    assert len(response.headers.getall("Set-Cookie")) <= 1


def test_a_late_touch_does_not_revive_an_expired_session(make_app):
    handle = make_app(
        "sql-postgres",
        **{
            "pyramid.includes": INCLUDES,
            "session.timeout": "1",
            "session.reissue_time": "0",
        },
    )
    handle.app.get("/_t/write?value=short")
    # Reads while live, finishes (and would touch) after the expiry.
    assert handle.app.get("/_r/slow_read?sleep=1.5").json == {"value": "short"}
    assert handle.app.get("/_t/read").json == {"value": None, "new": True}


def _key(app: TestApp) -> str:
    from myapp.sessions.request.factory import storage_key

    return storage_key(token_of(app.cookies["session"]))
