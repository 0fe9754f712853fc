"""The session token a session cookie carries, for tests that look into a store."""

from __future__ import annotations


def token_of(value: str) -> str:
    """The token inside a session cookie's value, ``token.signature`` (not checked)."""
    return value.split(".", 1)[0]
