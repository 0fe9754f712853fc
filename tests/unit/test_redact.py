"""Credentials never leave in a message: URLs lose their password, tokens their value."""

from __future__ import annotations

import io
import logging

import pytest

from myapp.sessions.operations.operatoraccess import is_loopback
from myapp.sessions.redact import RedactingFilter, RedactingWriter, redact, redact_values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:hunter2@h", "redis://user:***@h"),
        ("rediss://hunter2@h", "rediss://***@h"),
        ("redis+sentinel://u:hun@ter2@a:1,b:2/svc", "redis+sentinel://u:***@a:1,b:2/svc"),
        (
            "cannot reach 'postgresql+psycopg://app:hunter2@db/x' now",
            "cannot reach 'postgresql+psycopg://app:***@db/x' now",
        ),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("write to alice@example.org", "write to alice@example.org"),
        ("redis://h:6379/0?password=hunter2", "redis://h:6379/0?password=***"),
        ("redis://h/0?db=1&password=hun:ter2&x=1", "redis://h/0?db=1&password=***&x=1"),
        ("rediss://h/0?Password=hunter2: refused", "rediss://h/0?Password=***: refused"),
        ("host=db password=hunter2 dbname=x", "host=db password=*** dbname=x"),
        ("redis://u:hunter2@h/0?password=hunter2", "redis://u:***@h/0?password=***"),
        ("session.timeout=3600", "session.timeout=3600"),
    ],
)
def test_urls_lose_their_password(text, expected):
    assert redact(text) == expected


def test_nested_values_are_redacted():
    value = {"stores": [{"cause": "redis://:hunter2@h", "ready": False}], "n": 1}
    assert redact_values(value) == {"stores": [{"cause": "redis://:***@h", "ready": False}], "n": 1}


def test_log_filter_redacts_message_arguments_and_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("bad url redis://:hunter2@h:1")
        except ValueError:
            logger.exception("cannot use %s", "redis://u:hunter2@h:1")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "hunter2" not in text
    assert "redis://u:***@h:1" in text
    assert "ValueError: bad url redis://:***@h:1" in text


def test_writer_redacts_script_output():
    stream = io.StringIO()
    RedactingWriter(stream).write("redis: NOT reached (redis://:hunter2@h)\n")
    assert stream.getvalue() == "redis: NOT reached (redis://:***@h)\n"


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("", False),
        (None, False),
        ("localhost", False),
        ("127.0.0.1, 10.0.0.1", False),
    ],
)
def test_loopback_addresses(address, loopback):
    assert is_loopback(address) is loopback
