"""Times as people say them, and the exact time shown on hover."""

from __future__ import annotations

import pytest

from myapp.relativetime import exact_time, iso_time, time_ago

NOW = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
MINUTE, HOUR, DAY = 60, 3600, 86400


@pytest.mark.parametrize(
    ("seconds_before", "said"),
    [
        (0, "just now"),
        (59, "just now"),
        (60, "1 minute ago"),
        (5 * MINUTE + 30, "5 minutes ago"),
        (59 * MINUTE + 59, "59 minutes ago"),
        (HOUR, "1 hour ago"),
        (3 * HOUR + 59 * MINUTE, "3 hours ago"),
        (23 * HOUR, "23 hours ago"),
        (DAY, "yesterday"),
        (2 * DAY - 1, "yesterday"),
        (2 * DAY, "2 days ago"),
        (29 * DAY + 5 * HOUR, "29 days ago"),
    ],
)
def test_time_ago_says_the_largest_whole_unit(seconds_before, said):
    assert time_ago(NOW - seconds_before, NOW) == said


def test_a_time_slightly_in_the_future_is_just_now():
    assert time_ago(NOW + 3, NOW) == "just now"


def test_exact_and_iso_times_are_utc():
    assert exact_time(NOW) == "2026-09-21 14:13 UTC"
    assert iso_time(NOW) == "2026-09-21T14:13:20Z"
