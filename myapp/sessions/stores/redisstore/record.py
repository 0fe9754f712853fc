"""The one way a session record is written to Redis, by the store and the read cache alike.

``<header JSON>\\n<data JSON>``; the header is
``[version, last_active, expires, mac, created, user_id, user_agent]``, ``mac`` being
the record's authenticator (``stores.authenticator``). The version, the two times a
touch rewrites and the authenticator come first, so a Lua script can read or swap them
without parsing JSON: ``'^%[(%d+),'`` matches the version, ``'^%[(%d+),[^,]*,([^,]*),'``
the version and the expiry.
"""

from __future__ import annotations

import json

from ..authenticator import RecordAuthenticator
from ..base import SessionRecord

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.JSONDecoder().decode


def times_and_mac(last_active: float, expires: float, mac: str) -> str:
    """The header's second to fourth fields, as a touch writes them."""
    return _dumps([last_active, expires, mac])[1:-1]


def encode(record: SessionRecord, version: int, authenticator: RecordAuthenticator) -> str:
    """The stored value of ``record`` at ``version``, with its authenticator."""
    mac = authenticator.sign(record, version)
    header = _dumps(
        [
            version,
            record.last_active,
            record.expires,
            mac,
            record.created,
            record.user_id,
            record.user_agent,
        ]
    )
    return f"{header}\n{record.data}"


def decode(key: str, raw: bytes, authenticator: RecordAuthenticator) -> SessionRecord | None:
    """The record stored under ``key``; None (said in the log) when its authenticator
    fails; ValueError (or UnicodeDecodeError) if it is malformed."""
    header_text, newline, data = raw.decode("utf-8").partition("\n")
    if not newline:
        raise ValueError("no header line")
    fields = _loads(header_text)
    if type(fields) is not list or len(fields) != 7:
        raise ValueError("not a record header")
    version, last_active, expires, mac, created, user_id, user_agent = fields
    record = SessionRecord(key, data, created, last_active, expires, user_id, user_agent, version)
    try:
        return record if authenticator.verify(record, mac) else None
    except (TypeError, OverflowError, OSError) as exc:  # a field of the wrong type or range
        raise ValueError(f"bad record header ({exc})") from None


def user_id_of(raw: bytes) -> object:
    """The user id in a stored value's header (None when it has none)."""
    fields = json.loads(raw.split(b"\n", 1)[0])
    return fields[5] if isinstance(fields, list) and len(fields) == 7 else None


def expires_of(raw: bytes) -> float | None:
    """The expiry in a stored value's header, unverified (for counting only)."""
    try:
        fields = json.loads(raw.split(b"\n", 1)[0])
    except ValueError:
        return None
    ok = isinstance(fields, list) and len(fields) == 7 and isinstance(fields[2], int | float)
    return float(fields[2]) if ok else None
