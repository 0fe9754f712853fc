"""A pooled connection whose server turned read-only is closed, never reused: the
refusal stays a refusal (503), and the next requests run on fresh connections."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import psycopg
import pytest
from webtest import TestApp

from tests.conftest import AppHandle
from tests.reliability.test_faults import FAST

pytestmark = pytest.mark.postgres


def _app(make_app: Callable[..., AppHandle], url: str) -> tuple[AppHandle, str]:
    name = "ro-" + secrets.token_hex(4)
    handle = make_app(
        "custom",
        **{
            **FAST,
            "sqlalchemy.url": url,
            "session.backends": "sql",
            "myapp.application_name": name,
        },
    )
    return handle, name


def _backends(postgres_url: str, name: str) -> set[int]:
    dsn = postgres_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchall()
    return {pid for (pid,) in rows}


def _held_read_only(handle: AppHandle) -> set[int]:
    """Make every connection the SQL store holds read-only, as a fenced server would be
    (``default_transaction_read_only``, which the server reports to the client)."""
    held = handle.store.driver.held
    taken = [held.acquire() for _ in range(3)]  # a pool of several connections
    for pooled in taken:
        held.release(pooled)
    pids = set()
    for pooled, _ in list(held._idle):
        driver = pooled.driver_connection
        driver.execute("SET default_transaction_read_only = on")
        pids.add(driver.info.backend_pid)
    assert len(pids) == 3
    return pids


def _browser(handle: AppHandle) -> TestApp:
    return TestApp(handle.router)


def test_a_write_refused_as_read_only_is_a_503_and_retires_every_pooled_connection(
    make_app, postgres_url: str
):
    handle, name = _app(make_app, postgres_url)
    shopper, other = _browser(handle), _browser(handle)
    assert shopper.get("/_r/cart_add?item=tea").json == {"count": 1}
    assert other.get("/_r/cart_add?item=cup").json == {"count": 1}
    read_only = _held_read_only(handle)

    refused = shopper.get("/_r/cart_add?item=lost", expect_errors=True)
    assert refused.status_int == 503

    assert shopper.get("/_r/cart_add?item=kept").json == {"count": 2}
    assert shopper.get("/_r/cart").json["cart"] == ["tea", "kept"]
    assert other.get("/_r/cart_add?item=saucer").json == {"count": 2}
    assert not read_only & _backends(postgres_url, name)  # none of them reused


def test_with_target_session_attrs_a_server_reporting_read_only_is_never_asked(
    make_app, postgres_url: str
):
    handle, name = _app(make_app, postgres_url + "?target_session_attrs=read-write")
    shopper, other = _browser(handle), _browser(handle)
    assert shopper.get("/_r/cart_add?item=tea").json == {"count": 1}
    read_only = _held_read_only(handle)

    # The connections say they are read-only before any statement: replaced, unused.
    assert shopper.get("/_r/cart_add?item=pot").json == {"count": 2}
    assert shopper.get("/_r/cart").json["cart"] == ["tea", "pot"]
    assert other.get("/_r/cart_add?item=cup").json == {"count": 1}
    assert not read_only & _backends(postgres_url, name)
