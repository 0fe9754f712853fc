"""Sign-in throttling: per account and per address, 429 + Retry-After, no hashing meanwhile."""

from __future__ import annotations

import logging
import time
import uuid

import argon2
import pytest
from webtest import TestApp

from myapp.metrics import get_metrics_registry
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

    # Another address is refused too: the account is what is limited.
    assert attempt(browser(handle), name, password, status=429)
    assert failures_metric(handle, "wrong_password") == 4
    assert failures_metric(handle, "throttled") == 2
    logged = [r.getMessage() for r in caplog.records if "failed sign-in" in r.getMessage()]
    assert len(logged) == 6
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
    attempt(browser(handle), name, "wrong", status=303)
    attempt(browser(handle), name, "wrong", status=303)  # blocks for 0.3 s
    assert attempt(browser(handle), name, password, status=429)
    deadline = time.monotonic() + 10  # generous: the block is 0.3 s
    visitor = browser(handle)
    while attempt(visitor, name, password, status="*").status_int == 429:
        assert time.monotonic() < deadline, "the block never ended"
        time.sleep(0.1)
    assert signed_in_as(visitor.get("/cart")) == name
    again = attempt(browser(handle), name, "wrong").follow()
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


def test_broken_shared_counters_fall_back_to_this_process(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="myapp.throttle")
    handle = make_app("sql-postgres", **THROTTLED)
    with handle.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE signin_throttle RENAME TO signin_throttle_away")
    try:
        name, _ = new_user(handle.engine, "fallback")
        visitor = browser(handle)
        for _ in range(4):
            attempt(visitor, name, "wrong", status=303)
        assert attempt(visitor, name, "wrong", status=429)
    finally:
        with handle.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE signin_throttle_away RENAME TO signin_throttle")
    warnings = [r.getMessage() for r in caplog.records if "sign-in throttling" in r.getMessage()]
    assert len(warnings) == 1
    assert "signin_throttle" in warnings[0]
