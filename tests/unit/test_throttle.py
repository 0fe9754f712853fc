"""The throttling policy: counted before checking, free attempts, doubling delays, a cap,
forgetting, per account and address with an account-wide ceiling, keyed hashes."""

from __future__ import annotations

import pytest

from myapp.settings import SiteSettings
from myapp.throttle import SigninThrottle, client_address, name_fingerprint
from myapp.throttle.base import Limit
from myapp.throttle.memorycounters import MemoryCounters


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def throttle(clock: Clock, counters: MemoryCounters | None = None, **settings: float):
    values = {
        "signin_account_free_failures": 2,
        "signin_account_wide_free_failures": 50,
        "signin_address_free_failures": 100,
        "signin_first_delay": 1.0,
        "signin_max_delay": 8.0,
        "signin_forget_after": 3600.0,
        **settings,
    }
    store = counters or MemoryCounters()
    return SigninThrottle(SiteSettings(**values), lambda: store, secret=b"k" * 32, clock=clock)


def fail(policy: SigninThrottle, name: str, address: str) -> float:
    """One failed attempt; the wait it began, or -1 when it was refused before checking."""
    attempt = policy.attempt(name, address)
    return -1 if attempt.wait > 0 else policy.failed(attempt)


def test_delays_double_after_the_free_failures_up_to_the_cap(clock):
    policy = throttle(clock)
    waits = []
    for _ in range(8):
        waits.append(fail(policy, "alice", "192.0.2.1"))
        clock.now += 100  # past every block
    assert waits == [0, 0, 1, 2, 4, 8, 8, 8]


def test_attempts_at_the_same_moment_are_counted_before_any_is_checked(clock):
    policy = throttle(clock)
    attempts = [policy.attempt("alice", "192.0.2.1") for _ in range(16)]  # none failed yet
    going = [a for a in attempts if a.wait == 0]
    assert len(going) == 3  # two free, and the one that begins the block
    assert all(a.wait == 1.0 for a in attempts if a.wait > 0)


def test_blocked_until_the_delay_has_passed(clock):
    policy = throttle(clock, signin_account_free_failures=0, signin_first_delay=5.0)
    fail(policy, "Alice ", "192.0.2.1")
    assert policy.attempt("alice", "192.0.2.1").wait == 5.0  # names are normalised
    clock.now += 4
    assert policy.attempt("ALICE", "192.0.2.1").wait == 1.0
    clock.now += 1
    assert policy.attempt("alice", "192.0.2.1").wait == 0.0


def test_someone_elses_failures_do_not_lock_out_the_owner(clock):
    policy = throttle(clock)
    for _ in range(20):
        fail(policy, "alice", "203.0.113.66")
    owner = policy.attempt("alice", "192.0.2.1")
    assert owner.wait == 0
    policy.succeeded(owner)


def test_the_account_wide_ceiling_blocks_everyone_once_reached(clock):
    policy = throttle(clock, signin_account_wide_free_failures=10)
    for number in range(11):
        fail(policy, "alice", f"203.0.113.{number}")
    assert policy.attempt("alice", "192.0.2.1").wait > 0
    assert policy.attempt("bob", "192.0.2.1").wait == 0  # other accounts go on


def test_counts_are_forgotten_and_a_success_clears_only_its_account_and_address(clock):
    policy = throttle(clock, signin_address_free_failures=2, signin_forget_after=60.0)
    fail(policy, "alice", "192.0.2.1")
    fail(policy, "alice", "192.0.2.1")
    clock.now += 61
    assert fail(policy, "alice", "192.0.2.1") == 0  # every count began again
    fail(policy, "alice", "192.0.2.1")
    policy.succeeded(policy.attempt("alice", "192.0.2.1"))
    clock.now += 2  # past the block the third attempt on the address began
    assert fail(policy, "alice", "192.0.2.1") == 1  # the address keeps its two failures
    clock.now += 100
    assert fail(policy, "bob", "192.0.2.9") == 0


def test_a_refused_attempt_gives_back_what_it_counted(clock):
    counters = MemoryCounters()
    policy = throttle(
        clock, counters, signin_address_free_failures=1, signin_account_wide_free_failures=1
    )
    fail(policy, "alice", "192.0.2.1")
    fail(policy, "alice", "192.0.2.1")  # the address is now blocked
    assert policy.attempt("bob", "192.0.2.1").wait > 0
    assert fail(policy, "bob", "192.0.2.2") == 0  # bob's account-wide count was given back


def test_keys_are_keyed_hashes_without_the_name_or_address(clock):
    counters = MemoryCounters()
    policy = throttle(clock, counters)
    fail(policy, "alice", "192.0.2.1")
    keys = list(counters._entries)
    assert len(keys) == 3 and all(len(k) == 64 for k in keys)
    other = SigninThrottle(policy.settings, lambda: counters, secret=b"x" * 32, clock=clock)
    assert other._limits("alice", "192.0.2.1")[0][0] not in keys
    assert name_fingerprint(b"k", "my password") == name_fingerprint(b"k", " MY PASSWORD")
    assert "password" not in name_fingerprint(b"k", "my password")


def test_a_limit_s_delays():
    limit = Limit(free=2, first_delay=1.0, max_delay=8.0, forget_after=60)
    assert [limit.delay(n) for n in range(1, 9)] == [0, 0, 1, 2, 4, 8, 8, 8]
    assert limit.doublings() == 3


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
