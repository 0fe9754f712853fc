"""The circuit breaker's rules, on a fake clock (no probe thread unless a test starts one)."""

from __future__ import annotations

import threading
import time

from myapp.sessions.chain.recovery import BACKOFF_FACTOR, JITTER, Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(probe=lambda: "still down", **kwargs) -> Breaker:
    clock = Clock()
    breaker = Breaker("sql", probe, clock=clock, wall=clock, **kwargs)
    breaker.ensure_probing = lambda: None  # probes are run by hand here
    return breaker


def test_failures_below_the_threshold_report_failing_but_keep_the_breaker_closed():
    breaker = _breaker(threshold=3)
    assert breaker.failure("refused") is False
    assert breaker.failure("refused") is False
    assert breaker.failing and not breaker.open
    assert breaker.failure("refused") is True
    assert breaker.open
    assert breaker.failure("refused") is False  # already open: said once


def test_a_timeout_opens_the_breaker_at_once():
    breaker = _breaker(threshold=5)
    assert breaker.failure("no answer within 1s", at_once=True) is True
    assert breaker.open and breaker.cause == "no answer within 1s"


def test_a_success_closes_it_and_forgets_the_failures():
    breaker = _breaker(threshold=1)
    breaker.failure("refused")
    assert breaker.success() is True
    assert not breaker.open and not breaker.failing and breaker.failing_since is None
    assert breaker.success() is False


def test_probes_back_off_from_the_cool_down_up_to_the_ceiling():
    breaker = _breaker(threshold=1, first_delay=1.0, max_delay=4.0)
    breaker.failure("refused")
    delays = []
    for _ in range(8):
        delays.append(breaker.seconds_to_next_probe())
        assert breaker.probe_now() is False
    assert 1.0 * (1 - JITTER) <= delays[0] <= 1.0 * (1 + JITTER)
    assert delays[1] >= BACKOFF_FACTOR * (1 - JITTER)
    assert max(delays) <= 4.0 * (1 + JITTER)
    assert breaker.open and breaker.probes == 8


def test_a_probe_that_succeeds_closes_the_breaker_and_reports_the_recovery():
    recovered = []
    breaker = _breaker(lambda: None, threshold=1, on_recover=lambda: recovered.append(1))
    breaker.failure("refused")
    assert breaker.probe_now() is True
    assert not breaker.open and recovered == [1]


def test_one_probe_thread_at_a_time_however_many_callers():
    started = threading.Event()
    release = threading.Event()
    calls = []

    def probe() -> str | None:
        calls.append(threading.current_thread().name)
        started.set()
        release.wait(5)
        return None

    breaker = Breaker("redis", probe, threshold=1, first_delay=0.0)
    breaker.failure("timed out", at_once=True)
    assert started.wait(5)
    for _ in range(50):
        breaker.ensure_probing()
    release.set()
    deadline = time.monotonic() + 5
    while breaker.open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not breaker.open
    assert len(calls) == 1
