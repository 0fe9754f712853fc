"""Fixtures that give a test its own PostgreSQL or Redis server to kill, freeze and restart."""

from collections.abc import Iterator

import pytest

from tests.servers import ThrowawayPostgres, ThrowawayRedis

_THROWAWAY_FIXTURES = frozenset({"throwaway_pg", "throwaway_redis"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a throwaway server as slow."""
    # Marks on fixtures have no effect, so the mark goes on the tests that use them.
    # tryfirst: the mark must be in place before `-m "not slow"` deselects items.
    for item in items:
        if _THROWAWAY_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def throwaway_pg() -> Iterator[ThrowawayPostgres]:
    """A running private PostgreSQL server, removed after the test."""
    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A running private Redis server, removed after the test."""
    with ThrowawayRedis() as server:
        yield server
