"""The session cookie: read from the request, set on the response, or deleted.

Its name and attributes come from the options; its value is the signed token
(``codec``). Reading never raises: a cookie that cannot be read is a verdict like a
bad signature, and costs a fresh session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .codec import CookieSigner, CookieVerdict

if TYPE_CHECKING:
    from pyramid.request import Request
    from pyramid.response import Response

    from .options import SessionOptions


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
