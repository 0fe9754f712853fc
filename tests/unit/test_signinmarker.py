"""The signed-in marker: signed, and telling a remote sign-out from a session that ran out."""

from __future__ import annotations

import base64
import hashlib
import hmac

from myapp.sessions.options import SessionOptions
from myapp.signinmarker import (
    ENDED_ELSEWHERE,
    EXPIRED,
    SIGNED_OUT,
    Marker,
    dumps,
    loads,
    why_signed_out,
)

OLD_SECRET = "an-older-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
NEW_SECRET = "the-newest-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
OPTIONS = SessionOptions.from_settings({"session.secret": NEW_SECRET})
NOW = 1_790_000_000


def test_a_marker_round_trips():
    marker = Marker(NOW - 100, NOW - 5)
    assert loads(dumps(marker, OPTIONS), OPTIONS) == marker


def test_a_marker_signed_with_a_listed_older_secret_still_counts():
    older = SessionOptions.from_settings({"session.secret": OLD_SECRET})
    both = SessionOptions.from_settings({"session.secret": f"{NEW_SECRET} {OLD_SECRET}"})
    assert loads(dumps(Marker(1, 2), older), both) == Marker(1, 2)


def old_format(marker: Marker, secret: str) -> str:
    """A marker as set before webob's serializer: the two times and their HMAC-SHA256."""
    key = hashlib.sha256(b"myapp.signin-marker\x00" + secret.encode()).digest()
    payload = f"{marker.signed_in}.{marker.seen}"
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_a_marker_in_the_old_format_still_counts_and_is_never_written():
    both = SessionOptions.from_settings({"session.secret": f"{NEW_SECRET} {OLD_SECRET}"})
    assert loads(old_format(Marker(1, 2), OLD_SECRET), both) == Marker(1, 2)
    assert loads(old_format(Marker(1, 2), OLD_SECRET), OPTIONS) is None
    assert "." not in dumps(Marker(1, 2), OPTIONS)


def test_garbled_or_forged_markers_are_ignored():
    good = dumps(Marker(NOW, NOW), OPTIONS)
    old = old_format(Marker(NOW, NOW), NEW_SECRET)
    signed_in, seen, signature = old.split(".")
    other = SessionOptions.from_settings({"session.secret": OLD_SECRET})
    for value in (
        None,
        "",
        "garbage",
        f"{signed_in}.{int(seen) + 1}.{signature}",  # a changed time
        f"{signed_in}.{seen}.{signature[:-1]}",
        f"-1.{seen}.{signature}",
        dumps(Marker(NOW, NOW), other),  # another secret
        ("B" if good[0] == "A" else "A") + good[1:],  # a changed signature
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # changed times
        "é" * 40,
    ):
        assert loads(value, OPTIONS) is None


def test_seen_recently_means_ended_elsewhere():
    marker = Marker(NOW - 3600, NOW - 60)
    assert why_signed_out(marker, NOW, OPTIONS, degraded=False) == ENDED_ELSEWHERE


def test_idle_past_the_timeout_means_it_ran_out():
    idle = OPTIONS.timeout - OPTIONS.reissue_time
    assert why_signed_out(Marker(NOW - idle, NOW - idle), NOW, OPTIONS, False) == EXPIRED
    just_inside = Marker(NOW - idle + 1, NOW - idle + 1)
    assert why_signed_out(just_inside, NOW, OPTIONS, False) == ENDED_ELSEWHERE


def test_past_the_absolute_lifetime_means_it_ran_out():
    marker = Marker(NOW - OPTIONS.max_lifetime, NOW - 10)
    assert why_signed_out(marker, NOW, OPTIONS, degraded=False) == EXPIRED


def test_on_a_fallback_store_nothing_is_claimed():
    marker = Marker(NOW - 3600, NOW - 60)
    assert why_signed_out(marker, NOW, OPTIONS, degraded=True) == SIGNED_OUT
