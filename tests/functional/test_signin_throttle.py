"""Sign-in throttling: per account and per address, 429 + Retry-After, no hashing meanwhile."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid

import argon2
import pytest
import sqlalchemy as sa
from pyramid.exceptions import ConfigurationError
from webtest import TestApp

from myapp.metrics import get_metrics_registry
from myapp.throttle import get_throttle
from tests.support.site import csrf_token, flashes, new_user, signed_in_as

THROTTLED = {
    "signin.account_free_failures": "3",
    "signin.address_free_failures": "6",
    "signin.first_delay": "30",
}
STORES = ("sql-postgres", "sql-sqlite", "redis", "memory")


@pytest.fixture
def hashes(monkeypatch):
    """How many times a password was hashed or verified (a spy on argon2-cffi)."""
    calls = []
    verify, hash_ = argon2.PasswordHasher.verify, argon2.PasswordHasher.hash

    def counted_verify(self, *args, **kwargs):
        calls.append("verify")
        return verify(self, *args, **kwargs)

    def counted_hash(self, *args, **kwargs):
        calls.append("hash")
        return hash_(self, *args, **kwargs)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counted_verify)
    monkeypatch.setattr(argon2.PasswordHasher, "hash", counted_hash)
    return calls


def browser(handle, address: str | None = None) -> TestApp:
    """A visitor from its own address, so tests do not share address counters."""
    if address is None:
        unique = uuid.uuid4().int
        address = f"2001:db8:{unique & 0xFFFF:x}:{(unique >> 16) & 0xFFFF:x}::1"  # its own /64
    return TestApp(handle.router, extra_environ={"REMOTE_ADDR": address})


def attempt(app: TestApp, name: str, password: str, status: int | None = None):
    token = csrf_token(app.get("/signin"))
    return app.post(
        "/signin", {"csrf_token": token, "username": name, "password": password}, status=status
    )


def failures_metric(handle, reason: str) -> float:
    value = get_metrics_registry(handle.registry).get_sample_value(
        "myapp_signin_failures_total", {"reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize("backend", STORES)
def test_account_is_throttled_with_429_and_retry_after_without_hashing(
    make_app, backend, hashes, caplog
):
    caplog.set_level(logging.INFO, logger="myapp")
    handle = make_app(backend, **THROTTLED)
    name, password = new_user(handle.engine, "throttled")
    visitor = browser(handle)
    for _ in range(3):  # free failures: a redirect back to the form
        assert attempt(visitor, name, "wrong-password").status_int == 303
    fourth = attempt(visitor, name, "wrong-password").follow()
    # The failure that began the block says so, in one banner.
    assert flashes(fourth) == [
        "Wrong username or password. Too many failed sign-ins. Please try again in 30 seconds."
    ]

    hashes.clear()
    refused = attempt(visitor, name, password, status=429)  # even the right password
    assert hashes == []
    assert 25 <= int(refused.headers["Retry-After"]) <= 30
    message = refused.html.find(id="signin-throttled").get_text()
    assert message.startswith("Too many failed sign-ins. Please try again in ")
    assert message.endswith(("29 seconds.", "30 seconds."))
    assert signed_in_as(refused) is None

    # The owner, from an address that has not failed, signs in: another's failures
    # lock out the account from their address only.
    assert signed_in_as(attempt(browser(handle), name, password).follow()) == name
    assert failures_metric(handle, "wrong_password") == 4
    assert failures_metric(handle, "throttled") == 1
    logged = [r.getMessage() for r in caplog.records if "failed sign-in" in r.getMessage()]
    assert len(logged) == 5
    assert all(repr(name) in line for line in logged)
    assert not any(password in line or "wrong-password" in line for line in logged)


@pytest.mark.parametrize("backend", ("sql-postgres", "redis"))
def test_an_address_trying_many_accounts_is_throttled(make_app, backend):
    handle = make_app(backend, **THROTTLED)
    visitor = browser(handle)
    for number in range(7):  # six free, the seventh begins the block
        attempt(visitor, f"nobody-{uuid.uuid4().hex[:8]}-{number}", "guess", status=303)
    response = attempt(visitor, "someone-else", "guess", status=429)
    assert int(response.headers["Retry-After"]) >= 25
    name, password = new_user(handle.engine, "elsewhere")
    assert signed_in_as(attempt(browser(handle), name, password).follow()) == name


def test_a_success_after_the_wait_clears_the_account(make_app):
    handle = make_app(
        "sql-postgres", **{"signin.account_free_failures": "1", "signin.first_delay": "0.3"}
    )
    name, password = new_user(handle.engine, "clears")
    address = "192.0.2.150"  # one client: its count for this account is what blocks
    attempt(browser(handle, address), name, "wrong", status=303)
    attempt(browser(handle, address), name, "wrong", status=303)  # blocks for 0.3 s
    assert attempt(browser(handle, address), name, password, status=429)
    deadline = time.monotonic() + 10  # generous: the block is 0.3 s
    visitor = browser(handle, address)
    while attempt(visitor, name, password, status="*").status_int == 429:
        assert time.monotonic() < deadline, "the block never ended"
        time.sleep(0.1)
    assert signed_in_as(visitor.get("/cart")) == name
    again = attempt(browser(handle, address), name, "wrong").follow()
    assert "try again in" not in again.text  # the count started again at one free failure


@pytest.mark.parametrize("backend", ("sql-postgres", "memory"))
def test_overlong_password_is_refused_before_hashing(make_app, backend, hashes):
    handle = make_app(backend)
    name, _ = new_user(handle.engine, "long")
    visitor = browser(handle)
    hashes.clear()
    response = attempt(visitor, name, "x" * 1025).follow()
    assert hashes == []
    assert "Wrong username or password." in response.text
    assert failures_metric(handle, "password_too_long") == 1
    attempt(visitor, name, "y" * 1024)
    assert hashes == ["verify"]


def test_counters_that_cannot_count_refuse_the_sign_in(make_app, caplog, hashes):
    caplog.set_level(logging.WARNING, logger="myapp.throttle")
    handle = make_app("sql-postgres", **THROTTLED)
    name, password = new_user(handle.engine, "uncounted")
    visitor = browser(handle)
    with handle.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE signin_throttle RENAME TO signin_throttle_away")
    try:
        hashes.clear()
        for guess in ("wrong", password):
            refused = attempt(visitor, name, guess, status=503)
            assert refused.headers["Retry-After"] == "5"
        assert hashes == []  # never checked, never counted in this process instead
        assert visitor.get("/").status_int == 200  # the rest of the site goes on
    finally:
        with handle.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE signin_throttle_away RENAME TO signin_throttle")
    warnings = [r.getMessage() for r in caplog.records if "sign-in throttling" in r.getMessage()]
    assert warnings and all("signin_throttle" in line for line in warnings)
    # Once the store counts again, the same visitor signs in.
    assert signed_in_as(attempt(visitor, name, password).follow()) == name


def _at_once(count: int, fn) -> list:
    """``fn(i)`` in ``count`` threads released together; every result (a hang fails)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "sign-ins hung"
    return results


@pytest.mark.parametrize("backend", ("sql-postgres", "redis", "memory"))
def test_sixteen_wrong_passwords_at_once_are_counted_before_any_is_checked(
    make_app, backend, hashes
):
    handle = make_app(backend, **THROTTLED)
    name, password = new_user(handle.engine, "burst")
    address = "192.0.2.141"
    visitors = [browser(handle, address) for _ in range(16)]
    tokens = [csrf_token(v.get("/signin")) for v in visitors]
    hashes.clear()

    def post(i: int) -> int:
        fields = {"csrf_token": tokens[i], "username": name, "password": f"wrong-{i}"}
        return visitors[i].post("/signin", fields, status="*").status_int

    statuses = _at_once(16, post)
    assert sorted(set(statuses)) == [303, 429]
    assert statuses.count(303) == 4  # three free, and the one that began the block
    assert len(hashes) == 4
    # Blocked for this address; the owner elsewhere signs in.
    assert attempt(browser(handle, address), name, password, status=429)
    assert signed_in_as(attempt(browser(handle), name, password).follow()) == name


def test_failed_sign_ins_at_once_on_the_default_pool_never_deadlock(make_app):
    """More threads than the site's pool (5 + 10) fail at once; each holds a connection of
    the request and counts on the throttle's own: every one is answered."""
    handle = make_app("sql-postgres")
    name, _ = new_user(handle.engine, "pool")
    visitors = [browser(handle) for _ in range(24)]
    tokens = [csrf_token(v.get("/signin")) for v in visitors]

    def post(i: int) -> int:
        fields = {"csrf_token": tokens[i], "username": name, "password": f"wrong-{i}"}
        return visitors[i].post("/signin", fields, status="*").status_int

    statuses = _at_once(24, post)
    assert set(statuses) <= {303, 429}, statuses
    # Every attempt was counted in the shared table, none in this process alone.
    account_key = get_throttle(handle.registry)._limits(name, "")[1][0]
    with handle.engine.connect() as conn:
        counted = conn.execute(
            sa.text("SELECT failures FROM signin_throttle WHERE key = :key"), {"key": account_key}
        ).scalar()
    assert counted == 24
    # The same visitors and a new one are answered next.
    assert visitors[0].get("/signin").status_int == 200
    assert browser(handle).get("/").status_int == 200


def test_an_unknown_name_is_never_logged_as_typed(make_app, caplog):
    caplog.set_level(logging.INFO, logger="myapp")
    handle = make_app("memory")
    visitor = browser(handle)
    attempt(visitor, "my-secret-password", "x", status=303)
    lines = [r.getMessage() for r in caplog.records if "failed sign-in" in r.getMessage()]
    assert len(lines) == 1
    assert "my-secret-password" not in lines[0] and "fingerprint" in lines[0]


def test_throttle_rows_hold_keyed_hashes_only(make_app):
    handle = make_app("sql-postgres", **THROTTLED)
    name = f"keyed-{uuid.uuid4().hex[:8]}"
    address = "192.0.2.142"
    attempt(browser(handle, address), name, "wrong", status=303)
    plain = {
        hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()
        for kind, value in (("account", name), ("address", address))
    }
    with handle.engine.connect() as conn:
        keys = {row.key for row in conn.execute(sa.text("SELECT key FROM signin_throttle"))}
    assert keys and not keys & plain


def test_unknown_counters_stop_start_up_naming_the_setting(make_app):
    with pytest.raises(ConfigurationError, match=r"signin\.counters: sign-in throttling"):
        make_app("memory", **{"signin.counters": "carrier-pigeon"})


def test_counters_named_in_the_settings_count_whatever_store_serves(make_app):
    handle = make_app("memory", **{"signin.counters": "sql", **THROTTLED})
    assert get_throttle(handle.registry).counters().name == "sql"
