"""What the internet may see of the operator surface: /healthz, /metrics, messages and logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pyramid.exceptions import ConfigurationError
from webtest import TestApp

import myapp
from tests.conftest import base_settings
from tests.support.ops import run, write_ini

OPERATOR_TOKEN = "Xo7Lq2Wm9Rz4Tb1Kc8Vn3Hj6Pd0Fs5Ga2Ye7Ui"
PASSWORD = "hunter2-not-for-your-eyes"
# Cannot be built (a Sentinel host without a port): its message quotes the URL.
LEAKY_REDIS_URL = f"redis+sentinel://:{PASSWORD}@127.0.0.1/mymaster"
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture
def leaky(make_app, caplog):
    caplog.set_level(logging.INFO)
    return make_app(
        "sql-postgres",
        **{
            "session.backends": "sql redis memory",
            "session.redis_url": LEAKY_REDIS_URL,
            "session.operator_token": OPERATOR_TOKEN,
        },
    )


def test_public_healthz_shows_only_status_and_store(leaky):
    health = TestApp(leaky.router, extra_environ=REMOTE).get("/healthz").json
    assert health == {"status": "ok", "session_backend": "sql"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {OPERATOR_TOKEN}"},
        {"Authorization": f"Bearer {OPERATOR_TOKEN[:-1]}"},
        {"Authorization": "Bearer \u00e9\u00e9"},
        {"X-Forwarded-For": "127.0.0.1"},
    ],
)
def test_metrics_refused_without_the_token_from_afar(leaky, headers):
    remote = TestApp(leaky.router, extra_environ=REMOTE)
    response = remote.get("/metrics", headers=headers, status=401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "myapp_sessions" not in response.text
    assert set(remote.get("/healthz", headers=headers).json) == {"status", "session_backend"}


def test_operator_token_or_loopback_sees_details_without_the_password(leaky, caplog):
    remote = TestApp(leaky.router, extra_environ=REMOTE)
    bearer = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    assert "myapp_session_store_active" in remote.get("/metrics", headers=bearer).text
    for health in (remote.get("/healthz", headers=bearer).json, leaky.app.get("/healthz").json):
        redis = next(store for store in health["stores"] if store["name"] == "redis")
        assert "cannot be built" in redis["cause"]
        assert "redis+sentinel://:***@127.0.0.1" in redis["cause"]
        assert PASSWORD not in str(health)
    assert "myapp_session_store_active" in leaky.app.get("/metrics").text  # loopback
    assert not any(PASSWORD in record.getMessage() for record in caplog.records)


def test_start_up_errors_do_not_quote_passwords():
    settings = base_settings(
        **{
            "sqlalchemy.url": f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:notaport/x",
            "session.backends": "memory",
        }
    )
    with pytest.raises(ConfigurationError) as raised:
        myapp.main({}, **settings)
    assert "sqlalchemy.url or another sqlalchemy.* setting cannot be used" in str(raised.value)
    assert PASSWORD not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__

    settings = base_settings(**{"sqlalchemy.url": "sqlite://", "session.backends": "redis"})
    settings["session.redis_url"] = LEAKY_REDIS_URL
    with pytest.raises(ConfigurationError) as raised:
        myapp.main({}, **settings)
    assert "redis+sentinel://:***@127.0.0.1" in str(raised.value)
    assert PASSWORD not in str(raised.value)


@pytest.mark.postgres
def test_cli_does_not_print_passwords(tmp_path: Path, postgres_url, redis_prefix):
    ini = write_ini(tmp_path, postgres_url, redis_prefix=redis_prefix)
    text = ini.read_text().replace(
        "session.redis_url = ", f"session.redis_url = {LEAKY_REDIS_URL}\n#"
    )
    ini.write_text(text)
    result = run("myapp-sessions", "check", ini)
    assert "redis+sentinel://:***@127.0.0.1" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr

    bad = write_ini(
        tmp_path, f"postgresql+psycopg://app:{PASSWORD}@h:x/db", redis_prefix="x:", name="bad.ini"
    )
    result = run("myapp-sessions", "check", bad)
    assert result.returncode == 2
    assert PASSWORD not in result.stdout + result.stderr


# A password given as a query parameter, on a port nothing listens on: every message
# about it quotes the URL.
QUERY_REDIS_URL = f"redis://127.0.0.1:1/0?password={PASSWORD}&socket_timeout=1"


def test_a_query_string_password_is_masked_in_healthz_and_the_start_up_warning(make_app, caplog):
    caplog.set_level(logging.INFO)
    handle = make_app(
        "sql-postgres",
        **{"session.backends": "sql redis memory", "session.redis_url": QUERY_REDIS_URL},
    )
    health = handle.app.get("/healthz").json  # loopback: the details
    assert any(store["name"] == "redis" and not store["ready"] for store in health["stores"])
    assert PASSWORD not in str(health)
    said = "\n".join(record.getMessage() for record in caplog.records)
    assert "password=***" in said
    assert PASSWORD not in said
    assert TestApp(handle.router, extra_environ=REMOTE).get("/healthz").status_int == 200


@pytest.mark.postgres
def test_cli_masks_a_query_string_password(tmp_path: Path, postgres_url, redis_prefix):
    ini = write_ini(tmp_path, postgres_url, redis_prefix=redis_prefix)
    text = ini.read_text().replace(
        "session.redis_url = ", f"session.redis_url = {QUERY_REDIS_URL}\n#"
    )
    ini.write_text(text)
    result = run("myapp-sessions", "check", ini)
    assert "password=***" in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr
