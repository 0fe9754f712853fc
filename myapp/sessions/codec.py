"""Session tokens and the signed cookie that carries them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

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
