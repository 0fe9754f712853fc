"""Every way a state-changing request can roll back leaves the SQL store serving.

Each test signs two shoppers in, lets psycopg auto-prepare the store's statements on
the one held connection (``pool_size = 1``; past ``prepare_threshold``), takes one
rollback path, then makes state-changing requests of the same shopper and of the
other: none may answer 5xx, and each does what it says. Where the path leaves the
connection healthy, the same connection must serve them. Run on PostgreSQL directly
and through PgBouncer in transaction pooling mode.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from webtest import TestApp

from myapp.cart import MAX_QUANTITY
from myapp.catalogue import PRODUCTS
from myapp.sessions.request.factory import storage_key
from tests.support.cookies import token_of
from tests.support.databases import migrated_database
from tests.support.site import USERS, ensure_users

pytestmark = pytest.mark.postgres

INCLUDES = "tests.support.views tests.reliability.views"
FIRST, SECOND = list(PRODUCTS)[:2]
ROUTES = ("sql-postgres", "sql-pgbouncer")


class Shopper:
    """A browser of its own on the app: a cookie jar, and the session's CSRF token."""

    def __init__(self, handle, name: str) -> None:
        self.handle = handle
        self.app = TestApp(handle.router)
        self.name = name
        self.sign_in()

    def token(self) -> str:
        return self.app.get("/_t/csrf_form").json["token"]

    def post(self, path: str, status: int | str | None = None, **fields: object):
        return self.app.post(path, {"csrf_token": self.token(), **fields}, status=status)

    def post_json(self, path: str, status: int | str | None = None):
        return self.app.post(path, headers={"X-CSRF-Token": self.token()}, status=status)

    def record(self) -> dict:
        token = token_of(self.app.cookies["session"])
        stored = self.handle.store.load(storage_key(token), time.time())
        assert stored is not None, f"{self.name} has no session"
        return json.loads(stored.data)

    def cart(self) -> dict[str, int]:
        return self.record().get("cart", {})

    def sign_in(self) -> None:
        response = self.post("/signin", username=self.name, password=USERS[self.name])
        assert response.status_int == 303, response
        assert self.record().get("username") == self.name

    def add(self, product: str, quantity: int = 1) -> None:
        before = self.cart().get(product, 0)
        response = self.post("/cart/add", product=product, quantity=quantity)
        assert response.status_int == 303, response
        assert self.cart().get(product, 0) == before + quantity

    def sign_out(self) -> None:
        assert self.post("/signout").status_int == 303
        assert self.app.get("/_t/read").json["value"] is None
        if self.app.cookies.get("session"):  # a new session (a flash, say) is no sign-in
            assert "username" not in self.record()


def held_backend_pids(handle) -> list[int]:
    held = handle.store.driver.held
    return [pooled.driver_connection.info.backend_pid for pooled, _ in held._idle]


def prepared_on_held_connection(handle) -> list[str]:
    held = handle.store.driver.held
    pooled = held.acquire()
    try:
        cursor = pooled.driver_connection.execute(
            "SELECT statement FROM pg_prepared_statements", prepare=False
        )
        return [row[0] for row in cursor]
    finally:
        held.release(pooled)


@pytest.fixture(scope="module")
def timeout_url() -> Iterator[str]:
    """A database of its own whose statements time out after 300 ms."""
    with migrated_database("myapp_timeout") as url:
        ensure_users(url)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            name = conn.execute(sa.text("SELECT current_database()")).scalar()
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET statement_timeout = 300'))
        engine.dispose()
        yield url


@pytest.fixture(params=ROUTES)
def shop(request, make_app, site_users) -> Callable[..., tuple]:
    """(app handle, alice, bob) on a warmed-up held connection."""
    route = request.param
    if route == "sql-pgbouncer":
        request.applymarker(pytest.mark.pgbouncer)

    def open_shop(**settings: str):
        handle = make_app(
            route, **{"pyramid.includes": INCLUDES, "sqlalchemy.pool_size": "1", **settings}
        )
        alice, bob = Shopper(handle, "alice"), Shopper(handle, "bob")
        for _ in range(3):  # each store statement runs more than prepare_threshold times
            alice.add(FIRST)
            bob.add(SECOND)
        prepared = prepared_on_held_connection(handle)
        if route == "sql-postgres":
            assert any("user_sessions" in text for text in prepared), prepared
        else:  # behind a transaction-pooling PgBouncer nothing may be prepared
            assert prepared == []
        return handle, alice, bob

    open_shop.route = route
    return open_shop


def carry_on(handle, alice: Shopper, bob: Shopper) -> None:
    """State-changing requests of both shoppers after the rollback: all succeed."""
    alice.add(FIRST)
    bob.add(SECOND, 2)
    alice.add(SECOND)
    # "Sign out everywhere else" from a second device of alice's.
    other_device = Shopper(handle, "alice")
    response = alice.post("/account/sessions/end-others")
    assert response.status_int == 303
    assert other_device.app.get("/_t/read").json["new"] is True  # ended elsewhere
    bob.sign_out()
    bob.sign_in()
    bob.add(FIRST)


def test_a_view_that_raises(shop):
    handle, alice, bob = shop()
    pids = held_backend_pids(handle)
    with pytest.raises(Exception, match="the view failed"):
        alice.post_json("/_t/write_then_raise")
    carry_on(handle, alice, bob)
    assert held_backend_pids(handle) == pids  # the same connection served them


def test_a_doomed_transaction(shop):
    handle, alice, bob = shop()
    pids = held_backend_pids(handle)
    alice.post_json("/_t/write_then_doom")
    assert alice.record().get("value") != "must-not-persist"
    carry_on(handle, alice, bob)
    assert held_backend_pids(handle) == pids


def test_an_http_4xx_raised_after_a_session_write(shop):
    handle, alice, bob = shop()
    pids = held_backend_pids(handle)
    alice.post_json("/_t/write_then_forbidden", status=403)
    assert alice.record().get("value") != "must-not-persist"
    carry_on(handle, alice, bob)
    assert held_backend_pids(handle) == pids


def test_a_flash_then_a_raised_redirect(shop):
    handle, alice, bob = shop()
    pids = held_backend_pids(handle)
    alice.post_json("/_t/flash_then_redirect", status=302)
    carry_on(handle, alice, bob)
    assert held_backend_pids(handle) == pids


def test_a_csrf_failure(shop):
    handle, alice, bob = shop()
    pids = held_backend_pids(handle)
    before = alice.cart()
    alice.app.post("/cart/add", {"csrf_token": "forged", "product": FIRST}, status=400)
    assert alice.cart() == before
    carry_on(handle, alice, bob)
    assert held_backend_pids(handle) == pids


def test_a_session_over_max_size(shop):
    handle, alice, bob = shop(**{"session.max_size": "4096"})
    pids = held_backend_pids(handle)
    alice.app.post("/_t/big?size=20000", headers={"X-CSRF-Token": alice.token()}, status=413)
    carry_on(handle, alice, bob)
    assert held_backend_pids(handle) == pids


def test_a_write_race_lost_on_every_attempt(shop):
    handle, alice, bob = shop()
    alice.post_json("/_r/race_once?lose=99&value=mine", status=409)
    # The competing writer borrowed a second connection; one of the two is kept.
    pids = held_backend_pids(handle)
    assert alice.record().get("value") == "other"  # the competing write stands
    carry_on(handle, alice, bob)
    assert held_backend_pids(handle) == pids


def test_the_held_connections_backend_is_terminated(shop, postgres_url):
    handle, alice, bob = shop()
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:  # directly: through PgBouncer too, its servers die
        ended = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
        ).scalar()
    engine.dispose()
    assert ended >= 1
    carry_on(handle, alice, bob)


def test_a_statement_timeout(make_app, timeout_url, request):
    # The session row is locked by another transaction: the store's write waits, and
    # the database's statement_timeout (300 ms, before the store's 1 s deadline)
    # cancels it. That request cannot save its session (503); the next ones can: a
    # cancelled statement is an answer, not a frozen server, so the store's breaker
    # does not open at once.
    locker_engine = sa.create_engine(timeout_url)
    request.addfinalizer(locker_engine.dispose)
    for route in ROUTES:
        url = timeout_url
        if route == "sql-pgbouncer":
            url = request.getfixturevalue("pgbouncer").url_for(sa.make_url(url).database)
        settings = {"pyramid.includes": INCLUDES, "sqlalchemy.pool_size": "1"}
        if route == "sql-pgbouncer":
            settings["db.pgbouncer"] = "transaction"
        handle = make_app(route, **{"sqlalchemy.url": url, **settings})
        alice, bob = Shopper(handle, "alice"), Shopper(handle, "bob")
        for _ in range(3):
            alice.add(FIRST)
            bob.add(SECOND)
        key = storage_key(token_of(alice.app.cookies["session"]))
        token = alice.token()
        with locker_engine.connect() as locker:
            locker.execute(
                sa.text("SELECT 1 FROM user_sessions WHERE id = :key FOR UPDATE"), {"key": key}
            )
            response = alice.app.post(
                "/cart/add", {"csrf_token": token, "product": FIRST}, status="*"
            )
            locker.rollback()
        assert response.status_int == 503, response
        assert "Retry-After" in response.headers
        carry_on(handle, alice, bob)


def test_a_hundred_rounds_of_reads_a_rollback_and_writes_answer_no_5xx(shop):
    # 5 reads, 1 rolled-back POST, 3 writing POSTs from two clients, 100 times.
    _, alice, bob = shop()
    rollbacks = [
        lambda: alice.post_json("/_t/write_then_doom"),
        lambda: alice.app.post("/cart/add", {"csrf_token": "x", "product": FIRST}, status=400),
        lambda: alice.post_json("/_t/write_then_forbidden", status=403),
        lambda: alice.post_json("/_t/flash_then_redirect", status=302),
    ]
    statuses: list[int] = []
    expected = dict(alice.cart()), dict(bob.cart())
    for n in range(100):
        for _ in range(5):
            statuses.append(alice.app.get("/cart").status_int)
        rollbacks[n % len(rollbacks)]()
        for shopper, product in ((alice, FIRST), (bob, SECOND), (alice, SECOND)):
            response = shopper.post("/cart/add", product=product, quantity=1)
            statuses.append(response.status_int)
            cart = expected[0] if shopper is alice else expected[1]
            cart[product] = min(cart.get(product, 0) + 1, MAX_QUANTITY)
    assert not [status for status in statuses if status >= 500]
    assert (alice.cart(), bob.cart()) == expected


def test_a_thread_per_shopper_on_one_held_connection(shop):
    # The same paths from several threads at once: rollbacks and writes interleave on
    # the held connections; nobody sees a 5xx and no confirmed item is lost.
    _, alice, bob = shop()
    failures: list[str] = []

    def loop(shopper: Shopper, product: str) -> None:
        try:
            for _ in range(15):
                shopper.post_json("/_t/write_then_doom")
                shopper.add(product)
        except Exception as exc:  # reported below, with its thread
            failures.append(f"{shopper.name}: {exc!r}")

    threads = [
        threading.Thread(target=loop, args=(alice, FIRST)),
        threading.Thread(target=loop, args=(bob, SECOND)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
