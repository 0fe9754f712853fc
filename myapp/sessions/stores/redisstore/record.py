"""The one way a session record is written to Redis, by the store and the read cache alike.

``<header JSON>\\n<data JSON>``; the header is
``[version, last_active, expires, mac, created, user_id, user_agent]``, ``mac`` being
the record's authenticator (``stores.authenticator``). The version and the expiry come
first, so a Lua script can read them without parsing JSON: ``'^%[(%d+),'`` matches the
version, ``'^%[(%d+),[^,]*,([^,]*),'`` the version and the expiry.

Redis gives back exactly the text it was given, so ``mac`` signs that text itself (with
the 64 characters of ``mac`` left out): checking a record costs one MAC over what was
read, with nothing re-encoded. ``mac`` is the first string of the header (the fields
before it are numbers), so it starts right after the text's first ``"``. Records signed
field by field (``RecordAuthenticator.verify``), as the previous release wrote them,
still verify.
"""

from __future__ import annotations

import json

from ..authenticator import MAC_LENGTH, RecordAuthenticator
from ..base import SessionRecord

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.JSONDecoder().decode


def encode(record: SessionRecord, version: int, authenticator: RecordAuthenticator) -> str:
    """The stored value of ``record`` at ``version``, with its authenticator."""
    header = _dumps(
        [
            version,
            record.last_active,
            record.expires,
            "",  # the authenticator's place, filled in below
            record.created,
            record.user_id,
            record.user_agent,
        ]
    )
    unsigned = f"{header}\n{record.data}"
    at = unsigned.index('"') + 1
    return f"{unsigned[:at]}{authenticator.sign_text(record.key, unsigned)}{unsigned[at:]}"


def decode(key: str, raw: bytes, authenticator: RecordAuthenticator) -> SessionRecord | None:
    """The record stored under ``key``; None (said in the log) when its authenticator
    fails; ValueError (or UnicodeDecodeError) if it is malformed."""
    text = raw.decode("utf-8")
    header_text, newline, data = text.partition("\n")
    if not newline:
        raise ValueError("no header line")
    fields = _loads(header_text)
    if type(fields) is not list or len(fields) != 7:
        raise ValueError("not a record header")
    version, last_active, expires, mac, created, user_id, user_agent = fields
    record = SessionRecord(key, data, created, last_active, expires, user_id, user_agent, version)
    if type(mac) is str and len(mac) == MAC_LENGTH:
        at = text.index('"') + 1
        if text[at : at + MAC_LENGTH] == mac:
            unsigned = text[:at] + text[at + MAC_LENGTH :]
            if authenticator.verify_text(key, unsigned, mac):
                return record
    try:
        # Signed field by field (the previous release), or not signed at all: verify()
        # tells which, and counts a refusal.
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
