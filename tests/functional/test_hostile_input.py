"""Arbitrary bytes in every form field and cookie: a 2xx, 3xx or 4xx, never a 5xx; and the
visitor's next requests still work."""

from __future__ import annotations

from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webob import Request
from webtest import TestApp

from tests.support.site import add_to_cart, cart_lines, csrf_token, flashes

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("site_users")]

FORMS = {
    "/signin": ("username", "password", "next"),
    "/cart/add": ("product", "quantity"),
    "/cart/update": ("product", "quantity"),
    "/cart/remove": ("product",),
    "/signout": (),
    "/account/sessions/end": ("key",),
    "/account/sessions/end-others": (),
}
COOKIES = ("session", "session_csrf", "signed_in", "x")
ADDRESS = {"REMOTE_ADDR": "192.0.2.91"}

# Random bytes, and for some fields values that reach deeper than a first check.
FIELD_VALUES = {
    "product": st.sampled_from([b"teapot", b"mug"]),
    "quantity": st.sampled_from(
        ["\u00b2".encode(), "\u0663".encode(), b"9" * 4301, b"1e9", b"-1", b"007", b"5"]
    ),
    "username": st.sampled_from([b"alice", b"ALICE\xc2\xa0"]),
    "next": st.sampled_from([b"/cart", b"//evil.example", b"/\xe3\x80\x80"]),
}


def field_bytes(name: str) -> st.SearchStrategy[bytes]:
    random = st.binary(max_size=64)
    return random | FIELD_VALUES[name] if name in FIELD_VALUES else random


# A Cookie header carries Latin-1 text without CR or LF (the server would split it).
cookie_bytes = st.sampled_from(["\\377", '"\\377"', "\u00ff"]) | st.binary(max_size=64).map(
    lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"").decode("latin-1")
)


@pytest.fixture(scope="module")
def site(postgres_url):
    import myapp
    from tests.conftest import base_settings

    router = myapp.main(
        {}, **base_settings(**{"sqlalchemy.url": postgres_url, "session.backends": "sql"})
    )
    yield router
    router.registry["dbengine"].dispose()


def _post(router, path: str, body: bytes, cookie: str) -> int:
    request = Request.blank(
        path,
        method="POST",
        body=body,
        content_type="application/x-www-form-urlencoded",
        environ={"HTTP_COOKIE": cookie, **ADDRESS},
    )
    return request.get_response(router).status_int


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(sorted(FORMS)),
    data=st.data(),
    cookies=st.dictionaries(st.sampled_from(COOKIES), cookie_bytes, max_size=4),
    with_token=st.booleans(),
)
def test_arbitrary_bytes_in_fields_and_cookies_never_get_a_5xx(
    site, path, data, cookies, with_token
):
    visitor = TestApp(site, extra_environ=ADDRESS)
    token = csrf_token(visitor.get("/signin"))
    pairs = [(name.encode(), data.draw(field_bytes(name), name)) for name in FORMS[path]]
    if with_token:
        pairs.append((b"csrf_token", token.encode()))
    body = "&".join(f"{quote_from_bytes(k)}={quote_from_bytes(v)}" for k, v in pairs).encode()
    jar = {"session_csrf": visitor.cookies.get("session_csrf", ""), **cookies}
    cookie = "; ".join(f"{name}={value}" for name, value in jar.items())
    assert _post(site, path, body, cookie) < 500
    # The same visitor, and another, carry on.
    assert visitor.get("/cart").status_int == 200
    assert TestApp(site, extra_environ=ADDRESS).get("/").status_int == 200


@pytest.mark.parametrize("quantity", ["\u00b2", "\u0663", "9" * 4301, "1000", "0012", " "])
@pytest.mark.parametrize("path", ["/cart/add", "/cart/update"])
def test_a_quantity_that_is_not_one_to_three_digits_gets_a_message(make_app, path, quantity):
    handle = make_app("memory")
    add_to_cart(handle.app, "teapot")
    token = csrf_token(handle.app.get("/cart"))
    page = handle.app.post(
        path, {"csrf_token": token, "product": "teapot", "quantity": quantity}
    ).follow()
    assert any("quantity" in message for message in flashes(page))
    assert cart_lines(handle.app.get("/cart")) == {"teapot": 1}


@pytest.mark.parametrize("quantity", ["3", " 3 ", "003"])
def test_one_to_three_ascii_digits_are_a_quantity(make_app, quantity):
    handle = make_app("memory")
    token = csrf_token(handle.app.get("/"))
    handle.app.post("/cart/add", {"csrf_token": token, "product": "teapot", "quantity": quantity})
    assert cart_lines(handle.app.get("/cart")) == {"teapot": 3}


@pytest.mark.parametrize("cookie", [r"x=\377", r'x="\377"', 'x="\u00ff"'])
def test_an_undecodable_cookie_is_ignored_not_refused(make_app, cookie):
    handle = make_app("sql-postgres")
    visitor = handle.app
    add_to_cart(visitor, "teapot")
    session = visitor.cookies["session"]
    for path in ("/", "/cart", "/signin"):
        response = visitor.get(path, headers={"Cookie": f"session={session}; {cookie}"})
        assert response.status_int == 200
    # The good cookie beside it still counts: the cart is there.
    page = visitor.get("/cart", headers={"Cookie": f"{cookie}; session={session}"})
    assert cart_lines(page) == {"teapot": 1}
    # Alone, it is no cookie at all: a fresh session.
    stranger = TestApp(handle.router)
    assert cart_lines(stranger.get("/cart", headers={"Cookie": cookie})) == {}
