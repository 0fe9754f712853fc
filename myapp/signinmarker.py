"""Telling a browser why it is no longer signed in.

A browser whose session was ended elsewhere ("Your sessions" on another device,
``myapp-sessions end-user``) cannot be told at that moment. So signing in also sets a
small signed cookie saying when this browser signed in and when it was last seen
signed in; signing out here deletes it. A later request that carries the cookie but
no signed-in session lost its sign-in somewhere else: it is told so once, and the
cookie goes. The cookie holds two times, signed by webob's ``SignedSerializer`` under
the session secrets (the newest signs, every listed one verifies): nothing secret, no
session token. Markers in the format before it (``signed_in.seen.signature``) are still
read, and replaced as they are refreshed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import time
from dataclasses import dataclass

from pyramid.request import Request
from pyramid.response import Response

from myapp.sessions import get_options
from myapp.sessions.options import SessionOptions
from myapp.sessions.stores.authenticator import Signatures

COOKIE_NAME = "signed_in"
ENDED_ELSEWHERE = "You were signed out from another device."
EXPIRED = "You were signed out after a while without activity. Please sign in again."
SIGNED_OUT = "You were signed out. Please sign in again."


@dataclass(frozen=True, slots=True)
class Marker:
    signed_in: int
    seen: int


# Purpose-bound: the session secret reused here never signs a session cookie.
_SALT = b"myapp.signin-marker\x00"


@functools.lru_cache(maxsize=8)
def _signatures(secrets_newest_first: tuple[bytes, ...]) -> Signatures:
    return Signatures(secrets_newest_first, _SALT)


def dumps(marker: Marker, options: SessionOptions) -> str:
    return _signatures(options.secret_bytes).dumps([marker.signed_in, marker.seen])


def loads(value: str | None, options: SessionOptions) -> Marker | None:
    """The marker a cookie value holds, or None when it is absent, garbled or forged."""
    if not value:
        return None
    if value.count(".") == 2:
        return _legacy(value, options)
    try:
        times, _ = _signatures(options.secret_bytes).loads(value)
    except ValueError:
        return None
    if not (
        isinstance(times, list)
        and len(times) == 2
        and all(type(t) is int and t >= 0 for t in times)
    ):
        return None
    return Marker(*times)


def _legacy(value: str, options: SessionOptions) -> Marker | None:
    """A marker in the format before webob's serializer: ``signed_in.seen.signature``."""
    signed_in, seen, signature = value.split(".")
    if not (signed_in.isdigit() and seen.isdigit()):
        return None
    payload = f"{signed_in}.{seen}".encode("ascii")
    for secret in options.secret_bytes:
        key = hashlib.sha256(_SALT + secret).digest()
        mac = hmac.new(key, payload, hashlib.sha256).digest()
        if hmac.compare_digest(base64.urlsafe_b64encode(mac).rstrip(b"=").decode(), signature):
            return Marker(int(signed_in), int(seen))
    return None


def why_signed_out(marker: Marker, now: float, options: SessionOptions, degraded: bool) -> str:
    """What to tell a browser that carried ``marker`` but is no longer signed in."""
    if degraded:
        return SIGNED_OUT  # a fallback store may have lost the session: we cannot tell
    # The marker is refreshed as often as the session is touched, so it lags the
    # session's last activity by at most reissue_time.
    idle_limit = options.timeout - options.reissue_time
    if now - marker.seen >= idle_limit or now - marker.signed_in >= options.max_lifetime:
        return EXPIRED
    return ENDED_ELSEWHERE


def _set(request: Request, marker: Marker) -> None:
    options = get_options(request.registry)
    value = dumps(marker, options)

    def callback(request: Request, response: Response) -> None:
        response.set_cookie(
            COOKIE_NAME, value, max_age=options.max_lifetime, **options.cookie_attributes
        )

    request.add_response_callback(callback)


def remember_sign_in(request: Request) -> None:
    """Call on signing in."""
    now = int(time.time())
    _set(request, Marker(now, now))


def forget_sign_in(request: Request) -> None:
    """Call on signing out here: this browser knows why it is signed out."""
    if COOKIE_NAME not in request.cookies:
        return
    options = get_options(request.registry)

    def callback(request: Request, response: Response) -> None:
        response.delete_cookie(COOKIE_NAME, path=options.cookie_path, domain=options.cookie_domain)

    request.add_response_callback(callback)


def check(request: Request, *, signed_in: bool) -> None:
    """Keep the marker of a signed-in browser fresh; explain a lost sign-in once."""
    raw = request.cookies.get(COOKIE_NAME)
    if raw is None and not signed_in:
        return
    options = get_options(request.registry)
    marker = loads(raw, options)
    now = int(time.time())
    if signed_in:
        if marker is None:
            _set(request, Marker(now, now))
        elif now - marker.seen >= options.reissue_time:
            _set(request, Marker(marker.signed_in, now))
        return
    if marker is not None:
        request.session.flash(why_signed_out(marker, now, options, request.sessions_degraded))
    forget_sign_in(request)
