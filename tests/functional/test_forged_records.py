"""Whoever can write to the store cannot become another user: records carry an authenticator.

Each test signs in as bob, edits bob's own stored record to say alice (her user id and
name), and sees that the edit signs nobody in as alice; then the next requests of that
client, and alice's own, succeed.
"""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa
from webtest import TestApp

from myapp.sessions.request.factory import storage_key
from tests.conftest import LOOPBACK, SECRET
from tests.support.cookies import token_of
from tests.support.site import add_to_cart, cart_lines, sign_in, signed_in_as

pytestmark = pytest.mark.usefixtures("site_users")

REFUSED = "was treated as absent"


def key_of(client: TestApp) -> str:
    return storage_key(token_of(client.cookies["session"]))


def other_client(handle) -> TestApp:
    return TestApp(handle.router, extra_environ=LOOPBACK)


def as_alice_in_redis(raw: bytes, alice_id: str) -> bytes:
    """A Redis value (store or cache) edited to say alice, its authenticator kept."""
    header_text, data_text = raw.decode().split("\n", 1)
    header = json.loads(header_text)
    header[5] = alice_id
    data = json.loads(data_text)
    data["username"] = "alice"
    return (json.dumps(header) + "\n" + json.dumps(data)).encode()


def signed_in_pair(handle) -> tuple[TestApp, TestApp]:
    """(bob's client, alice's client), both signed in, bob with a cart."""
    bob, alice = handle.app, other_client(handle)
    assert signed_in_as(sign_in(bob, "bob")) == "bob"
    add_to_cart(bob, "green-tea", 2)
    assert signed_in_as(sign_in(alice, "alice")) == "alice"
    return bob, alice


def alice_user_id(handle, alice: TestApp) -> str:
    record = handle.store.load(key_of(alice), 0)
    assert record is not None and record.user_id
    return record.user_id


def next_requests_succeed(bob: TestApp, alice: TestApp, *, bob_signed_in: bool) -> None:
    page = bob.get("/")
    assert signed_in_as(page) == ("bob" if bob_signed_in else None)
    if not bob_signed_in:
        assert signed_in_as(sign_in(bob, "bob")) == "bob"
    add_to_cart(bob, "green-tea", 1)
    assert signed_in_as(bob.get("/")) == "bob"
    assert signed_in_as(alice.get("/")) == "alice"
    add_to_cart(alice, "black-tea", 1)
    assert cart_lines(alice.get("/cart")) == {"black-tea": 1}


@pytest.mark.redis
def test_edited_record_in_the_redis_store_signs_nobody_in(make_app, caplog):
    handle = make_app("redis")
    bob, alice = signed_in_pair(handle)
    client, key = handle.store.client, handle.store.prefix + key_of(bob)
    client.set(key, as_alice_in_redis(client.get(key), alice_user_id(handle, alice)))

    with caplog.at_level(logging.WARNING):
        page = bob.get("/")
    assert signed_in_as(page) is None  # a fresh session: the edited record is absent
    assert any(REFUSED in r.getMessage() for r in caplog.records)
    next_requests_succeed(bob, alice, bob_signed_in=False)


@pytest.mark.redis
def test_another_sessions_record_copied_under_ones_own_key_is_refused(make_app):
    handle = make_app("redis")
    bob, alice = signed_in_pair(handle)
    client, prefix = handle.store.client, handle.store.prefix
    client.set(prefix + key_of(bob), client.get(prefix + key_of(alice)))
    assert signed_in_as(bob.get("/")) is None
    next_requests_succeed(bob, alice, bob_signed_in=False)


@pytest.mark.postgres
@pytest.mark.redis
def test_edited_entry_in_the_read_cache_is_a_miss(make_app, redis_prefix, caplog):
    handle = make_app("sql-postgres", **{"session.cache": "redis"})
    bob, alice = signed_in_pair(handle)
    cache = handle.store.cache
    key = cache.prefix + key_of(bob)
    raw = cache.client.get(key)
    assert raw is not None, "bob's session is not in the read cache"
    cache.client.set(key, as_alice_in_redis(raw, alice_user_id(handle, alice)))

    with caplog.at_level(logging.WARNING):
        page = bob.get("/")
    assert signed_in_as(page) == "bob"  # the database's row, not the edited entry
    assert any(REFUSED in r.getMessage() for r in caplog.records)
    # The next write reads PostgreSQL and keeps bob there.
    add_to_cart(bob, "green-tea", 1)
    with handle.engine.connect() as conn:
        owner = conn.execute(
            sa.text("SELECT user_id FROM user_sessions WHERE id = :k"), {"k": key_of(bob)}
        ).scalar_one()
    assert owner != alice_user_id(handle, alice)
    assert cart_lines(bob.get("/cart")) == {"green-tea": 3}
    next_requests_succeed(bob, alice, bob_signed_in=True)


def _edit_row(handle, key: str, alice: TestApp, *, mac: str = "keep") -> None:
    assignments = "user_id = :alice, data = jsonb_set(data::jsonb, '{username}', '\"alice\"')"
    if mac == "null":
        assignments += ", mac = NULL"
    elif mac == "alice":
        assignments += ", mac = (SELECT mac FROM user_sessions s WHERE s.id = :alice_key)"
    with handle.engine.begin() as conn:
        updated = conn.execute(
            sa.text(f"UPDATE user_sessions SET {assignments} WHERE id = :k"),
            {"alice": alice_user_id(handle, alice), "k": key, "alice_key": key_of(alice)},
        ).rowcount
    assert updated == 1


@pytest.mark.postgres
@pytest.mark.parametrize("mac", ["keep", "null", "alice"])
def test_edited_sql_row_signs_nobody_in(make_app, mac, caplog):
    """Kept, removed (NULL, like a row written before the column) or borrowed from
    alice's own row: the authenticator never lets the edit through."""
    handle = make_app("sql-postgres")
    bob, alice = signed_in_pair(handle)
    _edit_row(handle, key_of(bob), alice, mac=mac)

    with caplog.at_level(logging.WARNING):
        page = bob.get("/")
    assert signed_in_as(page) is None
    assert any(REFUSED in r.getMessage() for r in caplog.records)
    next_requests_succeed(bob, alice, bob_signed_in=False)


@pytest.mark.postgres
@pytest.mark.redis
def test_edited_sql_row_behind_the_read_cache_signs_nobody_in(make_app):
    handle = make_app("sql-postgres", **{"session.cache": "redis"})
    bob, alice = signed_in_pair(handle)
    handle.store.cache.forget(key_of(bob))  # the row is read, not the cached copy
    _edit_row(handle, key_of(bob), alice)
    assert signed_in_as(bob.get("/")) is None
    next_requests_succeed(bob, alice, bob_signed_in=False)


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("sql-postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def test_records_written_under_an_older_secret_of_the_ring_still_verify(make_app, backend):
    old = make_app(backend)
    assert signed_in_as(sign_in(old.app, "bob")) == "bob"
    add_to_cart(old.app, "green-tea", 2)
    newest = "rotated-secret-" + "Zq7Xk2Vb9Lm4Np8Rt3Wy6Hc1Jd5Gf0Ps"
    rotated = make_app(backend, **{"session.secret": f"{newest} {SECRET}"})
    client = TestApp(rotated.router, extra_environ=LOOPBACK)
    client.set_cookie("session", old.app.cookies["session"])
    assert signed_in_as(client.get("/")) == "bob"
    add_to_cart(client, "green-tea", 1)  # re-signed under the newest secret
    assert cart_lines(client.get("/cart")) == {"green-tea": 3}
