"""Failover in a request, through the session factory, on fake stores."""

from __future__ import annotations

import logging

import pytest
from pyramid.request import Request

from myapp.sessions.exceptions import SessionStoreUnavailable
from myapp.sessions.options import SessionOptions
from myapp.sessions.request.factory import SessionFactory, new_token, storage_key
from myapp.sessions.request.storeio import UnavailableNotice
from myapp.sessions.stores.base import SessionRecord
from tests.support.fakes import DownStore, FakeStore, make_chain


def _request_with_session(factory, store, data: str = '{"cart":[1]}'):
    token = new_token()
    now = factory.clock()
    store.save(SessionRecord(storage_key(token), data, now, now, now + 600), None)
    return Request.blank("/", headers={"Cookie": f"session={factory.cookie.signer.dumps(token)}"})


def _factory(chain, **options):
    return SessionFactory(SessionOptions(secrets=("x" * 40,), **options), chain)


def test_runtime_failover_serves_the_request_from_the_next_store():
    down, standby = DownStore("a"), FakeStore("b")
    chain = make_chain(down, standby, runtime_failover=True)
    chain.select()
    factory = _factory(chain, runtime_failover=True)
    session = factory(_request_with_session(factory, standby))
    assert session["cart"] == [1]
    assert chain.breakers[0].failing


def test_without_failover_a_failing_store_is_a_503_not_a_lost_session():
    down, standby = DownStore("a"), FakeStore("b")
    chain = make_chain(down, standby)
    chain.select()
    factory = _factory(chain)
    with pytest.raises(SessionStoreUnavailable):
        factory(_request_with_session(factory, standby))


def test_a_get_served_without_its_session_keeps_the_cookie_while_a_store_is_open():
    first, second = FakeStore("a"), FakeStore("b")
    chain = make_chain(first, second, runtime_failover=True, breaker_threshold=1)
    chain.select()
    factory = _factory(chain, runtime_failover=True)
    request = _request_with_session(factory, first)
    chain.failed(0, "down", timeout=True)  # the session's store is refused now
    session = factory(request)
    assert session.new and not session
    assert request.environ["myapp.sessions.unavailable"] is True


def test_the_unavailable_notice_is_said_once_a_minute_with_what_it_kept_quiet(caplog):
    now = [1000.0]
    notice = UnavailableNotice(every_seconds=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="myapp.sessions.request.storeio"):
        notice.say("redis", "'sql'")
        now[0] += 30
        notice.say("redis", "'sql'")
        notice.say("redis", "'sql'")
        assert len(caplog.records) == 1
        now[0] += 31
        notice.say("redis", "'sql'")
    assert len(caplog.records) == 2
    assert "(2 more like it" in caplog.records[1].getMessage()
