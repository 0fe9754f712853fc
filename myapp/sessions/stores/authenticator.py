"""The authenticator every shared store keeps with a record: a MAC no store writer can forge.

Whoever can write to the database or to Redis could otherwise edit a stored session
(its user id, its data) and be signed in as someone else. Each record is stored with a
MAC under a key derived from the session secrets: the newest secret signs, every listed
secret verifies (a rotated ring keeps old records readable). Three forms:

- fields, data made canonical (``sign``/``verify``): HMAC-SHA256 over the key, user id,
  user agent, times, version and the data in one canonical JSON form, for a column that
  hands back its own form of the JSON it was given (``jsonb``);
- fields, data as stored (``sign_stored``/``verify_stored``): keyed BLAKE2b over the
  same fields and the data's very text, for a column that keeps that text (``json``,
  SQLite's text): nothing is parsed or re-encoded to check it;
- stored text (``sign_text``/``verify_text``): keyed BLAKE2b over the key and the whole
  value as stored, for Redis, which hands back the very text it was given.

A record whose authenticator is missing or wrong is treated as absent by the store that
read it, and said in the log (at most once a minute, with how many were refused
meanwhile).

The cookies are signed under the same secrets, the same way round (newest signs, any
listed verifies), by webob's ``SignedSerializer``: :class:`Signatures`, one serializer
per secret, each salted for its purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import threading
import time
from typing import Any

from webob.cookies import SignedSerializer

from .base import SessionRecord

log = logging.getLogger(__name__)

#: Length of an authenticator (hex of 32 bytes).
MAC_LENGTH = 64
NOTICE_INTERVAL = 60.0
_head = json.JSONEncoder(separators=(",", ":")).encode


def _micros(epoch: float) -> int:
    """A time as the whole microseconds a ``timestamptz`` keeps of it: the same
    number before it is stored and after it is read back. (``datetime.fromtimestamp``
    rounds this way: the fraction to microseconds, half to even.)"""
    fraction, whole = math.modf(epoch)
    return int(whole) * 1_000_000 + round(fraction * 1_000_000)


def _int_or_float(text: str) -> int | float:
    # PostgreSQL's jsonb prints 1e+16 as 10000000000000000: read such long integers
    # as floats on both sides, so the JSON written and the JSON read back agree.
    return float(text) if len(text.lstrip("-")) > 16 else int(text)


# Built once: json.loads and json.dumps with arguments build a new decoder or encoder
# on every call.
_canonical_decode = json.JSONDecoder(parse_int=_int_or_float).decode
_canonical_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def canonical_data(text: str) -> str:
    """JSON text in one form whatever the store did to it (``jsonb`` reorders keys,
    adds spaces and writes numbers its own way); ValueError if it is not JSON."""
    return _canonical_encode(_canonical_decode(text))


class NoSecretToSign(RuntimeError):
    """A record was to be written by a process that holds no session secret."""


def purpose_name(purpose: str) -> str:
    return "read cache" if purpose == "cache" else f"{purpose} store"


class RecordAuthenticator:
    """Signs and verifies stored records with keys derived from the session secrets.

    ``purpose`` separates the stores' authenticators: an entry copied from the read
    cache into the Redis store (or a row into either) does not verify there. Without
    secrets (operator tools that only count or delete stored sessions, and never read
    the secret) it signs nothing and verifies nothing: such a process writes no record
    and sees none.
    """

    def __init__(self, secrets_newest_first: tuple[bytes, ...], purpose: str) -> None:
        label = f"myapp.sessions.record.{purpose}\x00".encode("ascii")
        # One MAC set up per secret and copied per record (as the cookie signer does).
        self._keys = tuple(
            hmac.new(hashlib.sha256(label + secret).digest(), digestmod=hashlib.sha256)
            for secret in secrets_newest_first
        )
        # The stored-text form is keyed BLAKE2b (a MAC of its own, RFC 7693): one pass,
        # and copying it is one C call where an HMAC copy is several Python ones.
        self._text_keys = tuple(
            hashlib.blake2b(
                key=hashlib.sha256(b"text\x00" + label + secret).digest(),
                digest_size=32,
                person=b"myapp.text",
            )
            for secret in secrets_newest_first
        )
        self.purpose = purpose
        self._lock = threading.Lock()
        self._refused = 0
        self._next_notice = 0.0

    @staticmethod
    def _fields(record: SessionRecord, version: int, data: str) -> bytes:
        """One buffer: the fields as a JSON list, a newline, the data."""
        head = [
            record.key,
            record.user_id,
            record.user_agent,
            _micros(record.created),
            _micros(record.last_active),
            _micros(record.expires),
            version,
        ]
        return f"{_head(head)}\n{data}".encode()

    def _digest(self, key: hmac.HMAC, record: SessionRecord, version: int, data: str) -> str:
        mac = key.copy()
        mac.update(self._fields(record, version, data))
        return mac.hexdigest()

    def sign(self, record: SessionRecord, version: int, data: str | None = None) -> str:
        """The authenticator of ``record`` stored at ``version`` (``data``: the form of
        its JSON that is signed, ``record.data`` by default)."""
        if not self._keys:
            raise NoSecretToSign(
                f"the {purpose_name(self.purpose)} cannot write a session without "
                "session.secret (this process was built to count or delete only)"
            )
        return self._digest(self._keys[0], record, version, record.data if data is None else data)

    def verify(self, record: SessionRecord, mac: str | None, data: str | None = None) -> bool:
        """Whether ``mac`` is the authenticator of ``record`` (at ``record.version``) under
        any listed secret. A refusal is counted for the log (not in a process built
        without secrets, which reads no record by design)."""
        if not self._keys:
            return False
        if isinstance(mac, str) and len(mac) == MAC_LENGTH:
            text = record.data if data is None else data
            for key in self._keys:
                expected = self._digest(key, record, record.version, text)
                if hmac.compare_digest(expected, mac):
                    return True
        self.refused("its authenticator does not match" if mac else "it has no authenticator")
        return False

    def sign_text(self, key: str, text: str) -> str:
        """The authenticator of a record kept as ``text`` under ``key``, for a store that
        gives back exactly the text it was given (Redis): the text itself is signed, so
        checking it rebuilds nothing."""
        if not self._keys:
            raise NoSecretToSign(
                f"the {purpose_name(self.purpose)} cannot write a session without "
                "session.secret (this process was built to count or delete only)"
            )
        return self._text_digest(self._text_keys[0], key, text)

    def verify_text(self, key: str, text: str, mac: str) -> bool:
        """Whether ``mac`` is ``sign_text(key, text)`` under any listed secret. A
        mismatch is not counted as a refusal: the caller may still try the older,
        field-by-field form (``verify``), which counts it."""
        if not mac.isascii():  # (compare_digest refuses to compare such strings)
            return False
        for secret in self._text_keys:
            if hmac.compare_digest(self._text_digest(secret, key, text), mac):
                return True
        return False

    @staticmethod
    def _text_digest(secret: Any, key: str, text: str) -> str:
        mac = secret.copy()
        mac.update(f"{key}\n{text}".encode())
        return mac.hexdigest()

    def sign_stored(self, record: SessionRecord, version: int) -> str:
        """The authenticator of ``record`` at ``version`` for a store that keeps the very
        text of its data (a ``json`` or text column): its fields and that text, signed as
        they are, with nothing made canonical first."""
        if not self._keys:
            raise NoSecretToSign(
                f"the {purpose_name(self.purpose)} cannot write a session without "
                "session.secret (this process was built to count or delete only)"
            )
        return self._stored_digest(self._text_keys[0], record, version)

    def verify_stored(self, record: SessionRecord, mac: str) -> bool:
        """Whether ``mac`` is ``sign_stored(record, record.version)`` under any listed
        secret. Not counted as a refusal: the caller goes on to ``verify``."""
        if not mac.isascii():  # (compare_digest refuses to compare such strings)
            return False
        for secret in self._text_keys:
            if hmac.compare_digest(self._stored_digest(secret, record, record.version), mac):
                return True
        return False

    def _stored_digest(self, secret: Any, record: SessionRecord, version: int) -> str:
        # The fields list starts with "[": no message of this form is one of the stored
        # text form's, which starts with the record's key.
        mac = secret.copy()
        mac.update(self._fields(record, version, record.data))
        return mac.hexdigest()

    def refused(self, why: str) -> None:
        """Say (at most once a minute) that a stored record was treated as absent."""
        now = time.monotonic()
        with self._lock:
            self._refused += 1
            if now < self._next_notice:
                return
            count, self._refused = self._refused, 0
            self._next_notice = now + NOTICE_INTERVAL
        log.warning(
            "a stored session record (%s store) was treated as absent: %s (%d refused since "
            "the last notice). Someone may have written to the store directly, or it was "
            "written under a secret no longer in session.secret",
            self.purpose,
            why,
            count,
        )


class Signatures:
    """webob's ``SignedSerializer`` once per secret, newest first: the newest signs,
    every listed one verifies (so secrets can be rotated)."""

    def __init__(
        self, secrets_newest_first: tuple[bytes, ...], salt: bytes, serializer: Any = None
    ) -> None:
        if not secrets_newest_first:
            raise ValueError("at least one secret is needed")
        self.serializers = tuple(
            SignedSerializer(secret, salt, hashalg="sha256", serializer=serializer)
            for secret in secrets_newest_first
        )

    def dumps(self, value: Any) -> str:
        return self.serializers[0].dumps(value).decode("ascii")

    def loads(self, text: str) -> tuple[Any, int]:
        """The value and the index of the secret that signed it; ValueError if none did."""
        for index, serializer in enumerate(self.serializers):
            try:
                return serializer.loads(text), index
            except ValueError:
                continue
        raise ValueError("signed by no listed secret")
