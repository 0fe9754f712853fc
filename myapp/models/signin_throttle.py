"""The ``signin_throttle`` table: failed sign-ins per account and per client address.

Times are seconds since the epoch (floats), so PostgreSQL and SQLite read them alike.
"""

from sqlalchemy import Column, Float, Integer, String, Table

from .meta import metadata

signin_throttle = Table(
    "signin_throttle",
    metadata,
    Column("key", String(64), primary_key=True, comment="SHA-256 of account:NAME or address:IP"),
    Column("failures", Integer, nullable=False),
    Column("last_failure", Float, nullable=False),
    Column("blocked_until", Float, nullable=False),
)
