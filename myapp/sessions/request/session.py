"""The session a view sees: a dict of JSON values plus Pyramid's ISession API, the JSON
it is kept as (only JSON every store can keep, PostgreSQL's jsonb included), and its
CSRF token. No I/O here.

A visitor who only browses must not cost a stored session, yet every form they see
(sign-in, add to cart) needs a CSRF token. Until their session exists the token lives in
a cookie of its own (the "double submit cookie"); once the session begins it takes that
token over and keeps it, as Pyramid's ``SessionCSRFStoragePolicy`` does.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from pyramid.csrf import SessionCSRFStoragePolicy
from pyramid.interfaces import ICSRFStoragePolicy, ISession
from pyramid.request import Request
from pyramid.util import strings_differ
from zope.interface import implementer

from ..exceptions import SessionTooLarge
from ..options import SessionOptions

MAX_DEPTH = 32

_encoder = json.JSONEncoder(
    allow_nan=False, ensure_ascii=False, check_circular=False, separators=(",", ":")
)
_decoder = json.JSONDecoder()


def check_value(key: object, value: Any) -> None:
    """Raise TypeError/ValueError naming ``key`` unless ``value`` round-trips exactly.

    Accepted: dict with str keys, list, str, int, finite float, bool, None. Strings
    must not hold NUL or lone surrogates (jsonb refuses both at commit).
    """
    if not isinstance(key, str):
        raise TypeError(f"session keys must be str, not {type(key).__name__}: {key!r}")
    _check_string(key, key)
    _check(key, value, 0)


def _check(key: str, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"session[{key!r}]: nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return
    if kind is str:
        _check_string(key, value)
    elif kind is float:
        if not math.isfinite(value):
            raise ValueError(f"session[{key!r}]: {value!r} is not valid JSON (NaN/Infinity)")
    elif kind is list:
        for item in value:
            _check(key, item, depth + 1)
    elif kind is dict:
        for name, item in value.items():
            if type(name) is not str:
                raise TypeError(
                    f"session[{key!r}]: dict keys must be str, not {type(name).__name__} ({name!r})"
                )
            _check_string(key, name)
            _check(key, item, depth + 1)
    else:
        raise TypeError(
            f"session[{key!r}]: {kind.__name__} is not JSON; store only dict, list, str, "
            "int, float, bool or None"
        )


def _check_string(key: str, text: str) -> None:
    if "\x00" in text:
        raise ValueError(f"session[{key!r}]: strings must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"session[{key!r}]: string holds a lone surrogate") from None


def dumps(data: dict[str, Any]) -> str:
    """Compact JSON text of a session dict (values are checked when set)."""
    return _encoder.encode(data)


def dumps_checked(data: dict[str, Any], max_size: int) -> str:
    """Like :func:`dumps`, but re-checks every value and enforces ``max_size`` bytes.

    Nested values can be changed in place without going through ``__setitem__``,
    so the final text is checked once more before it is stored.
    """
    for key, value in data.items():
        check_value(key, value)
    text = dumps(data)
    size = len(text.encode("utf-8"))
    if size > max_size:
        raise SessionTooLarge(
            f"the session is {size} bytes of JSON, more than session.max_size ({max_size}); "
            "keep large data in the database and only its id in the session"
        )
    return text


def loads(text: str) -> dict[str, Any]:
    """Parse stored JSON text; anything but a JSON object raises ValueError."""
    data = _decoder.decode(text)
    if type(data) is not dict:
        raise ValueError("stored session data is not a JSON object")
    return data


_MISSING = object()
#: The keys of flash message queues start with it (Pyramid's own sessions name them so).
FLASH_PREFIX = "_f_"


def flash_only(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` holds flash queues and nothing else (and holds something)."""
    return bool(data) and all(key.startswith(FLASH_PREFIX) for key in data)


@implementer(ISession)
class Session(dict):
    """A dict whose values are checked the moment they are set.

    ``new`` is true until the session has been stored once; ``created`` is the
    epoch second it began. What happens at the end of the request (store, touch,
    delete, cookie) is decided by the factory from the flags kept here.
    """

    __slots__ = ("created", "explicitly_changed", "invalidated", "new", "rotated", "user_id")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        created: float,
        new: bool,
        user_id: str | None = None,
    ) -> None:
        super().__init__(data or {})
        self.created = created
        self.new = new
        self.user_id = user_id
        self.explicitly_changed = False
        self.invalidated = False
        self.rotated = False

    # -- ISession ---------------------------------------------------------
    def changed(self) -> None:
        """Mark the session for saving (also detected without this call)."""
        self.explicitly_changed = True

    def invalidate(self) -> None:
        """Empty the session and end it on the server; later writes start a new one."""
        super().clear()
        self.invalidated = True
        self.explicitly_changed = True
        self.user_id = None

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        storage = self.setdefault(FLASH_PREFIX + queue, [])
        check_value(FLASH_PREFIX + queue, msg)
        if allow_duplicate or msg not in storage:
            storage.append(msg)
            self.explicitly_changed = True

    def pop_flash(self, queue: str = "") -> list[Any]:
        messages = super().pop(FLASH_PREFIX + queue, [])
        if messages:
            self.explicitly_changed = True
        return messages

    def peek_flash(self, queue: str = "") -> list[Any]:
        return list(self.get(FLASH_PREFIX + queue, []))

    # -- beyond ISession --------------------------------------------------
    def rotate(self) -> None:
        """Give the session a new id, keeping its data: call it on sign-in (fixation)."""
        self.rotated = True
        self.explicitly_changed = True

    def set_user(self, user_id: str | None) -> None:
        """Tie the session to a user (so all of a user's sessions can be ended), and rotate."""
        self.user_id = None if user_id is None else str(user_id)
        self.rotate()

    # -- dict methods that set values check them first ----------------------
    def __setitem__(self, key: str, value: Any) -> None:
        check_value(key, value)
        super().__setitem__(key, value)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            check_value(key, default)
        return super().setdefault(key, default)

    def update(self, other: Iterable[Any] | Mapping[str, Any] = (), /, **kwargs: Any) -> None:
        pending = dict(other, **kwargs)
        for key, value in pending.items():
            check_value(key, value)
        super().update(pending)

    def __repr__(self) -> str:
        # Never print session contents (they end up in logs and tracebacks).
        return f"<Session keys={sorted(self)!r} new={self.new}>"

    __hash__ = None  # type: ignore[assignment]

    # A session is not copyable into a plain value by accident.
    def copy(self) -> dict[str, Any]:
        return dict(self)

    def __reduce__(self):  # pragma: no cover - sessions are never pickled
        raise TypeError("sessions are stored as JSON, never pickled")


SESSION_TOKEN_KEY = "_csrft_"  # noqa: S105 - where SessionCSRFStoragePolicy keeps it
_ENVIRON_KEY = "myapp.sessions.csrf_cookie_token"
CSRF_TOKEN_BYTES = 24
CSRF_TOKEN_LENGTH = 32  # token_urlsafe(24)


def _well_formed(token: object) -> bool:
    return (
        isinstance(token, str)
        and len(token) == CSRF_TOKEN_LENGTH
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
        token = secrets.token_urlsafe(CSRF_TOKEN_BYTES)
        request.environ[_ENVIRON_KEY] = token
        options, name = self.options, self.cookie_name
        request.add_response_callback(
            lambda request, response: response.set_cookie(name, token, **options.cookie_attributes)
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
