"""Attempt counters in the ``signin_throttle`` table (PostgreSQL, or SQLite in development).

Each call is one short statement in a transaction of its own, on an engine of its own
(``throttle_engine``): never the request's transaction, whose connection the request
may be holding, and never a second connection of the request's pool. Its connections
are held for one statement and their holders wait on nothing else, so sign-ins at any
thread count cannot deadlock on a pool.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from myapp.models.signin_throttle import signin_throttle as table
from myapp.sessions.database import get_engine

from .base import AttemptCounters, Limit

# Rows whose counters are forgotten are deleted now and then, a batch at a time.
CLEAN_EVERY = 200
CLEAN_BATCH = 1_000
# The throttle's own pool: a statement at a time per connection, so a few suffice; a
# sign-in that cannot get one within POOL_TIMEOUT seconds is refused (503).
POOL_SIZE = 2
POOL_OVERFLOW = 4
POOL_TIMEOUT = 5


def throttle_engine(settings: dict[str, Any]) -> Engine:
    """An engine like the site's (same URL and hardening), with a small pool of its own."""
    own = {**settings}
    for key in ("pool_size", "max_overflow", "pool_timeout"):
        own.pop(f"sqlalchemy.{key}", None)
    if ":memory:" not in str(settings.get("sqlalchemy.url", "")):
        own.update(
            {
                "sqlalchemy.pool_size": POOL_SIZE,
                "sqlalchemy.max_overflow": POOL_OVERFLOW,
                "sqlalchemy.pool_timeout": POOL_TIMEOUT,
            }
        )
    own["myapp.application_name"] = "myapp-signin-throttle"
    return get_engine(own)


class SqlCounters(AttemptCounters):
    name = "sql"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert
        self._taken = 0

    def take(self, key: str, now: float, limit: Limit) -> int | None:
        forgotten = table.c.last_failure < now - limit.forget_after
        count = sa.case((forgotten, 1), else_=table.c.failures + 1)
        upsert = (
            self._insert(table)
            .values(
                key=key,
                failures=1,
                last_failure=now,
                blocked_until=now + limit.delay(1) if limit.delay(1) else 0.0,
            )
            .on_conflict_do_update(
                index_elements=[table.c.key],
                set_={
                    "failures": count,
                    "last_failure": now,
                    "blocked_until": _blocked_until(count, now, limit, forgotten),
                },
                # A blocked key is left as it is, and no row comes back.
                where=sa.or_(table.c.blocked_until <= now, forgotten),
            )
            .returning(table.c.failures)
        )
        with self.engine.begin() as conn:
            taken = conn.execute(upsert).scalar_one_or_none()
        self._taken += 1
        if self._taken % CLEAN_EVERY == 0:
            self._clean(now, limit.forget_after)
        return None if taken is None else int(taken)

    def blocked_for(self, keys: list[str], now: float) -> float:
        with self.engine.connect() as conn:
            until = conn.execute(
                sa.select(sa.func.max(table.c.blocked_until)).where(table.c.key.in_(keys))
            ).scalar()
        return max(0.0, (until or 0.0) - now)

    def give_back(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(table)
                .where(table.c.key == key, table.c.failures > 0)
                .values(failures=table.c.failures - 1)
            )

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(table).where(table.c.key == key))

    def _clean(self, now: float, forget_after: float) -> None:
        stale = (
            sa.select(table.c.key)
            .where(table.c.last_failure < now - forget_after, table.c.blocked_until < now)
            .limit(CLEAN_BATCH)
        )
        with self.engine.begin() as conn:
            conn.execute(sa.delete(table).where(table.c.key.in_(stale)))


def _blocked_until(
    count: sa.ColumnElement[Any], now: float, limit: Limit, forgotten: sa.ColumnElement[bool]
) -> sa.ColumnElement[Any]:
    """``now`` + the delay the new ``count`` begins, as SQL both databases run (a CASE
    over the doublings below the cap: SQLite may lack ``power()``)."""
    over = count - limit.free
    steps = limit.doublings()
    whens = [(over <= 0, sa.case((forgotten, 0.0), else_=table.c.blocked_until))]
    whens += [(over == k, now + limit.delay(limit.free + k)) for k in range(1, steps + 1)]
    return sa.case(*whens, else_=now + limit.max_delay)
