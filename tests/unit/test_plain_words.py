"""What people read: waits in words, counts with the right plural, --help without markup,
and one log line per kind of refused request a minute."""

from __future__ import annotations

import logging

import pytest

from myapp.refusals import RefusalLog
from myapp.relativetime import duration
from myapp.scripts.sessions import _count, parse_args


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.2, "1 second"),
        (1, "1 second"),
        (29.1, "30 seconds"),
        (60, "1 minute"),
        (61, "2 minutes"),
        (900, "15 minutes"),
        (3600, "1 hour"),
        (5400, "2 hours"),
    ],
)
def test_waits_are_said_in_words(seconds, said):
    assert duration(seconds) == said


def test_counts_take_the_right_plural():
    assert _count(1, "session") == "1 session"
    assert _count(0, "session") == "0 sessions"
    assert _count(1, "batch", "batches") == "1 batch"
    assert _count(3, "batch", "batches") == "3 batches"


def test_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    shown = capsys.readouterr().out
    assert "``" not in shown
    assert "myapp-sessions: the operator's tools for the session stores." in shown


def test_refusals_are_logged_once_a_minute_per_kind_with_a_count(caplog):
    caplog.set_level(logging.WARNING, logger="myapp.refusals")
    now = [1000.0]
    refusals = RefusalLog(interval=60, clock=lambda: now[0])
    down = ConnectionRefusedError("connection refused")
    assert refusals.note("POST signin", down)
    for _ in range(5):
        now[0] += 1
        assert not refusals.note("POST signin", down)
    assert refusals.note("GET home", down)  # another kind: said at once
    now[0] += 60
    assert refusals.note("POST signin", down)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused POST signin with 503: ConnectionRefusedError: connection refused",
        "refused GET home with 503: ConnectionRefusedError: connection refused",
        "refused POST signin with 503: ConnectionRefusedError: connection refused"
        " (5 more refused for the same cause in the last 65 s)",
    ]
    assert {r.levelname for r in caplog.records} == {"WARNING"}
