"""A PostgreSQL primary with a streaming standby under signed-in shoppers: the standby
promoted, the primary fenced read-only, and no connection to the old primary reused.

The app runs in a real waitress process with production.ini's settings, its
``sqlalchemy.url`` naming both servers with ``target_session_attrs=read-write``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.databases import migrate
from tests.support.replication import (
    ThrowawayPrimary,
    ThrowawayStandby,
    make_read_only,
    multi_host_url,
    wait_streaming,
)
from tests.support.shoppers import (
    first_write_after,
    production_settings,
    report,
    shopper_accounts,
    signed_in_crowd,
    writes_since,
)

from .apps import AppProcess, Client, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SHOPPERS = 10
#: Writes must be served again this soon after the promotion (or the fence lifted).
WRITES_BACK_BOUND = 5.0
#: How long the shoppers shop across each fault.
FAULT_SECONDS = 3.0


class Pair:
    """A primary, its streaming standby, and the ``app`` database on both."""

    def __init__(self, primary: ThrowawayPrimary, standby: ThrowawayStandby) -> None:
        self.primary = primary
        self.standby = standby
        self.url = multi_host_url("app", primary, standby)


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    synchronous = getattr(request, "param", True)
    with ThrowawayPrimary(synchronous=synchronous) as primary, ThrowawayStandby(primary) as standby:
        wait_streaming(primary)
        # Created once the standby streams: a synchronous primary waits for it.
        url = primary.create_database("app")
        migrate(url)
        yield Pair(primary, standby)


@pytest.mark.parametrize("end", ["stopped", "killed"])
def test_a_promoted_synchronous_standby_signs_nobody_out_and_loses_nothing(
    pair: Pair, redis_prefix: str, tmp_path: Path, end: str
) -> None:
    logins = shopper_accounts(pair.primary.url_for("app"), SHOPPERS)
    app = AppProcess(production_settings(pair.url, redis_prefix), tmp_path).start().wait_ready()
    try:
        crowd, tally = signed_in_crowd(app, logins)
        try:
            if end == "killed":
                pair.primary.kill()  # a crash: only what the standby has is left
            else:
                pair.primary.stop()  # a fast shutdown, as for maintenance
            pair.standby.promote()
            promoted_at = time.monotonic()
            wait_for(lambda: writes_since(tally, promoted_at) >= 20, 20, "writes on the standby")
            time.sleep(FAULT_SECONDS)
        finally:
            crowd.stop()
        crowd.final_check()
    finally:
        app.stop()
    seconds = first_write_after(tally, promoted_at)
    report(f"primary {end}, standby promoted; first write served after", seconds, tally)
    assert seconds <= WRITES_BACK_BOUND
    assert tally.users_signed_out == 0, app.log()[-3000:]
    assert crowd.signed_in == SHOPPERS
    assert tally.items_lost == 0, tally.lost_examples
    assert all(status == 503 for _, _, status in tally.failures), tally.failures[:10]
    late = [s for start, _, s in tally.failures if start >= promoted_at + WRITES_BACK_BOUND]
    assert late == []


def test_a_read_only_primary_is_refused_never_a_crash_and_writes_come_back(
    pair: Pair, redis_prefix: str, tmp_path: Path
) -> None:
    logins = shopper_accounts(pair.primary.url_for("app"), SHOPPERS)
    app = AppProcess(production_settings(pair.url, redis_prefix), tmp_path).start().wait_ready()
    try:
        crowd, tally = signed_in_crowd(app, logins)
        try:
            fenced_at = time.monotonic()
            make_read_only(pair.primary)
            time.sleep(FAULT_SECONDS)
            refused = [s for start, _, s in tally.failures if start >= fenced_at]
            make_read_only(pair.primary, False)
            lifted_at = time.monotonic()
            wait_for(lambda: writes_since(tally, lifted_at) >= 20, 20, "writes again")
        finally:
            crowd.stop()
        crowd.final_check()
    finally:
        app.stop()
    seconds = first_write_after(tally, lifted_at)
    report("primary read-only, then writable; first write served after", seconds, tally)
    assert refused and set(refused) == {503}  # refused, not crashed (no 500)
    assert all(status == 503 for _, _, status in tally.failures), tally.failures[:10]
    assert seconds <= WRITES_BACK_BOUND
    assert tally.users_signed_out == 0, app.log()[-3000:]
    assert tally.items_lost == 0, tally.lost_examples
    assert "Traceback" not in app.log()


@pytest.mark.parametrize("pair", [False], indirect=True, ids=["asynchronous"])
def test_no_connection_to_the_old_primary_is_reused_once_the_primary_is_elsewhere(
    pair: Pair, redis_prefix: str, tmp_path: Path
) -> None:
    # The old primary stays up, fenced read-only, while the standby is promoted: every
    # pooled connection to it still passes a ping, and would serve reads from a server
    # that no longer gets the writes.
    settings = production_settings(
        pair.url,
        redis_prefix,
        **{
            "session.backends": "sql",
            "session.cookie_secure": "false",  # the test's client speaks plain HTTP
            "myapp.application_name": "shop",
        },
    )
    app = AppProcess(settings, tmp_path, threads=8).start().wait_ready()
    try:
        clients = [Client(app.url) for _ in range(8)]
        for client in clients:
            assert client.request("/_r/cart_add?item=before").status == 200
        _concurrently(clients, "/_r/slow_read?sleep=0.3")  # a pool of connections
        assert _app_backends(pair.primary) >= 4

        make_read_only(pair.primary)
        pair.standby.promote()
        # Whatever the old primary would serve from now on is marked.
        poisoned_at = _poison_carts(pair.primary)
        statuses = [client.request("/_r/cart_add?item=after").status for client in clients]
        assert set(statuses) <= {200, 503} and statuses.count(503) <= 1, statuses
        for _ in range(3):
            for cart in _concurrently(clients, "/_r/cart"):
                assert "stale" not in cart["cart"], cart
        assert _app_backends(pair.primary, since=poisoned_at) == 0
    finally:
        app.stop()
    assert "Traceback" not in app.log()
    assert "refused a write as read-only" in app.log() or "is read-only" in app.log()


def _concurrently(clients: list[Client], path: str) -> list[dict]:
    answers: list[dict] = []
    lock = threading.Lock()

    def one(client: Client) -> None:
        response = client.request(path)
        assert response.status == 200, response.body
        with lock:
            answers.append(response.json())

    threads = [threading.Thread(target=one, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(answers) == len(clients)
    return answers


def _poison_carts(server: ThrowawayPrimary) -> object:
    """Put "stale" in every cart on ``server`` (it refuses other writers); returns the
    server's clock after."""
    with psycopg.connect(server.dsn("app"), autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        conn.execute(
            "UPDATE user_sessions SET data = jsonb_set(data::jsonb, '{cart}', '[\"stale\"]')"
            " WHERE data::jsonb ? 'cart'"
        )
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def _app_backends(server: ThrowawayPrimary, since: object = None) -> int:
    """The app's connections to ``server``; with ``since`` only those that ran a
    statement after that moment (the server's clock)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shop'"
    params: tuple[object, ...] = ()
    if since is not None:
        query += " AND state_change > %s"
        params = (since,)
    with psycopg.connect(server.dsn("app"), autocommit=True) as conn:
        return int(conn.execute(query, params).fetchone()[0])
