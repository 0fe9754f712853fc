"""The record authenticator: what it covers, the key ring, and the JSON forms it accepts."""

from __future__ import annotations

import json
import logging

import pytest

from myapp.sessions.stores.authenticator import (
    NoSecretToSign,
    RecordAuthenticator,
    canonical_data,
)
from myapp.sessions.stores.base import SessionRecord

OLD, NEW = b"old-secret-0123456789abcdefghijklmnop", b"new-secret-0123456789abcdefghijklmnop"


def sample(**changes: object) -> SessionRecord:
    record = SessionRecord(
        "k" * 64, '{"cart":{"tea":2}}', 1.5e9, 1.5e9 + 1, 1.5e9 + 60, "7", "ua", 3
    )
    return record.with_changes(**changes)


@pytest.mark.parametrize(
    "change",
    [
        {"key": "j" * 64},
        {"user_id": "8"},
        {"user_id": None},
        {"user_agent": "other"},
        {"created": 1.5e9 - 1},
        {"last_active": 1.5e9 + 2},
        {"expires": 1.5e9 + 61},
        {"version": 4},
        {"data": '{"cart":{"tea":3}}'},
    ],
)
def test_every_field_is_covered(change):
    auth = RecordAuthenticator((NEW,), "sql")
    mac = auth.sign(sample(), 3)
    assert auth.verify(sample(), mac)
    assert not auth.verify(sample(**change), mac)


def test_older_secrets_of_the_ring_verify_and_the_newest_signs():
    old_mac = RecordAuthenticator((OLD,), "sql").sign(sample(), 3)
    ring = RecordAuthenticator((NEW, OLD), "sql")
    assert ring.verify(sample(), old_mac)
    assert ring.sign(sample(), 3) == RecordAuthenticator((NEW,), "sql").sign(sample(), 3)
    assert not RecordAuthenticator((NEW,), "sql").verify(sample(), old_mac)


def test_stores_do_not_accept_each_others_authenticators():
    mac = RecordAuthenticator((NEW,), "cache").sign(sample(), 3)
    assert not RecordAuthenticator((NEW,), "redis").verify(sample(), mac)


@pytest.mark.parametrize("mac", [None, "", "x" * 64, "0" * 43, 42])
def test_missing_or_malformed_authenticators_are_refused_and_logged(mac, caplog):
    auth = RecordAuthenticator((NEW,), "sql")
    with caplog.at_level(logging.WARNING):
        assert not auth.verify(sample(), mac)
    assert "treated as absent" in caplog.text


def test_refusals_are_said_once_per_interval_with_a_count(caplog):
    auth = RecordAuthenticator((NEW,), "sql")
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            auth.verify(sample(), None)
    assert caplog.text.count("treated as absent") == 1


def test_times_are_signed_as_a_timestamptz_keeps_them():
    auth = RecordAuthenticator((NEW,), "sql")
    precise = sample(created=1765000000.1234567)
    mac = auth.sign(precise, 3)
    assert auth.verify(sample(created=1765000000.123457), mac)  # read back in microseconds


def test_canonical_json_is_the_same_for_what_jsonb_prints():
    written = '{"z":1e+16,"a":[1.0,2,1e-07],"b":"\\u00e9"}'
    printed = '{"a": [1.0, 2, 0.0000001], "b": "é", "z": 10000000000000000}'
    assert canonical_data(written) == canonical_data(printed)
    assert json.loads(canonical_data(written))["b"] == "é"


def test_times_round_like_a_datetime_made_from_them():
    import random
    from datetime import UTC, datetime

    from myapp.sessions.stores.authenticator import _micros

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rng = random.Random(7)
    for _ in range(20_000):
        moment = rng.uniform(1.6e9, 1.9e9)
        as_datetime = datetime.fromtimestamp(moment, UTC)
        delta = as_datetime - epoch
        expected = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        assert _micros(moment) == expected
        assert _micros(as_datetime.timestamp()) == expected  # read back from the database


def test_without_secrets_nothing_is_signed_and_nothing_verifies():
    secretless = RecordAuthenticator((), "sql")
    signed = RecordAuthenticator((NEW,), "sql")
    record = sample()
    with pytest.raises(NoSecretToSign, match="sql store cannot write a session"):
        secretless.sign(record, record.version)
    assert not secretless.verify(record, signed.sign(record, record.version))


@pytest.mark.parametrize(
    "change",
    [
        {"key": "j" * 64},
        {"user_id": None},
        {"user_agent": "other"},
        {"created": 1.5e9 - 1},
        {"expires": 1.5e9 + 61},
        {"version": 4},
        {"data": '{"cart": {"tea": 2}}'},  # the same JSON in another form: not the same text
    ],
)
def test_the_stored_form_covers_every_field_and_the_datas_very_text(change):
    auth = RecordAuthenticator((NEW,), "sql")
    mac = auth.sign_stored(sample(), 3)
    assert auth.verify_stored(sample(), mac)
    assert not auth.verify_stored(sample(**change), mac)


def test_the_two_field_forms_never_stand_in_for_each_other():
    auth = RecordAuthenticator((NEW,), "sql")
    assert not auth.verify_stored(sample(), auth.sign(sample(), 3))
    assert not auth.verify(sample(), auth.sign_stored(sample(), 3))
    ring = RecordAuthenticator((NEW, OLD), "sql")
    assert ring.verify_stored(sample(), RecordAuthenticator((OLD,), "sql").sign_stored(sample(), 3))
    assert not RecordAuthenticator((NEW,), "redis").verify_stored(
        sample(), auth.sign_stored(sample(), 3)
    )
