"""The throttling policy: free failures, doubling delays, a cap, forgetting, clearing."""

from __future__ import annotations

import pytest

from myapp.settings import SiteSettings
from myapp.throttle import SigninThrottle, client_address
from myapp.throttle.memorycounters import MemoryCounters


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def throttle(clock: Clock, **settings: float) -> SigninThrottle:
    values = {
        "signin_account_free_failures": 2,
        "signin_address_free_failures": 100,
        "signin_first_delay": 1.0,
        "signin_max_delay": 8.0,
        "signin_forget_after": 3600.0,
        **settings,
    }
    counters = MemoryCounters()
    return SigninThrottle(SiteSettings(**values), lambda: counters, clock=clock)


def test_delays_double_after_the_free_failures_up_to_the_cap(clock):
    policy = throttle(clock)
    waits = []
    for _ in range(8):
        waits.append(policy.failed("alice", "192.0.2.1"))
        clock.now += 100  # past every block
    assert waits == [0, 0, 1, 2, 4, 8, 8, 8]


def test_blocked_until_the_delay_has_passed(clock):
    policy = throttle(clock, signin_account_free_failures=0, signin_first_delay=5.0)
    policy.failed("Alice ", "192.0.2.1")
    assert policy.retry_after("alice", "192.0.2.99") == 5.0  # names are normalised
    clock.now += 4
    assert policy.retry_after("ALICE", "192.0.2.2") == 1.0
    clock.now += 1
    assert policy.retry_after("alice", "192.0.2.2") == 0.0


def test_counts_are_forgotten_and_a_success_clears_only_the_account(clock):
    policy = throttle(clock, signin_address_free_failures=2, signin_forget_after=60.0)
    policy.failed("alice", "192.0.2.1")
    policy.failed("alice", "192.0.2.1")
    clock.now += 61
    assert policy.failed("alice", "192.0.2.1") == 0  # both counts began again
    policy.failed("alice", "192.0.2.1")
    policy.succeeded("alice", "192.0.2.1")
    assert policy.failed("alice", "192.0.2.9") == 0  # the account starts afresh
    assert policy.failed("bob", "192.0.2.1") == 1  # the address does not


@pytest.mark.parametrize(
    ("remote", "limited_as"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        (None, "unknown"),
        ("not an address", "unknown"),
    ],
)
def test_client_addresses(remote, limited_as):
    assert client_address(remote) == limited_as
