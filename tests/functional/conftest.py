"""Fixtures for the site's pages: test accounts in both databases, and a closed port."""

from __future__ import annotations

import pytest

from tests.servers import free_port
from tests.support.site import ensure_users


@pytest.fixture(scope="session")
def site_users(postgres_url: str, sqlite_url: str) -> None:
    """alice and bob exist in the PostgreSQL and the SQLite test databases."""
    ensure_users(postgres_url)
    ensure_users(sqlite_url)


@pytest.fixture
def closed_port_url() -> str:
    """A PostgreSQL URL on a loopback port nothing listens on: connections are refused."""
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/myapp"
