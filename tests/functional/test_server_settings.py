"""The waitress settings of both ini files, served for real: body cap, trusted proxy."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from plaster import get_settings
from webtest.http import StopableWSGIServer

import myapp
from myapp.sessions import get_chain
from tests.conftest import base_settings
from tests.support.databases import REPO

pytestmark = pytest.mark.usefixtures("site_users")


def server_settings(ini: str) -> dict[str, str]:
    """Waitress's own settings of ``ini`` (``shutdown_grace`` is our runner's)."""
    settings = dict(get_settings(str(REPO / ini), "server:main"))
    for key in ("use", "listen", "__file__", "here", "shutdown_grace"):
        settings.pop(key, None)
    return settings


@contextmanager
def serving(ini: str, **app_settings: str) -> Iterator[int]:
    """The app on a free loopback port, with ``ini``'s waitress settings."""
    router = myapp.main({}, **base_settings(**{"session.backends": "memory", **app_settings}))
    server = StopableWSGIServer(router, host="127.0.0.1", port=0, **server_settings(ini))
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    try:
        yield server.effective_port
    finally:
        server.shutdown()
        runner.join(timeout=5)
        get_chain(router.registry).close()
        router.registry["dbengine"].dispose()


def request(port: int, method: str, path: str, body: bytes | None = None, **headers: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except (ConnectionResetError, BrokenPipeError):
        return None, ""  # the server may close while a refused body is still being sent
    finally:
        conn.close()


@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_both_ini_files_cap_request_bodies_at_one_mebibyte(ini, postgres_url):
    assert server_settings(ini)["max_request_body_size"] == "1048576"
    with serving(ini, **{"sqlalchemy.url": postgres_url}) as port:
        big = b"username=alice&password=" + b"x" * (2 * 1024 * 1024)
        status, _ = request(
            port, "POST", "/signin", big, **{"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status in (413, None), status  # None: waitress closed while the body was sent
        status, _ = request(
            port,
            "POST",
            "/signin",
            b"x" * 10,
            **{"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 400  # a small body reaches the app (and its CSRF check)


def test_production_trusts_the_local_proxy_for_scheme_host_and_client(postgres_url):
    settings = server_settings("production.ini")
    assert settings["trusted_proxy"] == "127.0.0.1"
    assert "x-forwarded-proto" in settings["trusted_proxy_headers"]
    app_settings = {
        "sqlalchemy.url": postgres_url,
        "myapp.allowed_hosts": "shop.example.org",
        "session.operator_token": "",
    }
    with serving("production.ini", **app_settings) as port:
        forwarded = {
            "Host": "127.0.0.1",
            "X-Forwarded-For": "203.0.113.5",
            "X-Forwarded-Host": "shop.example.org",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Port": "443",
        }
        status, page = request(port, "GET", "/signin", **forwarded)
        assert status == 200
        assert 'action="https://shop.example.org/signin"' in page
        assert request(port, "GET", "/metrics", **forwarded)[0] == 401  # the client is remote
        evil = {**forwarded, "X-Forwarded-Host": "evil.example"}
        assert request(port, "GET", "/signin", **evil)[0] == 400
        # The operator on this host, without the proxy: a loopback client.
        assert request(port, "GET", "/metrics", Host="shop.example.org")[0] == 200
