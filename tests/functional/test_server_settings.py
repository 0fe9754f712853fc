"""The waitress settings of both ini files, served for real: body cap, trusted proxy."""

from __future__ import annotations

import http.client
import socket
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


def test_production_sets_the_connection_limit_and_an_idle_timeout():
    settings = server_settings("production.ini")
    assert int(settings["connection_limit"]) >= 500
    assert int(settings["channel_timeout"]) <= 60
    assert settings["asyncore_use_poll"] == "true"


@pytest.mark.slow
def test_150_idle_half_sent_requests_leave_room_for_a_page(postgres_url):
    with serving("production.ini", **{"sqlalchemy.url": postgres_url}) as port:
        idle = []
        try:
            for _ in range(150):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                idle.append(sock)
            status, page = request(port, "GET", "/", Host="localhost")
            assert status == 200 and "<html" in page
            # Another client, and the same one again, still get theirs.
            assert request(port, "GET", "/cart", Host="localhost")[0] == 200
            assert request(port, "GET", "/", Host="localhost")[0] == 200
        finally:
            for sock in idle:
                sock.close()


BENT_HOSTS = ["localhost:@evil.example", "localhost:80@evil.example", "localhost:{port}/evil"]


@pytest.mark.parametrize("bent", BENT_HOSTS)
def test_a_bent_host_is_refused_directly_and_through_the_proxy(postgres_url, bent):
    app_settings = {"sqlalchemy.url": postgres_url, "myapp.allowed_hosts": "localhost"}
    with serving("production.ini", **app_settings) as port:
        host = bent.format(port=port)
        status, page = request(port, "GET", "/signin", Host=host)
        assert status == 400 and "evil" not in page
        forwarded = {"Host": "localhost", "X-Forwarded-Host": host, "X-Forwarded-Proto": "https"}
        status, page = request(port, "GET", "/signin", **forwarded)
        assert status == 400 and "evil" not in page
        # The next requests, straight or through the proxy, are answered.
        assert request(port, "GET", "/signin", Host=f"localhost:{port}")[0] == 200
        good = {**forwarded, "X-Forwarded-Host": "localhost"}
        status, page = request(port, "GET", "/signin", **good)
        assert status == 200 and 'action="https://localhost/signin"' in page
