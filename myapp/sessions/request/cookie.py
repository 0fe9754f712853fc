"""The session cookie and the token it carries: a token made, signed, read from the
request, set on the response, or deleted.

A token is unguessable (:func:`new_token`); stores index the session by its hash
(:func:`storage_key`); the cookie carries the token signed (:class:`CookieSigner`). Its
name and attributes come from the options. Reading never raises: a cookie that cannot be
read is a verdict like a bad signature, and costs a fresh session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyramid.request import Request
    from pyramid.response import Response

    from ..options import SessionOptions

TOKEN_BYTES = 32  # 256 bits from the operating system's CSPRNG
_TOKEN_LENGTH = 43  # base64url of 32 bytes, unpadded
_SIGNATURE_LENGTH = 43
COOKIE_LENGTH = _TOKEN_LENGTH + 1 + _SIGNATURE_LENGTH
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_token() -> str:
    """A fresh, unguessable session token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def storage_key(token: str) -> str:
    """What stores index by: a hash, so a dump of the store hands out no live token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class CookieVerdict:
    """What a cookie value turned out to be: a token, or the reason it was refused."""

    token: str | None
    reason: str | None = None  # "absent", "malformed", "bad_signature"
    stale_secret: bool = False  # signed with an older secret still listed


class CookieSigner:
    """HMAC-SHA256 over the token. The first secret signs; every listed secret verifies."""

    def __init__(self, secrets_newest_first: tuple[bytes, ...]) -> None:
        if not secrets_newest_first:
            raise ValueError("at least one secret is needed")
        # Derive a purpose-bound key per secret so the same secret reused elsewhere
        # (CSRF, another app) never produces interchangeable signatures.
        # Each key's HMAC is set up once and copied per cookie: a one-shot
        # hmac.digest() looks the algorithm up again on every call (~2-9 us on
        # OpenSSL 3, against ~1 us for a copy).
        self._keys = tuple(
            hmac.new(
                hashlib.sha256(b"myapp.sessions.cookie\x00" + secret).digest(),
                digestmod=hashlib.sha256,
            )
            for secret in secrets_newest_first
        )

    def _sign(self, key: hmac.HMAC, token: str) -> str:
        mac = key.copy()
        mac.update(token.encode("ascii"))
        return _b64(mac.digest())

    def dumps(self, token: str) -> str:
        return f"{token}.{self._sign(self._keys[0], token)}"

    def loads(self, value: str | None) -> CookieVerdict:
        """Check a cookie value from the browser; never raises."""
        if not value:
            return CookieVerdict(None, "absent")
        if (
            len(value) != COOKIE_LENGTH
            or value[_TOKEN_LENGTH] != "."
            or not _ALPHABET.issuperset(value[:_TOKEN_LENGTH])
            or not _ALPHABET.issuperset(value[_TOKEN_LENGTH + 1 :])
        ):
            return CookieVerdict(None, "malformed")
        token, signature = value[:_TOKEN_LENGTH], value[_TOKEN_LENGTH + 1 :]
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(self._sign(key, token), signature):
                return CookieVerdict(token, None, stale_secret=index > 0)
        return CookieVerdict(None, "bad_signature")


def set_cookie(
    response: Response, options: SessionOptions, name: str, value: str, max_age: int | None = None
) -> None:
    """Set one of the package's cookies (the session's, the CSRF token's, the flash
    messages'), each with the attributes the options give them all; HttpOnly always."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=options.cookie_path,
        domain=options.cookie_domain,
        secure=options.cookie_secure,
        httponly=True,
        samesite=options.cookie_samesite,
    )


def delete_cookie(response: Response, options: SessionOptions, name: str) -> None:
    response.delete_cookie(name, path=options.cookie_path, domain=options.cookie_domain)


class SessionCookie:
    """One app's session cookie, as its options describe it."""

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self.signer = CookieSigner(options.secret_bytes)

    def read(self, request: Request) -> CookieVerdict:
        """The token the request's cookie carries, or why there is none."""
        try:
            raw = request.cookies.get(self.options.cookie_name)
        except UnicodeDecodeError:
            # WebOb decodes a backslash escape of a non-UTF-8 byte and raises: a
            # garbage Cookie header must cost a fresh session, not a 500.
            raw = "malformed"
        return self.signer.loads(raw)

    def set(self, response: Response, token: str, *, created: float, now: float) -> None:
        """Send ``token``, lasting as the options say (by default: until the
        session's absolute lifetime ends)."""
        options = self.options
        if options.cookie_max_age is None:
            max_age: int | None = max(1, int(created + options.max_lifetime - now))
        else:
            max_age = options.cookie_max_age or None  # 0: ends with the browser session
        set_cookie(response, options, options.cookie_name, self.signer.dumps(token), max_age)

    def delete(self, request: Request, response: Response) -> None:
        """Tell the browser to forget the cookie, if it sent one."""
        options = self.options
        if options.cookie_name in request.cookies:
            delete_cookie(response, options, options.cookie_name)
