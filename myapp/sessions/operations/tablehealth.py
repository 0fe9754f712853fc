"""How well ``user_sessions`` keeps itself small: heap-only updates, dead rows, sizes, vacuum.

Read from PostgreSQL's statistics views (nothing is counted by the app), for
``myapp-sessions stats`` and ``/metrics``; see docs/operations.md, "Keeping
user_sessions small", for what each verdict means and what to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

#: Below this share of heap-only updates, writes are touching indexes.
HOT_SHARE_FLOOR = 0.9
#: Above this share of dead rows, vacuum is not keeping up.
DEAD_SHARE_CEILING = 0.2
#: Below this many updates (or dead rows) the shares mean nothing yet.
MIN_ROWS = 10_000
#: Indexes this many times the table's size have bloated.
INDEX_RATIO_CEILING = 2.0
#: Dead rows waiting longer than this since any vacuum are worth a look.
VACUUM_AGE_CEILING = 86_400.0

_QUERY = sa.text(
    """
    SELECT s.n_tup_upd, s.n_tup_hot_upd, s.n_live_tup, s.n_dead_tup,
           pg_table_size(c.oid) - coalesce(pg_total_relation_size(c.reltoastrelid), 0),
           pg_indexes_size(c.oid),
           coalesce(pg_total_relation_size(c.reltoastrelid), 0),
           extract(epoch FROM greatest(s.last_vacuum, s.last_autovacuum))::float8,
           s.vacuum_count + s.autovacuum_count
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.relname = 'user_sessions' AND s.schemaname = current_schema()
    """
)


@dataclass(frozen=True, slots=True)
class TableHealth:
    """One reading of ``user_sessions``; counters since the statistics were last reset."""

    updates: int
    hot_updates: int
    live_rows: int
    dead_rows: int
    table_bytes: int  # the heap (with its free-space and visibility maps)
    index_bytes: int
    toast_bytes: int  # the TOAST table and its index: session data over ~2 KB
    last_vacuum: float | None  # Unix time of the last VACUUM or autovacuum, if any
    vacuums: int
    read_at: float

    @property
    def hot_share(self) -> float | None:
        return self.hot_updates / self.updates if self.updates else None

    @property
    def dead_share(self) -> float:
        total = self.live_rows + self.dead_rows
        return self.dead_rows / total if total else 0.0

    @property
    def total_bytes(self) -> int:
        return self.table_bytes + self.index_bytes + self.toast_bytes

    def problems(self) -> list[str]:
        """What needs an operator's attention, in plain words with the fix; [] if nothing."""
        found = []
        share = self.hot_share
        if share is not None and self.updates >= MIN_ROWS and share < HOT_SHARE_FLOOR:
            found.append(
                f"only {share:.0%} of session updates are heap-only (HOT): writes are "
                "adding index entries. Check that `alembic upgrade head` has run "
                "(ix_user_sessions_expires_at must be gone) and that no index was added on "
                "a column every write changes"
            )
        if self.dead_rows >= MIN_ROWS and self.dead_share > DEAD_SHARE_CEILING:
            found.append(
                f"{self.dead_share:.0%} of the rows are dead ({self.dead_rows:,}): vacuum is "
                "behind. Look for long-running transactions (pg_stat_activity.xact_start), "
                "then run `VACUUM (VERBOSE) user_sessions`"
            )
        if (
            self.dead_rows >= MIN_ROWS
            and self.last_vacuum is not None
            and self.read_at - self.last_vacuum > VACUUM_AGE_CEILING
        ):
            found.append(
                "no vacuum for more than a day while dead rows pile up: check that "
                "autovacuum is on (SHOW autovacuum) and not cancelled by lock waits"
            )
        if self.table_bytes > 1 << 20 and self.index_bytes > INDEX_RATIO_CEILING * (
            self.table_bytes
        ):
            found.append(
                f"the indexes ({mib(self.index_bytes)}) are over {INDEX_RATIO_CEILING:g}x "
                f"the table ({mib(self.table_bytes)}): they have bloated. "
                "`REINDEX TABLE CONCURRENTLY user_sessions` rebuilds them without blocking"
            )
        return found

    def verdict(self) -> str:
        problems = self.problems()
        if not problems:
            return "healthy: session writes stay heap-only and vacuum keeps up"
        return "needs attention: " + "; ".join(problems)

    def lines(self) -> list[str]:
        """The reading for a terminal."""
        share = "-" if self.hot_share is None else f"{self.hot_share:.1%}"
        vacuumed = (
            "never"
            if self.last_vacuum is None
            else f"{age(self.read_at - self.last_vacuum)} ago ({self.vacuums} in all)"
        )
        return [
            f"heap-only updates  {share} of {self.updates:,}",
            f"rows               {self.live_rows:,} live, {self.dead_rows:,} dead "
            f"({self.dead_share:.0%})",
            f"size               {mib(self.total_bytes)}: table {mib(self.table_bytes)}, "
            f"indexes {mib(self.index_bytes)}, toast {mib(self.toast_bytes)}",
            f"last vacuum        {vacuumed}",
            f"verdict            {self.verdict()}",
        ]


def mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"


def age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def read_table_health(engine: Engine, *, timeout_ms: int = 2000) -> TableHealth | None:
    """The health of ``user_sessions``; None when the database is not PostgreSQL or the
    table is not there. Raises SQLAlchemyError when the database cannot answer."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        conn.execute(sa.text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
        row = conn.execute(_QUERY).first()
        conn.rollback()
    if row is None:
        return None
    upd, hot, live, dead, table, index, toast, vacuumed, vacuums = row
    return TableHealth(
        updates=int(upd),
        hot_updates=int(hot),
        live_rows=int(live),
        dead_rows=int(dead),
        table_bytes=int(table),
        index_bytes=int(index),
        toast_bytes=int(toast),
        last_vacuum=None if vacuumed is None else float(vacuumed),
        vacuums=int(vacuums),
        read_at=time.time(),
    )
