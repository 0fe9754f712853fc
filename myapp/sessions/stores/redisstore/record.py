"""The one way a session record is written to Redis, by the store and the read cache alike.

``<header JSON>\\n<data JSON>``; the header is
``[version, last_active, expires, created, user_id, user_agent]``. The version and the
two times a touch rewrites come first, so a Lua script can read or swap them without
parsing JSON: ``'^%[(%d+),'`` matches the version, ``'^%[(%d+),[^,]*,([^,]*),'`` the
version and the expiry.
"""

from __future__ import annotations

import json

from ..base import SessionRecord


def header(record: SessionRecord, version: int) -> str:
    return json.dumps(
        [
            version,
            record.last_active,
            record.expires,
            record.created,
            record.user_id,
            record.user_agent,
        ],
        separators=(",", ":"),
    )


def encode(record: SessionRecord, version: int) -> str:
    """The stored value of ``record`` at ``version``."""
    return f"{header(record, version)}\n{record.data}"


def decode(key: str, raw: bytes) -> SessionRecord:
    """The record stored under ``key``; ValueError (or UnicodeDecodeError) if malformed."""
    header_text, newline, data = raw.decode("utf-8").partition("\n")
    if not newline:
        raise ValueError("no header line")
    version, last_active, expires, created, user_id, user_agent = json.loads(header_text)
    return SessionRecord(key, data, created, last_active, expires, user_id, user_agent, version)


def user_id_of(raw: bytes) -> object:
    """The user id in a stored value's header (None when it has none)."""
    return json.loads(raw.split(b"\n", 1)[0])[4]
