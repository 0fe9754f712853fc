"""The cache's moved marker: a session that left the database for another store."""

from __future__ import annotations

import time

import pytest

from myapp.sessions.stores.base import StaleSession
from myapp.sessions.stores.cachedstore import TOMBSTONE, moved_version
from tests.support.counting import count_sql

from .test_cache import cached, cached_app, key_of

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def app(make_app, redis_prefix):
    return cached_app(make_app, redis_prefix)


def _written(app, value: str = "a"):
    app.app.get(f"/_t/write?value={value}")
    key = key_of(app)
    return key, app.store.primary.load(key, time.time())


def test_a_released_session_reads_as_a_miss_without_the_database(app):
    key, record = _written(app)
    app.store.release(record)
    assert moved_version(cached(app, key)) == record.version
    with count_sql(app.engine) as statements:
        assert app.store.load(key, time.time()) is None
        assert app.store.load_offline(key, time.time()) is None
    assert len(statements) == 0


def test_only_a_newer_version_replaces_the_marker(app):
    key, record = _written(app)
    app.store.release(record)
    app.store.cache.put(record, record.version, time.time())  # a late fill of the stale row
    assert moved_version(cached(app, key)) == record.version
    app.store.cache.put(record, record.version + 1, time.time())
    assert cached(app, key).version == record.version + 1


def test_an_ended_session_is_not_marked_moved(app):
    key, record = _written(app)
    app.store.delete(key)
    app.store.release(record)
    assert cached(app, key) == TOMBSTONE


def test_adopt_updates_the_stale_row_from_the_version_it_left_at(app):
    key, record = _written(app)
    app.store.release(record)
    moved_on = record.with_changes(data='{"value": "moved"}', version=0)
    assert app.store.adopt(moved_on) == record.version + 1
    assert '"moved"' in app.store.load(key, time.time()).data


def test_adopt_refuses_a_session_that_ended_here(app):
    key, record = _written(app)
    app.store.delete(key)
    with pytest.raises(StaleSession) as raised:
        app.store.adopt(record.with_changes(version=0))
    assert raised.value.gone


def test_adopt_lets_the_database_win_when_it_changed_after_the_move(app):
    key, record = _written(app)
    app.store.release(record)
    app.store.primary.save(record.with_changes(data='{"value": "here"}'), record.version)
    with pytest.raises(StaleSession) as raised:
        app.store.adopt(record.with_changes(data='{"value": "there"}', version=0))
    assert not raised.value.gone
    assert '"here"' in app.store.load(key, time.time()).data
