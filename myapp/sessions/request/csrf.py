"""CSRF tokens without a session for visitors who have none, in the session once there is one.

A visitor who only browses must not cost a stored session, yet every form they see
(sign-in, add to cart) needs a token. Until their session exists the token lives in a
cookie of its own (the "double submit cookie"); once the session begins it takes that
token over and keeps it, as Pyramid's ``SessionCSRFStoragePolicy`` does.
"""

from __future__ import annotations

import secrets

from pyramid.csrf import SessionCSRFStoragePolicy
from pyramid.interfaces import ICSRFStoragePolicy
from pyramid.request import Request
from pyramid.util import strings_differ
from zope.interface import implementer

from ..options import SessionOptions
from .cookie import set_cookie
from .flashcookie import flash_only

SESSION_TOKEN_KEY = "_csrft_"  # noqa: S105 - where SessionCSRFStoragePolicy keeps it
_ENVIRON_KEY = "myapp.sessions.csrf_cookie_token"
TOKEN_BYTES = 24
TOKEN_LENGTH = 32  # token_urlsafe(24)


def _well_formed(token: object) -> bool:
    return (
        isinstance(token, str)
        and len(token) == TOKEN_LENGTH
        and token.isascii()
        and all(c.isalnum() or c in "-_" for c in token)
    )


@implementer(ICSRFStoragePolicy)
class SessionOrCookieCSRFStoragePolicy:
    """The session's token when the session holds something; a cookie's otherwise."""

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self.cookie_name = f"{options.cookie_name}_csrf"
        self.in_session = SessionCSRFStoragePolicy(key=SESSION_TOKEN_KEY)

    def _without_session(self, request: Request) -> bool:
        session = request.session
        # One-off messages carried in a cookie are no stored session either.
        return session.new and session.user_id is None and (not session or flash_only(session))

    # -- the cookie side ---------------------------------------------------------
    def _cookie_token(self, request: Request) -> str | None:
        token = request.environ.get(_ENVIRON_KEY)
        if token is not None:
            return token
        try:
            token = request.cookies.get(self.cookie_name)
        except UnicodeDecodeError:  # a garbage Cookie header: no token, never a 500
            return None
        return token if _well_formed(token) else None

    def _new_cookie_token(self, request: Request) -> str:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        request.environ[_ENVIRON_KEY] = token
        options, name = self.options, self.cookie_name
        request.add_response_callback(
            lambda request, response: set_cookie(response, options, name, token)
        )
        return token

    # -- ICSRFStoragePolicy ------------------------------------------------------
    def new_csrf_token(self, request: Request) -> str:
        if self._without_session(request):
            return self._new_cookie_token(request)
        return self.in_session.new_csrf_token(request)

    def get_csrf_token(self, request: Request) -> str:
        if self._without_session(request):
            return self._cookie_token(request) or self._new_cookie_token(request)
        session = request.session
        if not _well_formed(session.get(SESSION_TOKEN_KEY)):
            # The session has just begun: it takes over the cookie's token, so forms
            # rendered before it began (another tab) still post.
            carried = self._cookie_token(request)
            if carried is not None:
                session[SESSION_TOKEN_KEY] = carried
                return carried
        return self.in_session.get_csrf_token(request)

    def check_csrf_token(self, request: Request, supplied_token: str) -> bool:
        expected = self.get_csrf_token(request)
        return not strings_differ(
            expected.encode("ascii", "backslashreplace"),
            supplied_token.encode("utf-8", "backslashreplace"),
        )
