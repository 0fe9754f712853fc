"""Times as people say them ("5 minutes ago"), and the exact time to show on hover."""

from __future__ import annotations

from datetime import UTC, datetime

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'} ago"


def time_ago(then: float, now: float) -> str:
    """How long before ``now`` the epoch second ``then`` was, in the largest whole unit.

    A time in the future (clocks a little apart) is "just now".
    """
    seconds = int(now - then)
    if seconds < MINUTE:
        return "just now"
    if seconds < HOUR:
        return _plural(seconds // MINUTE, "minute")
    if seconds < DAY:
        return _plural(seconds // HOUR, "hour")
    if seconds < 2 * DAY:
        return "yesterday"
    return _plural(seconds // DAY, "day")


def exact_time(epoch: float) -> str:
    """The time to show on hover: ``2026-12-01 22:40 UTC``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso_time(epoch: float) -> str:
    """For ``<time datetime=...>``: ``2026-12-01T22:40:05Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """A wait as people say it, rounded up: "1 second", "40 seconds", "2 minutes", "1 hour"."""
    whole = max(1, int(-(-seconds // 1)))
    if whole < MINUTE:
        return _count(whole, "second")
    if whole < HOUR:
        return _count(-(-whole // MINUTE), "minute")
    return _count(-(-whole // HOUR), "hour")


def _count(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"
