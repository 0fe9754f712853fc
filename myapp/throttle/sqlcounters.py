"""Failure counters in the ``signin_throttle`` table (PostgreSQL, or SQLite in development).

Each call is its own short transaction on the site's engine, never the request's: a
failure is counted even though the request that saw it ends normally, and a check
holds no lock while a password is hashed.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from myapp.models.signin_throttle import signin_throttle as table

from .base import FailureCounters

# Rows whose counters are forgotten are deleted now and then, a batch at a time.
CLEAN_EVERY = 200
CLEAN_BATCH = 1_000


class SqlCounters(FailureCounters):
    name = "sql"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert
        self._failures = 0

    def blocked_for(self, keys: list[str], now: float) -> float:
        with self.engine.connect() as conn:
            until = conn.execute(
                sa.select(sa.func.max(table.c.blocked_until)).where(table.c.key.in_(keys))
            ).scalar()
        return max(0.0, (until or 0.0) - now)

    def add_failure(self, key: str, now: float, forget_after: float) -> int:
        forgotten = table.c.last_failure < now - forget_after
        insert = self._insert(table).values(
            key=key, failures=1, last_failure=now, blocked_until=0.0
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "failures": sa.case((forgotten, 1), else_=table.c.failures + 1),
                "blocked_until": sa.case((forgotten, 0.0), else_=table.c.blocked_until),
                "last_failure": now,
            },
        ).returning(table.c.failures)
        with self.engine.begin() as conn:
            failures = conn.execute(upsert).scalar_one()
        self._failures += 1
        if self._failures % CLEAN_EVERY == 0:
            self._clean(now, forget_after)
        return int(failures)

    def block(self, key: str, until: float, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(table)
                .where(table.c.key == key, table.c.blocked_until < until)
                .values(blocked_until=until)
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
