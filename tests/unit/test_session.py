"""The session object: ISession, checked values, flash queues, change flags."""

from __future__ import annotations

import math

import pytest
from pyramid.interfaces import ISession
from zope.interface.verify import verifyObject

from myapp.sessions.request.session import Session


def make(data=None, new=False) -> Session:
    return Session(data, created=1000.0, new=new)


def test_verify_isession():
    assert verifyObject(ISession, make())


def test_setting_a_bad_value_fails_at_once():
    session = make()
    with pytest.raises(ValueError, match="'price'"):
        session["price"] = math.nan
    with pytest.raises(TypeError, match="'when'"):
        session.update(when=object())
    with pytest.raises(ValueError, match="'name'"):
        session.setdefault("name", "a\x00")
    assert dict(session) == {}


def test_flash_queues():
    session = make()
    session.flash("one")
    session.flash("one", allow_duplicate=False)
    session.flash("other", queue="errors")
    assert session.peek_flash() == ["one"]
    assert session.pop_flash() == ["one"]
    assert session.pop_flash() == []
    assert session.pop_flash("errors") == ["other"]


def test_invalidate_empties_and_flags():
    session = make({"a": 1})
    session.set_user("7")
    session.invalidate()
    assert dict(session) == {}
    assert session.invalidated and session.user_id is None


def test_set_user_rotates():
    session = make()
    session.set_user(42)
    assert session.user_id == "42" and session.rotated


def test_repr_never_shows_values():
    session = make({"secret": "hunter2"})
    assert "hunter2" not in repr(session)
