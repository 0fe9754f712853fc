"""The session token a session cookie carries, for tests that look into a store."""

from __future__ import annotations

import base64

#: webob's SignedSerializer puts the HMAC-SHA256 ahead of the signed token.
SIGNATURE_BYTES = 32


def token_of(value: str) -> str:
    """The token inside a session cookie's value (its signature is not checked)."""
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return raw[SIGNATURE_BYTES:].decode("ascii")
