"""The Redis record: its text is what is signed, every byte of it counts, and records
signed field by field by the previous release still read."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from myapp.sessions.stores.authenticator import RecordAuthenticator
from myapp.sessions.stores.base import SessionRecord
from myapp.sessions.stores.redisstore.record import decode, encode

SECRET = b"redis-record-secret-0123456789abcdefgh"
KEY = "k" * 64


def sample(**changes: object) -> SessionRecord:
    record = SessionRecord(
        KEY, '{"cart":{"tea":2}}', 1.5e9, 1.5e9 + 1.25, 1.5e9 + 60.5, "7", "Firefox \u00e9", 3
    )
    return record.with_changes(**changes)


def auth(purpose: str = "redis") -> RecordAuthenticator:
    return RecordAuthenticator((SECRET,), purpose)


def read(stored: bytes) -> SessionRecord | None:
    """What the store serves: a value that is no longer a record at all is absent too."""
    try:
        return decode(KEY, stored, auth())
    except ValueError:
        return None


def test_a_record_reads_back_as_it_was_written():
    stored = encode(sample(), 3, auth()).encode()
    assert decode(KEY, stored, auth()) == sample()


def test_a_record_signed_field_by_field_as_before_still_reads():
    # The previous release's value: the same header, its mac over the fields.
    record = sample()
    mac = auth().sign(record, 3)
    header = [3, record.last_active, record.expires, mac, record.created, "7", "Firefox \u00e9"]
    stored = f"{json.dumps(header, separators=(',', ':'))}\n{record.data}".encode()
    assert decode(KEY, stored, auth()) == record


def test_a_record_under_another_key_or_for_another_store_is_refused():
    stored = encode(sample(), 3, auth()).encode()
    assert decode("j" * 64, stored, auth()) is None
    assert decode(KEY, stored, auth("cache")) is None


@given(st.data())
def test_changing_any_character_of_a_stored_record_refuses_it(data):
    text = encode(sample(), 3, auth())
    at = data.draw(st.integers(0, len(text) - 1), label="position")
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != text[at]))
    edited = (text[:at] + replacement + text[at + 1 :]).encode()
    assert read(edited) is None


@pytest.mark.parametrize("cut", [1, 64, 65])
def test_a_record_with_its_authenticator_shortened_or_moved_is_refused(cut):
    text = encode(sample(), 3, auth())
    at = text.index('"') + 1
    moved = (text[:at] + text[at + cut :]).encode()
    assert read(moved) is None
