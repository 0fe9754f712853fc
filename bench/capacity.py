"""Capacity on paper: what 10 million sessions and 5,000 requests/s need, from measured costs.

Reads ``bench/results/latest.json`` (``make bench``: app CPU per request, PostgreSQL
read cost) and ``bench/results/sustained.json`` (``python -m bench.sustained``: PostgreSQL
CPU, WAL and bytes per session write, Redis memory per session), and writes
docs/capacity.md. Run it after either benchmark, so the document never drifts from them:

    python -m bench.capacity
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
DOC = Path(__file__).parents[1] / "docs" / "capacity.md"

# The site being sized. Change these, not the figures below them.
SESSIONS = 10_000_000
REQUESTS_PER_SECOND = 5_000
READ_SHARE = 0.80  # pages that only read their session
WRITE_SHARE = 0.15  # pages that change it (cart, sign-in)
NEW_SHARE = 0.05  # first visits: a new session
REISSUE_SHARE_OF_READS = 0.05  # reads whose expiry is moved (session.reissue_time passed)
LARGE_SESSION_SHARE = 0.10  # sessions of ~10 KB (big carts, many flash messages)
TARGET_UTILISATION = 0.6  # cores busy at peak, leaving room for bursts
TIMEOUT_HOURS = 24  # session.timeout; expired rows wait up to an hour more for the purge
REDIS_OVERHEAD = 1.5  # fragmentation and replication buffers over used_memory


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def compute(latest: dict, sustained: dict) -> dict:
    ours = latest["results"]["ours-sql-pg"]
    small = sustained["variants"]["ours-small"]
    large = sustained["variants"].get("ours-large")
    redis = sustained.get("redis") or {}
    rps = REQUESTS_PER_SECOND
    reads, writes, new = rps * READ_SHARE, rps * WRITE_SHARE, rps * NEW_SHARE
    reissues = reads * REISSUE_SHARE_OF_READS
    session_writes = writes + new + reissues

    app_cpu_us = (
        reads * ours["read"]["cpu_us"]
        + writes * ours["write"]["cpu_us"]
        + new * ours["new"]["cpu_us"]
    ) / rps
    app_cores = rps * app_cpu_us / 1e6 / TARGET_UTILISATION
    # A read's PostgreSQL CPU is at most its round trip less the client's CPU
    # (latest.json's raw figures, a SELECT in its own transaction): an upper bound.
    raw = latest["raw"]
    pg_read_us = max(0.0, (raw["pg_select_txn"] - raw["pg_select_txn_cpu"]) * 1e6)
    pg_write_us = small["pg_server_cpu_us_per_write"]
    if large is not None:
        pg_write_us = (1 - LARGE_SESSION_SHARE) * pg_write_us + LARGE_SESSION_SHARE * large[
            "pg_server_cpu_us_per_write"
        ]
    pg_cpu = (reads + writes) * pg_read_us / 1e6 + session_writes * pg_write_us / 1e6
    pg_cores = pg_cpu / TARGET_UTILISATION

    row_bytes = small["size_after_run"]["total"] / small["sessions"]
    if large is not None:
        # The benchmark writes a large session every few milliseconds, faster than
        # autovacuum's one-minute naptime can reclaim its TOAST: its size after the run
        # is a burst's, not a steady state. Its live size grows as a small session's.
        large_bytes = large["size_after_first_write"]["total"] / large["sessions"]
        row_bytes = (1 - LARGE_SESSION_SHARE) * row_bytes + LARGE_SESSION_SHARE * (
            large_bytes * small["growth"]
        )
    rows_on_disk = SESSIONS * (1 + 1 / TIMEOUT_HOURS)  # plus up to an hour of expired rows
    table_bytes = rows_on_disk * row_bytes

    wal_per_write = small["wal_bytes_per_write"]
    if large is not None:
        wal_per_write = (1 - LARGE_SESSION_SHARE) * wal_per_write + LARGE_SESSION_SHARE * large[
            "wal_bytes_per_write"
        ]
    wal_per_day = session_writes * wal_per_write * 86_400
    redis_bytes = SESSIONS * redis.get("bytes_per_session", float("nan")) * REDIS_OVERHEAD
    return {
        "reads": reads,
        "writes": writes,
        "new": new,
        "reissues": reissues,
        "session_writes": session_writes,
        "app_cpu_us": app_cpu_us,
        "app_cores": app_cores,
        "app_processes": math.ceil(app_cores),
        "pg_read_us": pg_read_us,
        "pg_write_us": pg_write_us,
        "pg_cores": pg_cores,
        "vacuum_share": small["background_cpu_share"],
        "row_bytes": row_bytes,
        "table_bytes": table_bytes,
        "wal_per_write": wal_per_write,
        "wal_per_day": wal_per_day,
        "redis_per_session": redis.get("bytes_per_session"),
        "redis_bytes": redis_bytes,
        "hot_share": small["hot_share"],
    }


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def markdown(c: dict, latest: dict, sustained: dict) -> str:
    ours = latest["results"]["ours-sql-pg"]
    small = sustained["variants"]["ours-small"]
    large = sustained["variants"].get("ours-large")
    redis = sustained.get("redis") or {}
    redis_line = (
        f"{c['redis_per_session']:,.0f} B of `used_memory` per session stored by the Redis "
        f"store ({redis['sessions']:,} sessions of ~{redis['payload_bytes']} B)"
        if c["redis_per_session"]
        else "not measured"
    )
    large_line = (
        f"; ~10 KB sessions: {large['pg_server_cpu_us_per_write']:.0f} us, "
        f"{large['wal_bytes_per_write']:,.0f} B of WAL and "
        f"{large['size_after_first_write']['total'] / large['sessions']:,.0f} B on disk "
        "each after its first write (TOAST)"
        if large
        else ""
    )
    rows = "\n".join(
        f"| {resource} | **{need}** | {source} |"
        for resource, need, source in (
            (
                "app processes (one per core, 4 threads each)",
                f"{c['app_processes']} cores ({c['app_cores']:.1f})",
                f"{REQUESTS_PER_SECOND:,} req/s x {c['app_cpu_us']:.0f} us / "
                f"{TARGET_UTILISATION:.0%}",
            ),
            (
                "PostgreSQL cores",
                f"{math.ceil(c['pg_cores'])} ({c['pg_cores']:.1f})",
                f"{c['reads'] + c['writes']:,.0f} reads/s x {c['pg_read_us']:.0f} us + "
                f"{c['session_writes']:,.0f} writes/s x {c['pg_write_us']:.0f} us, "
                f"/ {TARGET_UTILISATION:.0%}",
            ),
            (
                "PostgreSQL disk for user_sessions",
                gib(c["table_bytes"]),
                f"{SESSIONS:,} sessions (+1 h of expired ones) x {c['row_bytes']:,.0f} B",
            ),
            (
                "WAL per day",
                gib(c["wal_per_day"]),
                f"{c['session_writes']:,.0f} writes/s x {c['wal_per_write']:,.0f} B x 86,400 s",
            ),
            (
                "vacuum's share of PostgreSQL CPU",
                f"{c['vacuum_share']:.0%}",
                "background CPU in the sustained run (autovacuum, checkpointer, WAL writer)",
            ),
            (
                "Redis memory, every session cached",
                gib(c["redis_bytes"]),
                f"{SESSIONS:,} x {c['redis_per_session'] or 0:,.0f} B x {REDIS_OVERHEAD} "
                "(fragmentation, replication)",
            ),
        )
    )
    return f"""# Capacity

What a site with **{SESSIONS:,} sessions** and **{REQUESTS_PER_SECOND:,} requests/s** needs,
computed from the costs this project's benchmarks measure. Generated by
`python -m bench.capacity` from `bench/results/latest.json` and
`bench/results/sustained.json`; rerun it after either benchmark (`make bench` does) and
this page follows. The assumptions are constants at the top of `bench/capacity.py`.

## Assumptions

- Requests: {READ_SHARE:.0%} only read their session, {WRITE_SHARE:.0%} change it,
  {NEW_SHARE:.0%} start one; {REISSUE_SHARE_OF_READS:.0%} of the reads move its expiry (a
  reissue). That is {c["session_writes"]:,.0f} session writes/s
  ({c["writes"]:,.0f} saves, {c["new"]:,.0f} new, {c["reissues"]:,.0f} reissues).
- {LARGE_SESSION_SHARE:.0%} of the sessions hold ~10 KB (past the TOAST threshold), the
  rest ~{small["payload_bytes"]} B.
- Cores are sized for {TARGET_UTILISATION:.0%} busy at this rate, leaving room for bursts.
- `session.timeout` = {TIMEOUT_HOURS} h; the purge runs at least hourly.

## Measured costs

- App CPU per request (`make bench`, waitress in-process, sql store on PostgreSQL):
  read {ours["read"]["cpu_us"]:.0f} us, write {ours["write"]["cpu_us"]:.0f} us, new
  session {ours["new"]["cpu_us"]:.0f} us; weighted {c["app_cpu_us"]:.0f} us.
- PostgreSQL CPU per session write, autovacuum, checkpoints and WAL writer included
  (`bench.sustained`, small sessions): {small["pg_server_cpu_us_per_write"]:.0f} us,
  of which {small["background_cpu_share"]:.0%} in background processes{large_line}.
- PostgreSQL CPU per session read: at most {c["pg_read_us"]:.0f} us (a SELECT's round trip
  less the client's CPU; an upper bound).
- Bytes on disk per session after 20 writes each (table, indexes and TOAST, dead space
  included): {small["size_after_run"]["total"] / small["sessions"]:,.0f} B for small ones.
- WAL per session write: {small["wal_bytes_per_write"]:,.0f} B (small); heap-only
  updates: {c["hot_share"]:.1%}.
- Redis: {redis_line}.

## What it takes

| resource | need | from |
|---|---|---|
{rows}

Reading it:

- The app tier needs {c["app_cores"] / c["pg_cores"]:.1f}x the cores PostgreSQL needs: the
  Python process around a request does more work than the database behind it.
- WAL per day is what a standby replays and what archiving stores; keep
  `max_wal_size` above an hour of it (WAL per day / 24) so checkpoints are spaced by
  time, not by volume.
- Disk holds with heap-only updates and the purge: without them (a Django-style table,
  an indexed expiry rewritten on every save) the sustained benchmark grew the table
  and its indexes {sustained["variants"].get("django-small", {}).get("growth", float("nan")):.1f}x
  over 20 writes per session, where ours grew {small["growth"]:.2f}x.
- The host behind these figures is a loaded 2-core virtual machine; treat them as the
  order of magnitude, and re-measure on the real hardware.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latest", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--sustained", type=Path, default=RESULTS / "sustained.json")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args(argv)
    latest, sustained = load(args.latest), load(args.sustained)
    figures = compute(latest, sustained)
    args.out.write_text(markdown(figures, latest, sustained))
    print(
        f"capacity: {figures['app_processes']} app cores, {figures['pg_cores']:.1f} PostgreSQL "
        f"cores, {gib(figures['table_bytes'])} on disk, {gib(figures['wal_per_day'])} WAL/day, "
        f"{gib(figures['redis_bytes'])} Redis -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
