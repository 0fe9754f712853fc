"""Sustained session writes: does user_sessions stay small when every session is written 20 times?

Each session is written ``rounds`` times: a first write (INSERT), then saves (changed
data) and, every fifth round, a reissue (the expiry moved, data unchanged), 60
simulated seconds apart, sessions starting at random moments of an hour, as shoppers
arrive. Writes go through the SQL store's own code path (``SqlStore.save`` and
``touch``, one autocommit statement each, as outside a request), not HTTP, so 2,000,000
writes take minutes. The peer is a Django-style table (``django_session``: the expiry
indexed and rewritten by every save) under the same load through the same driver.

Every variant runs in a fresh database on a throwaway PostgreSQL 15 with its default
autovacuum (the shared development server has autovacuum off), full_page_writes on and
128 MB of shared buffers; fsync and synchronous_commit are off so the figures measure
the database's work rather than this machine's disk flushes.

    python -m bench.sustained                    # 100,000 small and 20,000 10 KB sessions x 20
    python -m bench.sustained --sessions 5000    # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

import psycopg

from myapp.sessions.database import get_engine
from myapp.sessions.stores.authenticator import RecordAuthenticator
from myapp.sessions.stores.base import SessionRecord
from myapp.sessions.stores.redisstore import RedisStore, make_client
from myapp.sessions.stores.sqlstore import SqlStore
from myapp.sessions.stores.sqlstore.table import EXPIRY_BUCKET_SECONDS, FILLFACTOR
from tests.servers import ThrowawayPostgres, ThrowawayRedis
from tests.support.databases import migrate

RESULTS = Path(__file__).parent / "results"
# The store signs every record, as the site's does (a fixed benchmark secret).
AUTHENTICATOR = RecordAuthenticator((b"sustained-benchmark-secret-0123456789",), "sql")
TIMEOUT = 86_400  # session.timeout's default
STEP = 60.0  # simulated seconds between two writes of one session
REISSUE_EVERY = 5  # every fifth write only moves the expiry (a read reissued)
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120"
LARGE_BYTES = 10_000
BLOBS = 64

# Targets (small sessions unless said otherwise).
HOT_SHARE_TARGET = 0.95
GROWTH_TARGET = 1.3
WAL_VS_PEER_TARGET = 0.8
P99_DRIFT_TARGET = 1.2

PEER_DDL = """
CREATE TABLE django_session (
    session_key varchar(64) PRIMARY KEY,
    session_data text NOT NULL,
    expire_date timestamptz NOT NULL
);
CREATE INDEX django_session_expire_date ON django_session (expire_date);
"""
PEER_INSERT = (
    "INSERT INTO django_session (session_key, session_data, expire_date) VALUES (%s, %s, %s)"
)
PEER_SAVE = "UPDATE django_session SET session_data = %s, expire_date = %s WHERE session_key = %s"
PEER_REISSUE = "UPDATE django_session SET expire_date = %s WHERE session_key = %s"


# ours: user_sessions as migrated; django: a Django-style django_session; before: the
# user_sessions of the previous release (expires_at indexed, fillfactor 100).
VARIANTS = ("ours-small", "ours-large", "django-small", "django-large", "before-small")
LABELS = {
    "ours": "user_sessions (ours)",
    "django": "django_session (peer)",
    "before": "user_sessions, previous release",
}


class BenchPostgres(ThrowawayPostgres):
    """A throwaway server with PostgreSQL's defaults where they matter to table growth."""

    def _prepare(self) -> None:
        fresh = not self.data_dir.exists()
        super()._prepare()
        if fresh:
            with open(self.data_dir / "postgresql.conf", "a") as conf:
                conf.write(
                    "# sustained-writes benchmark: default autovacuum and WAL\n"
                    "full_page_writes = on\nshared_buffers = 128MB\nmax_connections = 20\n"
                    "autovacuum = on\n"
                )


def payloads(large: bool) -> list[str]:
    """JSON texts a session takes turns with: ~150 B, or ~10 KB that compresses poorly
    (random item ids, as a full cart or a pile of flash messages), past TOAST's 2 KB."""
    rng = random.Random(7)
    texts = []
    for n in range(BLOBS):
        if large:
            items, body = [], 0
            while body < LARGE_BYTES:
                item = {"sku": rng.randbytes(8).hex(), "name": rng.randbytes(20).hex(), "qty": n}
                items.append(item)
                body += 80
            doc = {"csrf": rng.randbytes(16).hex(), "cart": items, "n": n}
        else:
            doc = {
                "csrf": rng.randbytes(16).hex(),
                "cart": [{"sku": rng.randrange(10**6), "qty": n % 3 + 1} for _ in range(3)],
                "n": n,
            }
        texts.append(json.dumps(doc, separators=(",", ":")))
    return texts


@dataclass
class Schedule:
    """Which write comes when: session ``i``'s round ``r`` happens at ``start[i] + r*STEP``."""

    sessions: int
    rounds: int
    seed: int = 1

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        base = (time.time() // EXPIRY_BUCKET_SECONDS) * EXPIRY_BUCKET_SECONDS
        self.start = [base + rng.random() * EXPIRY_BUCKET_SECONDS for _ in range(self.sessions)]
        self.keys = [hashlib.sha256(f"s{i}".encode()).hexdigest() for i in range(self.sessions)]

    @staticmethod
    def is_reissue(round_: int) -> bool:
        return round_ % REISSUE_EVERY == REISSUE_EVERY - 1


class OursWriter:
    """Writes through the SQL store's own statements and connections."""

    table = "user_sessions"

    def __init__(self, url: str, schedule: Schedule, *, before: bool = False) -> None:
        if before:
            # The table as it was before expires_bucket: expires_at indexed, fillfactor
            # 100; the bucket column is there (the store writes it) but not indexed.
            migrate(url, "0001_user_sessions")
            engine = get_engine({"sqlalchemy.url": url})
            with engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE user_sessions ADD COLUMN expires_bucket bigint")
                conn.exec_driver_sql("ALTER TABLE user_sessions ADD COLUMN mac varchar(64)")
            engine.dispose()
        else:
            migrate(url)
        self.store = SqlStore(get_engine({"sqlalchemy.url": url}), authenticator=AUTHENTICATOR)
        if not before:
            self.store.check()  # as the site's start-up does (it finds how data is kept)
        self.schedule = schedule
        # Each session as last written (a reissue moves the expiry of the version read).
        self.records: list[SessionRecord | None] = [None] * schedule.sessions

    def write(self, i: int, round_: int, data: str) -> None:
        at = self.schedule.start[i] + round_ * STEP
        key = self.schedule.keys[i]
        last = self.records[i]
        if round_ == 0:
            record = SessionRecord(key, data, at, at, at + TIMEOUT, None, USER_AGENT)
            version = self.store.save(record, None)
        elif self.schedule.is_reissue(round_):
            assert last is not None
            assert self.store.touch(last, at, at + TIMEOUT, at)
            self.records[i] = last.with_changes(last_active=at, expires=at + TIMEOUT)
            return
        else:
            assert last is not None
            record = last.with_changes(data=data, last_active=at, expires=at + TIMEOUT)
            version = self.store.save(record, last.version)
        self.records[i] = record.with_changes(version=version)

    def close(self) -> None:
        self.store.close()


class PeerWriter:
    """The Django-style table: one prepared statement per write on one connection."""

    table = "django_session"

    def __init__(self, url: str, schedule: Schedule, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(PEER_DDL)
        self.schedule = schedule

    def write(self, i: int, round_: int, data: str) -> None:
        at = self.schedule.start[i] + round_ * STEP
        expires = _timestamp(at + TIMEOUT)
        key = self.schedule.keys[i]
        if round_ == 0:
            self.conn.execute(PEER_INSERT, (key, data, expires), prepare=True)
        elif self.schedule.is_reissue(round_):
            self.conn.execute(PEER_REISSUE, (expires, key), prepare=True)
        else:
            self.conn.execute(PEER_SAVE, (data, expires, key), prepare=True)

    def close(self) -> None:
        self.conn.close()


def machine_info(server: BenchPostgres) -> dict[str, object]:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    return {"nproc": os.cpu_count(), "python": platform.python_version(), "postgresql": version}


def _proc_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds of ``pid`` (and of its children it has reaped, with ``children``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu(server: BenchPostgres) -> float:
    """CPU seconds the whole server has used: the postmaster, its live children, and
    the children that have exited (backends, autovacuum workers)."""
    postmaster = server.pid
    assert postmaster is not None
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    return _proc_cpu(postmaster, children=True) + sum(_proc_cpu(int(c)) for c in children)


def backends_cpu(conn: psycopg.Connection) -> float:
    """CPU seconds of this database's client backends (the writer's), not the monitor's."""
    pids = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    ).fetchall()
    return sum(_proc_cpu(pid) for (pid,) in pids)


def redis_memory(sessions: int = 50_000) -> dict[str, float]:
    """used_memory per session stored by the Redis store, on a throwaway Redis."""
    with ThrowawayRedis() as server:
        client = make_client(server.url, 1.0)
        store = RedisStore(
            client,
            prefix="bench:",
            max_lifetime=TIMEOUT * 2,
            authenticator=RecordAuthenticator((b"sustained-benchmark-secret-0123456789",), "redis"),
        )
        before = client.info("memory")["used_memory"]
        now = time.time()
        texts = payloads(False)
        for i in range(sessions):
            key = hashlib.sha256(f"r{i}".encode()).hexdigest()
            store.save(
                SessionRecord(key, texts[i % BLOBS], now, now, now + TIMEOUT, None, USER_AGENT),
                None,
            )
        after = client.info("memory")["used_memory"]
        store.close()
    per = (after - before) / sessions
    print(f"redis: {per:,.0f} B of used_memory per stored session", flush=True)
    return {"sessions": sessions, "bytes_per_session": per, "payload_bytes": len(texts[0])}


def _timestamp(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)


def _sizes(conn: psycopg.Connection, table: str) -> dict[str, int]:
    row = conn.execute(
        "SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid), "
        "coalesce(pg_total_relation_size(c.reltoastrelid), 0) "
        "FROM pg_class c WHERE c.relname = %s",
        (table,),
    ).fetchone()
    heap, indexes, toast = row
    return {"table": heap, "indexes": indexes, "toast": toast, "total": heap + indexes + toast}


def _stats(conn: psycopg.Connection, table: str, expected_updates: int) -> dict[str, int]:
    deadline = time.monotonic() + 60
    while True:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        upd, hot, dead, vacuums = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd, n_dead_tup, autovacuum_count "
            "FROM pg_stat_user_tables WHERE relname = %s",
            (table,),
        ).fetchone()
        if upd >= expected_updates or time.monotonic() > deadline:
            return {"updates": upd, "hot_updates": hot, "dead_rows": dead, "autovacuums": vacuums}
        time.sleep(0.5)


def _lsn(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]


def _wal_since(conn: psycopg.Connection, lsn: str) -> int:
    return int(
        conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,)).fetchone()[0]
    )


def _pct(values: list[float] | array, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_variant(server: BenchPostgres, kind: str, large: bool, sessions: int, rounds: int) -> dict:
    """One table under the load; a fresh database each time."""
    name = f"sustained_{kind}_{'large' if large else 'small'}"
    url = server.create_database(name)
    dsn = server.dsn(name)
    schedule = Schedule(sessions, rounds)
    texts = payloads(large)
    writer: OursWriter | PeerWriter
    if kind == "django":
        writer = PeerWriter(url, schedule, dsn)
    else:
        writer = OursWriter(url, schedule, before=kind == "before")
    monitor = psycopg.connect(dsn, autocommit=True)
    started = time.perf_counter()
    for i in range(sessions):
        writer.write(i, 0, texts[i % BLOBS])
    first = _sizes(monitor, writer.table)
    lsn = _lsn(monitor)
    cpu_server, cpu_backends = server_cpu(server), backends_cpu(monitor)
    cpu_client = time.process_time()
    latencies = array("d")
    for round_ in range(1, rounds):
        for i in range(sessions):
            data = texts[(i + round_) % BLOBS]
            began = time.perf_counter()
            writer.write(i, round_, data)
            latencies.append(time.perf_counter() - began)
    wal = _wal_since(monitor, lsn)
    wall = time.perf_counter() - started
    cpu_client = time.process_time() - cpu_client
    cpu_backends = backends_cpu(monitor) - cpu_backends
    writer.close()  # its backends exit, which flushes their statistics
    updates = sessions * (rounds - 1)
    stats = _stats(monitor, writer.table, updates)
    cpu_server = server_cpu(server) - cpu_server
    last = _sizes(monitor, writer.table)
    monitor.close()
    tenth = len(latencies) // 10
    head, tail = latencies[:tenth], latencies[-tenth:]
    result = {
        "table": writer.table,
        "sessions": sessions,
        "rounds": rounds,
        "payload_bytes": round(statistics.mean(len(t) for t in texts)),
        "updates": updates,
        **stats,
        "hot_share": stats["hot_updates"] / stats["updates"] if stats["updates"] else 0.0,
        "size_after_first_write": first,
        "size_after_run": last,
        "growth": last["total"] / first["total"],
        "wal_bytes": wal,
        "wal_bytes_per_write": wal / updates,
        "first_tenth_p50_us": _pct(head, 0.5) * 1e6,
        "first_tenth_p99_us": _pct(head, 0.99) * 1e6,
        "last_tenth_p50_us": _pct(tail, 0.5) * 1e6,
        "last_tenth_p99_us": _pct(tail, 0.99) * 1e6,
        "p99_drift": _pct(tail, 0.99) / _pct(head, 0.99),
        # PostgreSQL's CPU per write: the writer's backends, and the whole server
        # (autovacuum, checkpointer, WAL writer included) up to the statistics read.
        "pg_backend_cpu_us_per_write": cpu_backends / updates * 1e6,
        "pg_server_cpu_us_per_write": cpu_server / updates * 1e6,
        "background_cpu_share": max(0.0, 1 - cpu_backends / cpu_server) if cpu_server else 0.0,
        "client_cpu_us_per_write": cpu_client / updates * 1e6,
        "row_bytes": first["total"] / sessions,
        "wall_seconds": wall,
    }
    print(
        f"{kind:>5} {'10 KB' if large else 'small':>5}: HOT {result['hot_share']:.1%}, "
        f"size {first['total'] / 2**20:.1f} -> {last['total'] / 2**20:.1f} MiB "
        f"({result['growth']:.2f}x), WAL {result['wal_bytes_per_write']:,.0f} B/write, "
        f"p99 {result['first_tenth_p99_us']:.0f} -> {result['last_tenth_p99_us']:.0f} us, "
        f"PG CPU {result['pg_server_cpu_us_per_write']:.0f} us/write "
        f"({result['background_cpu_share']:.0%} background), "
        f"{wall:.0f} s",
        flush=True,
    )
    return result


def targets(variants: dict[str, dict]) -> list[dict]:
    ours, peer = variants.get("ours-small"), variants.get("django-small")
    found = []
    if ours:
        found.append(
            {
                "target": f"HOT share >= {HOT_SHARE_TARGET:.0%}",
                "value": ours["hot_share"],
                "passed": ours["hot_share"] >= HOT_SHARE_TARGET,
            }
        )
        found.append(
            {
                "target": f"table + indexes after the run <= {GROWTH_TARGET}x after 1st write",
                "value": ours["growth"],
                "passed": ours["growth"] <= GROWTH_TARGET,
            }
        )
        found.append(
            {
                "target": f"p99 of a write, last tenth <= {P99_DRIFT_TARGET}x first tenth",
                "value": ours["p99_drift"],
                "passed": ours["p99_drift"] <= P99_DRIFT_TARGET,
            }
        )
    if ours and peer:
        ratio = ours["wal_bytes_per_write"] / peer["wal_bytes_per_write"]
        found.append(
            {
                "target": f"WAL per write <= {WAL_VS_PEER_TARGET}x the Django-style table's",
                "value": ratio,
                "passed": ratio <= WAL_VS_PEER_TARGET,
            }
        )
    return found


def markdown(report: dict) -> str:
    lines = [
        "# Sustained session writes",
        "",
        f"{report['command']}; {report['wall_seconds']:.0f} s wall. "
        f"Fillfactor {report['fillfactor']}, expiry buckets of {report['bucket_seconds']} s. "
        "Throwaway PostgreSQL 15, default autovacuum, full_page_writes on, fsync off.",
        "",
        "## Targets (small sessions)",
        "",
    ]
    for target in report["targets"]:
        mark = "PASS" if target["passed"] else "FAIL"
        lines.append(f"- **{mark}** {target['target']}: {target['value']:.3f}")
    ours, before = report["variants"].get("ours-small"), report["variants"].get("before-small")
    if ours and before:
        lines += [
            "",
            "Against the previous release's user_sessions (the same rows, `expires_at` "
            f"indexed, fillfactor 100): WAL per write "
            f"{ours['wal_bytes_per_write'] / before['wal_bytes_per_write']:.2f}x, growth "
            f"{ours['growth']:.2f}x vs {before['growth']:.2f}x, HOT {ours['hot_share']:.1%} "
            f"vs {before['hot_share']:.1%}.",
        ]
    lines += [
        "",
        "## Per table",
        "",
        "| table | session | sessions x writes | HOT | dead rows | autovacuums | "
        "size after 1st write | after run | growth | WAL B/write | p50 first/last tenth us | "
        "p99 first/last tenth us |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in report["variants"].items():
        table = LABELS[name.split("-")[0]]
        first, last = v["size_after_first_write"], v["size_after_run"]
        lines.append(
            f"| {table} | ~{v['payload_bytes']:,} B | {v['sessions']:,} x {v['rounds']} | "
            f"{v['hot_share']:.1%} | {v['dead_rows']:,} | {v['autovacuums']} | "
            f"{first['total'] / 2**20:.1f} MiB | {last['total'] / 2**20:.1f} MiB | "
            f"{v['growth']:.2f}x | {v['wal_bytes_per_write']:,.0f} | "
            f"{v['first_tenth_p50_us']:.0f} / {v['last_tenth_p50_us']:.0f} | "
            f"{v['first_tenth_p99_us']:.0f} / {v['last_tenth_p99_us']:.0f} |"
        )
    lines += [
        "",
        "Sizes (MiB): table / indexes / toast, after the first write -> after the run",
        "",
    ]
    for name, v in report["variants"].items():
        first, last = v["size_after_first_write"], v["size_after_run"]

        def mib(s: dict) -> str:
            return " / ".join(f"{s[k] / 2**20:.1f}" for k in ("table", "indexes", "toast"))

        lines.append(f"- {name}: {mib(first)} -> {mib(last)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument(
        "--large-sessions", type=int, default=20_000, help="sessions of ~10 KB (20,000)"
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--only", nargs="*", choices=VARIANTS, default=None)
    parser.add_argument(
        "--merge", action="store_true", help="keep the other variants of the last results"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    large_sessions = args.large_sessions
    started = time.perf_counter()
    variants: dict[str, dict] = {}
    with BenchPostgres() as server:
        machine = machine_info(server)
        for name in args.only or VARIANTS:
            kind, size = name.split("-")
            count = large_sessions if size == "large" else args.sessions
            variants[name] = run_variant(server, kind, size == "large", count, args.rounds)
    redis = None if args.only else redis_memory()
    previous = args.out / "sustained.json"
    if args.merge and previous.exists():
        earlier = json.loads(previous.read_text())
        variants = {**earlier["variants"], **variants}
        redis = redis or earlier.get("redis")
    report = {
        "redis": redis,
        "command": "python -m bench.sustained "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "fillfactor": FILLFACTOR,
        "bucket_seconds": EXPIRY_BUCKET_SECONDS,
        "variants": variants,
        "targets": targets(variants),
        "wall_seconds": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sustained.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "sustained.md").write_text(markdown(report))
    for target in report["targets"]:
        print(f"{'PASS' if target['passed'] else 'FAIL'} {target['target']}: {target['value']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
