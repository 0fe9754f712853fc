"""Host headers read as RFC 3986 hosts, URLs from the public origin, and forms posted from
another origin refused over plain HTTP too (login CSRF with a planted token)."""

from __future__ import annotations

import pytest
from plaster import get_settings
from pyramid.exceptions import ConfigurationError
from webob import Request
from webtest import TestApp

from myapp.hosts import parse_host
from myapp.settings import SiteSettings
from tests.support.databases import REPO
from tests.support.site import USERS, csrf_token, signed_in_as

pytestmark = pytest.mark.usefixtures("site_users")


@pytest.mark.parametrize(
    "host",
    [
        "localhost:@evil.example",
        "localhost:80@evil.example",
        "localhost:6543/evil",
        "localhost:6543?x",
        "localhost:99999",
        "local host",
        "localhost\\evil",
    ],
)
@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_a_bent_host_is_refused_by_both_ini_files(make_app, ini, host):
    allowed = get_settings(str(REPO / ini), "app:main")["myapp.allowed_hosts"]
    handle = make_app("memory", **{"myapp.allowed_hosts": allowed})
    response = Request.blank("/signin", environ={"HTTP_HOST": host}).get_response(handle.router)
    assert response.status_int == 400
    assert "evil" not in response.text
    # The next requests, with a proper host, are answered.
    for good in ("localhost", "localhost:6543", "127.0.0.1:6543"):
        assert handle.app.get("/signin", headers={"Host": good}).status_int == 200


def test_development_ini_answers_local_names_only(make_app):
    allowed = get_settings(str(REPO / "development.ini"), "app:main")["myapp.allowed_hosts"]
    handle = make_app("memory", **{"myapp.allowed_hosts": allowed})
    for host in ("localhost:6543", "127.0.0.1:6543", "[::1]:6543"):
        assert handle.app.get("/", headers={"Host": host}).status_int == 200
    response = Request.blank("/", environ={"HTTP_HOST": "evil.example"}).get_response(handle.router)
    assert response.status_int == 400


def test_host_parsing_takes_hosts_and_ports_only():
    assert parse_host("Shop.Example.org.:8443") == ("shop.example.org", 8443)
    assert parse_host("[::1]:6543") == ("[::1]", 6543)
    assert parse_host("localhost:") == ("localhost", None)
    for bent in ("a@b", "a:b", "a:1:2", "[::1", "a/b", "\u00e9", "a b", "x" * 300):
        assert parse_host(bent) is None


def test_urls_are_built_from_the_public_origin(make_app):
    handle = make_app(
        "memory",
        **{
            "myapp.allowed_hosts": "localhost shop.example.org",
            "myapp.public_origin": "https://shop.example.org",
        },
    )
    page = handle.app.get("/signin", headers={"Host": "localhost:6543"})
    assert 'action="https://shop.example.org/signin"' in page.text
    redirect = handle.app.get("/account/sessions", headers={"Host": "localhost"})
    assert redirect.location.startswith("https://shop.example.org/signin")


@pytest.mark.parametrize(
    ("origin", "problem"),
    [
        ("shop.example.org", "is not an origin"),
        ("https://shop.example.org/path", "is not an origin"),
        ("https://user@shop.example.org", "is not an origin"),
        ("https://elsewhere.example", "not in myapp.allowed_hosts"),
    ],
)
def test_a_bad_public_origin_is_a_start_up_error(origin, problem):
    settings = {"myapp.allowed_hosts": "shop.example.org", "myapp.public_origin": origin}
    with pytest.raises(ConfigurationError, match=f"myapp.public_origin: .*{problem}"):
        SiteSettings.from_settings(settings)


def test_production_ini_builds_urls_from_its_public_origin():
    settings = get_settings(str(REPO / "production.ini"), "app:main")
    site = SiteSettings.from_settings(settings)
    assert site.public_origin is not None and site.public_origin.scheme == "https"


# -- forms posted from another origin, over plain HTTP ------------------------------


def _planted_login(app: TestApp, **headers: str):
    """An attacker's page that posts the attacker's own credentials with a CSRF token
    it planted in the victim's browser (a cookie set over plain HTTP)."""
    token = csrf_token(TestApp(app.app).get("/signin"))
    app.set_cookie("session_csrf", token)
    return app.post(
        "/signin",
        {"csrf_token": token, "username": "alice", "password": USERS["alice"]},
        headers=headers,
        expect_errors=True,
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/login-csrf.html"},
        {"Origin": "http://localhost:1"},
        {"Origin": "https://localhost"},
    ],
)
def test_login_csrf_from_another_origin_is_refused_over_http(make_app, headers):
    handle = make_app("memory")
    victim = TestApp(handle.router, extra_environ={"HTTP_HOST": "localhost"})
    response = _planted_login(victim, **headers)
    assert response.status_int == 403
    assert signed_in_as(victim.get("/")) is None
    # The same browser's own form, and another visitor's, still work.
    token = csrf_token(victim.get("/signin"))
    page = victim.post(
        "/signin",
        {"csrf_token": token, "username": "alice", "password": USERS["alice"]},
        headers={"Origin": "http://localhost"},
    ).follow()
    assert signed_in_as(page) == "alice"
    assert TestApp(handle.router).get("/").status_int == 200


def test_a_post_from_the_same_origin_or_naming_none_is_left_to_the_token(make_app):
    handle = make_app("memory")
    visitor = TestApp(handle.router, extra_environ={"HTTP_HOST": "localhost:6543"})
    token = csrf_token(visitor.get("/"))
    for headers in ({"Referer": "http://localhost:6543/cart"}, {}):
        response = visitor.post(
            "/cart/add", {"csrf_token": token, "product": "teapot"}, headers=headers
        )
        assert response.status_int == 303
