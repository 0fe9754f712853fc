"""One-off messages of a visitor who has no stored session, carried in a signed cookie.

A failed sign-in, a page that needs signing in, signing out without a session: each
says something once ("Wrong username or password.") to a visitor the server keeps
nothing for. Storing a session row for that would let anyone grow the table with
anonymous requests. So a new session that holds flash messages only is not stored: its
messages travel in the ``<cookie_name>_flash`` cookie (signed as the session cookie is,
by webob's ``SignedSerializer`` under the session secrets; short-lived, at most
MAX_LENGTH characters) and come back into the session on the next request, where
``pop_flash`` finds them as usual. A message set that does not fit is stored as a
session after all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .session import FLASH_PREFIX

if TYPE_CHECKING:
    from pyramid.request import Request
    from pyramid.response import Response

    from ..options import SessionOptions
    from ..stores.authenticator import Signatures

#: The cookie outlives its redirect by a wide margin, and no more.
MAX_AGE = 600
#: Browsers keep about 4 KB per cookie, name and attributes included.
MAX_LENGTH = 3000
#: Purpose-bound: what signs a flash cookie never signs a session cookie.
SALT = b"myapp.sessions.flash\x00"


class FlashCookie:
    """Signs, reads and clears one app's flash cookie, with the ``signatures`` it is
    handed (webob's serializer per session secret, salted with :data:`SALT`).

    Its JSON is webob's. A flash cookie written by the release before, signed by hand,
    reads as forged: at most one message, sent in the ten minutes before the upgrade,
    is not shown.
    """

    def __init__(self, options: SessionOptions, signatures: Signatures) -> None:
        self.options = options
        self.name = f"{options.cookie_name}_flash"
        self.signatures = signatures

    def dumps(self, data: Mapping[str, Any], now: float) -> str | None:
        """The cookie value for ``data``, or None when it would be too long."""
        value = self.signatures.dumps({"t": int(now), "f": dict(data)})
        return value if len(value) <= MAX_LENGTH else None

    def read(self, request: Request, now: float) -> dict[str, list[Any]] | None:
        """The flash queues the request's cookie carries; None when absent, forged,
        expired or garbled (never raises)."""
        value = request.cookies.get(self.name)
        if not value or len(value) > MAX_LENGTH or not value.isascii():
            return None
        try:
            content, _ = self.signatures.loads(value)
        except ValueError:  # forged, garbled, or JSON that is not
            return None
        if not isinstance(content, dict) or not isinstance(content.get("t"), int):
            return None
        if not 0 <= now - content["t"] <= MAX_AGE or not isinstance(content.get("f"), dict):
            return None
        queues = content["f"]
        if not all(
            isinstance(k, str) and k.startswith(FLASH_PREFIX) and isinstance(v, list)
            for k, v in queues.items()
        ):
            return None
        return queues

    def set(self, response: Response, value: str) -> None:
        response.set_cookie(self.name, value, max_age=MAX_AGE, **self.options.cookie_attributes)

    def delete(self, response: Response) -> None:
        options = self.options
        response.delete_cookie(self.name, path=options.cookie_path, domain=options.cookie_domain)
