"""The session cookie on its own: read in, set and deleted on the way out."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response

from myapp.sessions.options import SessionOptions
from myapp.sessions.request.factory import SessionCookie, new_token

SECRET = "k3Yq8vP1zR7mW2nX5cT9bL4hJ6dF0sGa"


def _cookie(**options) -> SessionCookie:
    return SessionCookie(SessionOptions(secrets=(SECRET,), **options))


def _set_cookie_header(response: Response) -> str:
    (header,) = response.headers.getall("Set-Cookie")
    return header


def test_a_signed_token_reads_back():
    cookie, token = _cookie(), new_token()
    request = Request.blank("/", headers={"Cookie": f"session={cookie.signer.dumps(token)}"})
    assert cookie.read(request).token == token


def test_no_cookie_and_an_undecodable_one_are_verdicts_not_errors():
    cookie = _cookie()
    assert cookie.read(Request.blank("/")).reason == "absent"
    garbage = Request.blank("/", headers={"Cookie": 'session="\\377\\376"'})
    verdict = cookie.read(garbage)
    assert verdict.token is None and verdict.reason == "malformed"


def test_by_default_the_cookie_lasts_until_the_absolute_lifetime_ends():
    response = Response()
    _cookie(max_lifetime=1000).set(response, new_token(), created=5000.0, now=5400.0)
    header = _set_cookie_header(response)
    assert "Max-Age=600" in header
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header


def test_a_browser_session_cookie_has_no_max_age_and_a_fixed_one_its_own():
    response = Response()
    _cookie(cookie_max_age=0).set(response, new_token(), created=0.0, now=0.0)
    assert "Max-Age" not in _set_cookie_header(response)
    response = Response()
    _cookie(cookie_max_age=3600, cookie_secure=True).set(response, "t", created=0.0, now=0.0)
    header = _set_cookie_header(response)
    assert "Max-Age=3600" in header and "secure" in header.lower()


def test_delete_only_tells_a_browser_that_sent_the_cookie():
    cookie = _cookie()
    response = Response()
    cookie.delete(Request.blank("/"), response)
    assert not response.headers.getall("Set-Cookie")
    cookie.delete(Request.blank("/", headers={"Cookie": "session=x"}), response)
    assert "Max-Age=0" in _set_cookie_header(response)
