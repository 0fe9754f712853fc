"""What a server process and the stores did: CPU time, transactions, Redis commands."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable

import psycopg
import redis

CLK_TCK = os.sysconf("SC_CLK_TCK")
ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
# Commands the probes themselves send; never charged to an app.
_OWN_COMMANDS = {"info", "ping", "hello", "client|setinfo", "select", "flushdb"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def app_stats(base_url: str, *, dispose: bool = False) -> dict:
    """The app's own counters (SQL statements by verb, Redis round trips)."""
    url = base_url + "/_bench/stats" + ("?dispose=1" if dispose else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def pg_transactions(dbname: str) -> int:
    """Committed + rolled back transactions of ``dbname`` (read from another database)."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (dbname,),
        ).fetchone()
    return int(row[0]) if row else 0


def pg_transactions_settled(dbname: str, timeout: float = 3.0) -> int:
    """Like :func:`pg_transactions`, once exiting backends have flushed their counters."""
    last = pg_transactions(dbname)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = pg_transactions(dbname)
        if now == last:
            return now
        last = now
    return last


def redis_commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started, minus the probes' own."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name.removeprefix("cmdstat_") not in _OWN_COMMANDS
    }


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    changes = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k: v for k, v in sorted(changes.items()) if v}


def per_call(fn: Callable[[], object], *, seconds: float = 1.0) -> tuple[float, float]:
    """Mean (wall, CPU) seconds per call of ``fn``, called back to back for ``seconds``."""
    for _ in range(50):
        fn()
    calls, started, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(100):
            fn()
        calls += 100
    return elapsed / calls, (time.process_time() - cpu) / calls


def raw_limits(pg_dsn: str, redis_url: str, *, seconds: float = 1.0) -> dict[str, float]:
    """Seconds per operation, one connection, sequential: the stores' own floor."""
    client = redis.Redis.from_url(redis_url)
    client.set("bench:raw", "x" * 100)
    results: dict[str, float] = {}

    def record(name: str, fn: Callable[[], object]) -> None:
        results[name], results[name + "_cpu"] = per_call(fn, seconds=seconds)

    record("redis_get", lambda: client.get("bench:raw"))
    record("redis_set", lambda: client.set("bench:raw", "x" * 100))
    client.delete("bench:raw")
    client.close()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TEMP TABLE raw (id text PRIMARY KEY, data jsonb)")
        conn.execute("INSERT INTO raw VALUES ('k', '{\"n\": 1}')")
        conn.commit()

        def select_in_transaction() -> None:
            conn.execute("SELECT data FROM raw WHERE id = %s", ("k",)).fetchone()
            conn.commit()

        def upsert() -> None:
            conn.execute(
                "INSERT INTO raw VALUES (%s, %s) "
                "ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data",
                ("k", '{"n": 2}'),
            )
            conn.commit()

        record("pg_select_txn", select_in_transaction)
        record("pg_upsert", upsert)
    return results
