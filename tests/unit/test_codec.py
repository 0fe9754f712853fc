"""Tokens are 256-bit and random; cookies are signed; rotation of secrets works; cookies
in the format before webob's serializer still read."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from myapp.sessions.request.factory import COOKIE_LENGTH, CookieSigner, new_token, storage_key

NEW, OLD = b"n" * 40, b"o" * 40


def test_tokens_are_256_bit_and_unique():
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) == 43 for t in tokens)  # 32 bytes of base64url


def test_storage_key_is_the_sha256_of_the_token():
    token = new_token()
    assert storage_key(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token not in storage_key(token)


def test_signed_cookie_round_trips():
    signer = CookieSigner((NEW,))
    token = new_token()
    value = signer.dumps(token)
    assert len(value) == COOKIE_LENGTH
    verdict = signer.loads(value)
    assert (verdict.token, verdict.reason, verdict.stale_secret) == (token, None, False)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "absent"),
        ("", "absent"),
        ("garbage", "malformed"),
        ("x" * (COOKIE_LENGTH - 1), "malformed"),
        ("x" * COOKIE_LENGTH, "bad_signature"),
        ("x" * 87, "malformed"),
        ("x" * 43 + "." + "x" * 43, "bad_signature"),
        ("é" * COOKIE_LENGTH, "malformed"),
        ("a" * 43 + "." + "ü" * 43, "malformed"),
    ],
)
def test_garbage_is_refused_with_a_reason(value, reason):
    assert CookieSigner((NEW,)).loads(value).reason == reason


def test_tampered_token_fails_the_signature():
    signer = CookieSigner((NEW,))
    value = signer.dumps(new_token())
    tampered = ("B" if value[0] == "A" else "A") + value[1:]
    assert signer.loads(tampered).reason == "bad_signature"


def test_old_secret_is_accepted_only_while_listed():
    token = new_token()
    old_cookie = CookieSigner((OLD,)).dumps(token)
    rotated = CookieSigner((NEW, OLD))
    verdict = rotated.loads(old_cookie)
    assert verdict.token == token and verdict.stale_secret is True
    assert rotated.dumps(token) == CookieSigner((NEW,)).dumps(token)
    assert CookieSigner((NEW,)).loads(old_cookie).reason == "bad_signature"


def old_format(token: str, secret: bytes) -> str:
    """A cookie as issued before webob's serializer: the token, ".", its HMAC-SHA256."""
    key = hashlib.sha256(b"myapp.sessions.cookie\x00" + secret).digest()
    mac = hmac.new(key, token.encode("ascii"), hashlib.sha256).digest()
    return f"{token}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"


def test_an_old_format_cookie_still_reads_and_is_marked_for_reissue():
    token = new_token()
    verdict = CookieSigner((NEW, OLD)).loads(old_format(token, OLD))
    assert (verdict.token, verdict.reason, verdict.stale_secret) == (token, None, True)
    assert CookieSigner((NEW,)).loads(old_format(token, NEW)).token == token


def test_an_old_format_cookie_is_never_written_and_needs_a_listed_secret():
    token = new_token()
    assert "." not in CookieSigner((NEW,)).dumps(token)
    assert CookieSigner((NEW,)).loads(old_format(token, OLD)).reason == "bad_signature"
    tampered = old_format(token, NEW)
    tampered = ("B" if tampered[0] == "A" else "A") + tampered[1:]
    assert CookieSigner((NEW,)).loads(tampered).reason == "bad_signature"


def test_a_tampered_signature_fails():
    signer = CookieSigner((NEW, OLD))
    value = signer.dumps(new_token())
    tampered = ("B" if value[0] == "A" else "A") + value[1:]
    assert signer.loads(tampered).reason == "bad_signature"
