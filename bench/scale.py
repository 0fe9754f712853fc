"""The scale series: load/save latency vs table size, purge throughput, memory store RSS."""

from __future__ import annotations

import hashlib
import random
import statistics
import threading
import time

import psycopg

from bench.apps import SECRET
from bench.probes import rss_bytes
from myapp.sessions.database import get_engine
from myapp.sessions.operations.purge import purge_store
from myapp.sessions.stores.authenticator import RecordAuthenticator
from myapp.sessions.stores.base import SessionRecord
from myapp.sessions.stores.memorystore import MemoryStore
from myapp.sessions.stores.sqlstore import SqlStore
from myapp.sessions.stores.sqlstore.store import row_mac, unverified_record
from tests.support.databases import create_database, drop_database, migrate, pg_url

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
PURGE_ROWS, QUICK_PURGE_ROWS = 1_000_000, 100_000
PURGE_BATCH = 1_000  # session.purge_batch_size's default
SAMPLES = 2_000

# Keys are the SHA-256 hex of the row number, so the benchmark can name any row.
_FILL = """
INSERT INTO user_sessions
    (id, data, created_at, last_active_at, expires_at, expires_bucket, user_id, version)
SELECT encode(sha256(i::text::bytea), 'hex'), '{"n": 1, "csrf": "0123456789abcdef"}',
       now(), now(), now() + %(ttl)s * interval '1 second',
       (floor(extract(epoch FROM now()))::bigint + %(ttl)s) / 3600 * 3600 + 3600, NULL, 1
FROM generate_series(%(start)s, %(stop)s - 1) AS i
"""


# The columns of SqlStatements.record_columns, in their order.
_RECORDS = (
    "SELECT id, CAST(data AS TEXT), created_at, last_active_at, expires_at, user_id, "
    "user_agent, version, mac FROM user_sessions WHERE id = ANY(%s)"
)


def key_of(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def fill(dsn: str, start: int, stop: int, *, ttl: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_FILL, {"start": start, "stop": stop, "ttl": ttl})
        conn.execute("VACUUM ANALYZE user_sessions")


def sign(store: SqlStore, dsn: str, keys: list[str]) -> None:
    """Give the rows of ``keys`` their authenticators (the fill writes none), as
    ``myapp-sessions sign-unsigned`` would; not part of any timing."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(_RECORDS, (keys,)).fetchall()
        macs = []
        for row in rows:
            record, _ = unverified_record(row)
            mac = row_mac(store.authenticator, record, record.version, store.statements)
            macs.append((mac, record.key))
        conn.cursor().executemany("UPDATE user_sessions SET mac = %s WHERE id = %s", macs)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(tables: list[tuple[int, SqlStore, str]]) -> list[dict[str, float]]:
    """Median and p99 of load and save at each table size, on random rows, one
    transaction each.

    The sizes are sampled in turn, one load and one save of each per step, so a
    change in the host's speed during the series falls on every size alike (this
    host moves between two speeds; sizes measured one after the other compared
    those speeds, not the sizes).
    """
    samples = {rows: random.sample(range(rows), SAMPLES) for rows, _, _ in tables}
    for rows, store, dsn in tables:
        sign(store, dsn, [key_of(i) for i in samples[rows]])
    loads = {rows: [] for rows, _, _ in tables}
    saves = {rows: [] for rows, _, _ in tables}
    now = time.time()
    for step in range(SAMPLES):
        for rows, store, _ in tables:
            key = key_of(samples[rows][step])
            started = time.perf_counter()
            record = store.load(key, now)
            loads[rows].append(time.perf_counter() - started)
            assert record is not None, key
            changed = record.with_changes(
                data='{"n": 2, "csrf": "0123456789abcdef"}', last_active=now
            )
            started = time.perf_counter()
            store.save(changed, record.version)
            saves[rows].append(time.perf_counter() - started)
    return [
        {
            "rows": rows,
            "load_us": statistics.median(loads[rows]) * 1e6,
            "load_p99_us": _percentile(loads[rows], 0.99) * 1e6,
            "save_us": statistics.median(saves[rows]) * 1e6,
            "save_p99_us": _percentile(saves[rows], 0.99) * 1e6,
        }
        for rows, _, _ in tables
    ]


def purge(store: SqlStore, dsn: str, rows: int) -> dict[str, float]:
    """Purge ``rows`` expired sessions in batches while a reader loads live ones."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE user_sessions")
    live = 10_000
    fill(dsn, 0, live, ttl=86_400)
    fill(dsn, live, live + rows, ttl=-3_600)
    sign(store, dsn, [key_of(i) for i in range(live)])  # the reader loads real sessions
    stop, waits = threading.Event(), []

    def reader() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            store.load(key_of(random.randrange(live)), time.time())
            waits.append(time.perf_counter() - started)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    # The operator's purge (``myapp-sessions purge``): batches, each its own transaction.
    result = purge_store(store, batch_size=PURGE_BATCH, now=time.time())
    stop.set()
    thread.join()
    return {
        "rows": result.deleted,
        "batch_size": PURGE_BATCH,
        "batches": result.batches,
        "seconds": result.seconds,
        "rows_per_second": result.deleted / result.seconds,
        "max_batch_ms": result.longest_batch * 1e3,
        "reads_during_purge": len(waits),
        "max_read_wait_ms": max(waits) * 1e3,
        "median_read_ms": statistics.median(waits) * 1e3,
    }


def memory(max_entries: int = 50_000) -> dict[str, float]:
    """RSS growth per stored session (filling to the bound), then 3x the bound saved."""
    store = MemoryStore(max_entries)
    now = time.time()

    def save(i: int) -> None:
        store.save(
            SessionRecord(
                key=key_of(i),
                data='{"n": 1, "csrf": "0123456789abcdef"}',
                created=now,
                last_active=now,
                expires=now + 86_400,
                user_agent="Mozilla/5.0 (X11; Linux x86_64) bench",
            ),
            None,
        )

    before = rss_bytes_self()
    for i in range(max_entries):
        save(i)
    full = rss_bytes_self()
    inserted = max_entries * 3
    for i in range(max_entries, inserted):
        save(i)
    return {
        "max_entries": max_entries,
        "inserted": inserted,
        "stored": len(store),
        "evictions": store.evictions,
        "rss_bytes_per_session": (full - before) / max_entries,
        "rss_growth_after_bound_bytes": rss_bytes_self() - full,
    }


def rss_bytes_self() -> int:
    import os

    return rss_bytes(os.getpid())


def shared_buffers(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SHOW shared_buffers").fetchone()[0]


def table_bytes(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT pg_total_relation_size('user_sessions')").fetchone()[0]


def run(*, quick: bool = False) -> dict:
    """One database per table size, filled, then sampled in turn (see ``latency``);
    the purge runs in the largest one."""
    tables: list[tuple[int, SqlStore, str]] = []
    databases: list[str] = []
    try:
        for size in QUICK_SIZES if quick else SIZES:
            dbname = create_database(prefix="myapp_bench_scale")
            databases.append(dbname)
            dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}"
            url = pg_url(dbname)
            migrate(url)
            store = SqlStore(
                get_engine({"sqlalchemy.url": url}),
                authenticator=RecordAuthenticator((SECRET.encode(),), "sql"),
            )
            store.check()  # as the site's start-up does (it finds how data is kept)
            tables.append((size, store, dsn))
            fill(dsn, 0, size, ttl=86_400)
        series = latency(tables)
        for row, (_, _, dsn) in zip(series, tables, strict=True):
            row["table_bytes"] = table_bytes(dsn)
            print(
                f"scale {row['rows']:>9,} rows ({row['table_bytes'] / 2**20:,.0f} MiB with "
                f"indexes): load {row['load_us']:.0f} us, save {row['save_us']:.0f} us",
                flush=True,
            )
        _, store, dsn = tables[-1]
        buffers = shared_buffers(dsn)
        print(f"scale: PostgreSQL shared_buffers {buffers}", flush=True)
        purged = purge(store, dsn, QUICK_PURGE_ROWS if quick else PURGE_ROWS)
        print(
            f"purge: {purged['rows_per_second']:,.0f} rows/s, longest read "
            f"{purged['max_read_wait_ms']:.1f} ms",
            flush=True,
        )
    finally:
        for _, store, _ in tables:
            store.close()  # the engine and the store's autocommit pool
        for dbname in databases:
            drop_database(dbname)
    return {
        "latency": series,
        "interleaved": True,
        "shared_buffers": buffers,
        "purge": purged,
        "memory": memory(),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2))
