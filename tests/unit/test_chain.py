"""The store chain on fake stores: selection, fallback, breakers, failover and recovery."""

from __future__ import annotations

import logging

import pytest
from zope.interface.verify import verifyObject

from myapp.sessions.chain import build_chain
from myapp.sessions.events import SessionObserver
from myapp.sessions.exceptions import (
    NoStoreReady,
    StoreError,
)
from myapp.sessions.interfaces import IRequestBoundStore, ISessionStore
from tests.support.fakes import FakeStore, Recorder, make_chain


def test_the_fake_store_keeps_the_store_contract():
    store = FakeStore("a")
    verifyObject(ISessionStore, store)
    verifyObject(IRequestBoundStore, store.bind(object()))


def test_the_first_ready_store_serves_and_the_later_ones_are_checked_too():
    first, second = FakeStore("a"), FakeStore("b")
    chain = make_chain(first, second)
    assert chain.select() is first
    assert not chain.degraded
    assert second.checks == 1  # health knows whether a fallback would be ready
    assert chain.health()["status"] == "ok"


def test_a_store_that_is_not_ready_is_skipped_loudly(caplog):
    recorder = Recorder()
    first, second = FakeStore("a", ready=False), FakeStore("b")
    chain = make_chain(first, second, observer=recorder)
    with caplog.at_level(logging.WARNING, logger="myapp.sessions.chain"):
        assert chain.select() is second
    assert chain.degraded
    assert chain.breaker_open(0)  # refused until a probe finds it ready
    assert ("fallback", None, "b") in recorder.events
    assert "session store 'a' is not ready: switched off. Fix: switch it on" in caplog.text
    assert chain.health()["status"] == "degraded"


def test_no_ready_store_stops_start_up_naming_every_cause():
    chain = make_chain(FakeStore("a", ready=False), FakeStore("b", ready=False))
    with pytest.raises(NoStoreReady, match="a: switched off; b: switched off"):
        chain.select()


def test_a_store_that_cannot_be_built_is_recorded_as_not_ready():
    def build(name: str) -> FakeStore:
        if name == "a":
            raise ValueError("bad url")
        return FakeStore(name)

    chain = build_chain(("a", "b"), build, SessionObserver(), recheck_interval=0)
    for breaker in chain.breakers:
        breaker.ensure_probing = lambda: None
    assert chain.select().name == "b"
    assert chain.states[0].store is None
    assert "cannot be built: bad url" in (chain.states[0].cause or "")


def test_failures_open_the_breaker_at_the_threshold_without_failover():
    first, second = FakeStore("a"), FakeStore("b")
    chain = make_chain(first, second, breaker_threshold=2)
    chain.select()
    chain.failed(0, "refused")
    assert not chain.breaker_open(0)
    chain.failed(0, "a store: refused")  # a repeated store prefix is dropped
    assert chain.breaker_open(0)
    assert chain.active is first  # without runtime failover the process stays
    assert chain.health()["status"] == "failing"
    refusal = chain.refusal(0)
    assert isinstance(refusal, StoreError) and refusal.kind == "breaker_open"
    assert chain.health()["stores"][0]["cause"] == "refused"


def test_a_timeout_opens_the_breaker_at_once_and_failover_moves_the_process():
    recorder = Recorder()
    first, second = FakeStore("a"), FakeStore("b")
    chain = make_chain(first, second, breaker_threshold=5, runtime_failover=True, observer=recorder)
    chain.select()
    chain.failed(0, "no answer within 1s", timeout=True)
    assert chain.active is second
    assert chain.previous == [0]  # read through on a miss
    assert ("fallback", "a", "b") in recorder.events


def test_a_probe_that_finds_the_store_ready_brings_the_process_back():
    recorder = Recorder()
    first, second = FakeStore("a", ready=False), FakeStore("b")
    chain = make_chain(first, second, observer=recorder)
    chain.select()
    assert chain.active is second
    assert chain.breakers[0].probe_now() is False  # still down
    first.ready = True
    assert chain.breakers[0].probe_now() is True
    assert chain.active is first
    assert not chain.breaker_open(0)
    assert ("recovered", "b", "a") in recorder.events
    assert chain.previous == [1]  # sessions created meanwhile are read through


def test_read_through_looks_where_sessions_lived_and_reads_failing_stores_offline():
    first, second, third = FakeStore("a"), FakeStore("b"), FakeStore("c")
    chain = make_chain(first, second, third, runtime_failover=True)
    chain.select()
    chain.failed(0, "down", timeout=True)  # serves from b; a is open
    assert chain.read_through_stores(1) == [(first, True)]
    assert chain.unreachable_before(1) == ["a"]
    # A retried request that avoids b starts with c and reads b, then a offline.
    assert chain.serving_index(frozenset({"b"})) == 2
    assert chain.read_through_stores(2, frozenset({"b"})) == [(second, True), (first, True)]
    assert chain.read_through_stores(2) == [(second, False), (first, True)]


def test_next_store_skips_open_breakers_and_avoided_stores():
    stores = FakeStore("a"), FakeStore("b"), FakeStore("c")
    chain = make_chain(*stores, breaker_threshold=1)
    chain.select()
    chain.failed(1, "down")
    assert chain.next_store(0) == 2
    assert chain.next_store(0, frozenset({"c"})) is None
