"""/metrics, /healthz and the logs: what operators see, and what they must never see."""

from __future__ import annotations

import logging
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from myapp.metrics import OBSERVER_KEY, get_metrics_registry
from tests.conftest import SECRET
from tests.support.cookies import token_of
from tests.support.databases import REPO
from tests.support.site import USERS, add_to_cart, post_form, sign_in

COOKIE = "session"


def samples(handle) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = handle.app.get("/metrics")
    assert response.content_type == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(metrics, name: str, **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


def test_metrics_count_session_events(app):
    app.app.get("/_t/write?value=a")  # creates a session
    app.app.get("/_t/write?value=b")  # loads and saves it
    app.app.get("/_t/read", headers={"Cookie": f"{COOKIE}=garbage"})
    app.app.get("/_t/invalidate")
    store = app.store.name
    metrics = samples(app)
    assert value(metrics, "myapp_sessions_created_total", store=store) == 1
    assert value(metrics, "myapp_sessions_saved_total", store=store) == 1
    assert value(metrics, "myapp_sessions_loaded_total", store=store) == 2
    assert value(metrics, "myapp_sessions_invalidated_total", store=store) == 1
    assert value(metrics, "myapp_session_bad_cookies_total", reason="malformed") == 1
    assert value(metrics, "myapp_session_store_active", store=store) == 1
    assert (
        value(metrics, "myapp_session_store_latency_seconds_count", store=store, operation="load")
        == 2
    )


@pytest.mark.postgres
def test_metrics_report_the_health_of_the_session_table(make_app):
    handle = make_app("sql-postgres")
    handle.app.get("/_t/write?value=a")
    metrics = samples(handle)
    assert value(metrics, "myapp_user_sessions_live_rows") is not None
    assert value(metrics, "myapp_user_sessions_bytes", part="table") > 0
    assert value(metrics, "myapp_user_sessions_bytes", part="indexes") > 0
    assert value(metrics, "myapp_user_sessions_needs_attention") in (0.0, 1.0)
    # The same gauges again on the next scrape, and the site still serves.
    assert value(samples(handle), "myapp_user_sessions_bytes", part="toast") is not None
    handle.app.get("/_t/write?value=b")


def test_each_app_has_its_own_registry(make_app):
    first, second = make_app("memory"), make_app("memory")
    first.app.get("/_t/write")
    assert value(samples(first), "myapp_sessions_created_total", store="memory") == 1
    assert value(samples(second), "myapp_sessions_created_total", store="memory") is None


def test_every_observer_event_has_a_metric(make_app):
    handle = make_app("memory")
    observer = handle.registry[OBSERVER_KEY]
    observer.store_error("redis", "timeout")
    observer.store_error("redis", "timeout")
    observer.session_conflict("sql", True)
    observer.session_touched("memory")
    observer.fallback("sql", "redis", "down")
    observer.recovered("redis", "sql")
    observer.purged("sql", 1234)
    metrics = samples(handle)
    assert value(metrics, "myapp_session_store_errors_total", store="redis", kind="timeout") == 2
    assert value(metrics, "myapp_session_conflicts_total", store="sql", gone="true") == 1
    assert value(metrics, "myapp_sessions_touched_total", store="memory") == 1
    assert value(metrics, "myapp_session_fallbacks_total", from_store="sql", to_store="redis") == 1
    assert value(metrics, "myapp_session_recoveries_total", from_store="redis", to_store="sql") == 1
    assert value(metrics, "myapp_sessions_purged_total", store="sql") == 1234


@pytest.mark.postgres
@pytest.mark.redis
def test_starting_with_the_database_down_is_reported(make_app, closed_port_url, caplog):
    caplog.set_level(logging.INFO, logger="myapp.sessions")
    handle = make_app(
        "redis", **{"sqlalchemy.url": closed_port_url, "session.backends": "sql redis memory"}
    )
    health = handle.app.get("/healthz").json
    assert health["status"] == "degraded"
    assert health["session_backend"] == "redis"
    assert health["session_backend_shared"] is True
    assert health["configured_backends"] == ["sql", "redis", "memory"]
    assert health["seconds_since_fallback"] is not None
    sql_state = health["stores"][0]
    assert sql_state["name"] == "sql" and sql_state["ready"] is False
    assert "cannot connect to the database" in sql_state["cause"]
    assert health["stores"][1]["ready"] is True

    metrics = samples(handle)  # served, without the user_sessions gauges it cannot read
    assert value(metrics, "myapp_user_sessions_dead_rows") is None
    assert value(metrics, "myapp_session_store_active", store="redis") == 1
    assert value(metrics, "myapp_session_store_active", store="sql") == 0
    assert value(metrics, "myapp_session_store_active", store="memory") == 0
    assert value(metrics, "myapp_session_fallbacks_total", from_store="none", to_store="redis") == 1

    # One line names the serving store and why the one before it was skipped.
    messages = [r.getMessage() for r in caplog.records if r.name == "myapp.sessions.chain"]
    serving = [m for m in messages if m.startswith("sessions are served by")]
    assert len(serving) == 1
    assert "'redis', a FALLBACK" in serving[0]
    assert "sql: cannot connect to the database" in serving[0]


def test_healthz_when_the_first_store_serves(make_app, caplog):
    caplog.set_level(logging.INFO, logger="myapp.sessions")
    handle = make_app("sql-postgres")
    health = handle.app.get("/healthz").json
    assert health["status"] == "ok"
    assert health["session_backend"] == "sql"
    assert health["seconds_since_fallback"] is None
    messages = [r.getMessage() for r in caplog.records if r.name == "myapp.sessions.chain"]
    assert "sessions are served by 'sql', the first configured store" in messages


@pytest.mark.usefixtures("site_users")
@pytest.mark.parametrize("backend", ["sql-postgres", "redis"])
def test_logs_never_hold_a_token_a_secret_or_session_data(make_app, backend, caplog):
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy's statement log (INFO) too; its DEBUG level prints result rows by design.
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    handle = make_app(backend)
    browser = handle.app
    seen_cookies: set[str] = set()

    def remember() -> None:
        if COOKIE in browser.cookies:
            seen_cookies.add(browser.cookies[COOKIE])

    browser.get("/")
    remember()
    add_to_cart(browser, "green-tea", 7)
    remember()
    sign_in(browser)
    remember()
    post_form(browser, "/cart", "/cart/update", product="green-tea", quantity=9)
    remember()
    browser.get("/account/sessions")
    browser.get("/_t/read", headers={"Cookie": f"{COOKIE}=forged-value"})
    post_form(browser, "/", "/signout")
    remember()

    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "sqlalchemy.engine" in logged or backend == "redis"  # statements were captured
    assert len(seen_cookies) >= 3
    for cookie in seen_cookies:
        token = token_of(cookie)
        assert token not in logged
        assert cookie not in logged
    assert SECRET not in logged
    assert USERS["alice"] not in logged
    for fragment in ("green-tea", '"cart"', "forged-value"):
        assert fragment not in logged, fragment
    assert not re.search(r"argon2id\$", logged)


def test_every_metric_is_in_the_operator_guide(make_app):
    guide = (REPO / "docs" / "operations.md").read_text()
    handle = make_app("memory")
    names = {family.name for family in get_metrics_registry(handle.registry).collect()}
    assert names
    missing = sorted(
        name for name in names if f"`{name}`" not in guide and f"`{name}_total`" not in guide
    )
    assert missing == []
