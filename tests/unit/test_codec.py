"""Tokens are 256-bit and random; cookies are signed; rotation of secrets works."""

from __future__ import annotations

import hashlib

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
        ("x" * COOKIE_LENGTH, "malformed"),
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


def test_a_tampered_token_or_signature_fails():
    signer = CookieSigner((NEW, OLD))
    value = signer.dumps(new_token())
    for at in (0, len(value) - 1):
        flipped = "B" if value[at] == "A" else "A"
        assert signer.loads(value[:at] + flipped + value[at + 1 :]).reason == "bad_signature"
