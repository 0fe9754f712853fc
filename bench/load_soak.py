"""Load and soak: shoppers through a PostgreSQL crash, then a long run for memory growth.

``python -m bench.load_soak [--quick]``; throwaway servers only; results in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.soak_client import Crowd, Tally
from tests.reliability.apps import AppProcess
from tests.servers import ThrowawayPostgres, ThrowawayRedis
from tests.support.databases import migrate

RESULTS = Path(__file__).resolve().parent / "results"
SECRET = "soak-test-secret-not-for-production-0123456789abcdef"
RECOVERY_LIMIT = 60.0  # seconds after the restart before recovery counts as failed
MEMORY_TOLERANCE = 0.10


@dataclass(frozen=True)
class Plan:
    clients: int
    warm: float  # seconds of traffic before the kill
    outage: float  # seconds PostgreSQL stays dead
    after: float  # seconds of traffic after recovery
    soak_requests: int
    soak_warmup: int
    soak_limit: float  # seconds the soak may take at most


FULL = Plan(clients=8, warm=8, outage=6, after=6, soak_requests=100_000, soak_warmup=10_000,
            soak_limit=1800)  # fmt: skip
QUICK = Plan(clients=8, warm=4, outage=4, after=4, soak_requests=6_000, soak_warmup=1_500,
             soak_limit=300)  # fmt: skip


def app_settings(pg_url: str, redis_url: str) -> dict[str, str]:
    return {
        "sqlalchemy.url": pg_url,
        "session.secret": SECRET,
        "session.backends": "sql redis memory",
        "session.redis_url": redis_url,
        "session.runtime_failover": "true",
        "session.cache": "redis",
        "session.recheck_interval": "2",
        "session.breaker_cooldown": "3",
        "session.store_timeout": "1",
        "session.check_timeout": "1",
        "retry.attempts": "3",
    }


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def health(app: AppProcess) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(app.url + "/healthz", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def sql_writes_since(pg: ThrowawayPostgres, wall: float) -> int:
    """Sessions PostgreSQL stored after ``wall`` (epoch seconds): proof that sql serves."""
    try:
        with psycopg.connect(pg.dsn("app"), autocommit=True, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM user_sessions WHERE last_active_at > to_timestamp(%s)",
                (wall,),
            ).fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


def fault_phase(plan: Plan, app: AppProcess, pg: ThrowawayPostgres) -> dict[str, Any]:
    """Traffic, SIGKILL PostgreSQL, restart it, and run on until sql serves again."""
    tally = Tally()
    crowd = Crowd(app.port, plan.clients, tally).start()
    try:
        time.sleep(plan.warm)
        killed_at = time.monotonic()
        pg.kill()
        # The kill takes a moment (SIGKILL, then waiting for every backend to go):
        # a request that began in that window was in flight too.
        dead_at = time.monotonic()
        print(f"  killed PostgreSQL after {tally.requests} requests", flush=True)
        time.sleep(plan.outage)
        restarted_at, restarted_wall = time.monotonic(), time.time()
        pg.start()
        recovered_at = None
        while time.monotonic() - restarted_at < RECOVERY_LIMIT:
            state = health(app)
            on_sql = state.get("status") == "ok" and state.get("session_backend") == "sql"
            if on_sql and sql_writes_since(pg, restarted_wall) > 0:
                recovered_at = time.monotonic()
                break
            time.sleep(0.1)
        print(f"  restarted; back on sql: {recovered_at is not None}", flush=True)
        time.sleep(plan.after)
    finally:
        crowd.stop()
    crowd.final_check()
    in_flight = sum(1 for start, end, _ in tally.failures if start <= dead_at and end >= killed_at)
    return {
        "requests": tally.requests,
        "confirmed_adds": tally.confirmed_adds,
        "carts": tally.carts,
        "errors_5xx": tally.errors_5xx,
        "transport_errors": tally.transport_errors,
        "failures_in_flight_at_kill": in_flight,
        "failures_outside_kill": len(tally.failures) - in_flight,
        "failures_seconds_after_kill": [
            [round(start - killed_at, 3), round(end - killed_at, 3), status]
            for start, end, status in tally.failures[:20]
        ],
        "kill_seconds": round(dead_at - killed_at, 3),
        "other_status": tally.other_status,
        "sessions_lost": tally.carts_lost,
        "lost_examples": tally.lost_examples,
        "phantom_items": tally.phantom_items,
        "outage_seconds": round(restarted_at - killed_at, 2),
        "recovery_seconds": None if recovered_at is None else round(recovered_at - restarted_at, 2),
    }


def soak_phase(plan: Plan, app: AppProcess) -> dict[str, Any]:
    """``soak_requests`` requests without faults; RSS after warm-up and at the end."""
    assert app.proc is not None
    pid = app.proc.pid
    tally = Tally()
    crowd = Crowd(app.port, plan.clients, tally, max_requests=plan.soak_requests).start()
    started = time.monotonic()
    samples: list[tuple[int, int]] = []
    warm_rss = None
    next_print = started + 30
    while crowd.running and time.monotonic() - started < plan.soak_limit:
        time.sleep(0.5)
        samples.append((tally.requests, rss_kib(pid)))
        if warm_rss is None and tally.requests >= plan.soak_warmup:
            warm_rss = samples[-1][1]
        if time.monotonic() >= next_print:
            print(f"  soak: {tally.requests} requests, RSS {samples[-1][1]} KiB", flush=True)
            next_print += 30
    crowd.stop()
    seconds = time.monotonic() - started
    end_rss = rss_kib(pid)
    crowd.final_check()
    growth = None if warm_rss is None else (end_rss - warm_rss) / warm_rss
    return {
        "requests": tally.requests,
        "seconds": round(seconds, 1),
        "requests_per_second": round(tally.requests / seconds, 1),
        "errors_5xx": tally.errors_5xx,
        "transport_errors": tally.transport_errors,
        "sessions_lost": tally.carts_lost,
        "rss_after_warmup_kib": warm_rss,
        "rss_end_kib": end_rss,
        "rss_growth": None if growth is None else round(growth, 4),
        "rss_samples": samples[:: max(1, len(samples) // 40)],
    }


def targets(fault: dict[str, Any], soak: dict[str, Any]) -> dict[str, bool]:
    growth = soak["rss_growth"]
    return {
        "zero sessions lost (runtime failover on, Redis up)": fault["sessions_lost"] == 0
        and soak["sessions_lost"] == 0,
        "zero 5xx outside the requests in flight at the kill": fault["failures_outside_kill"] == 0
        and soak["errors_5xx"] + soak["transport_errors"] == 0,
        f"memory flat within {MEMORY_TOLERANCE:.0%} over the soak": growth is not None
        and growth <= MEMORY_TOLERANCE,
    }


def markdown(result: dict[str, Any]) -> str:
    fault, soak = result["fault"], result["soak"]
    lines = [
        "# Load and soak",
        "",
        f"`python -m bench.load_soak{' --quick' if result['quick'] else ''}`, {result['date']}, "
        f"{result['clients']} clients.",
        "",
        "## PostgreSQL killed (SIGKILL) under traffic",
        "",
        "| Measure | Value |",
        "| --- | --- |",
        f"| requests | {fault['requests']} |",
        f"| 5xx (in flight at the kill) | {fault['errors_5xx']} "
        f"({fault['failures_in_flight_at_kill']}) |",
        f"| transport errors | {fault['transport_errors']} |",
        f"| failures outside the kill | {fault['failures_outside_kill']} |",
        f"| sessions lost | {fault['sessions_lost']} of {fault['carts']} carts |",
        f"| outage | {fault['outage_seconds']} s |",
        f"| time to recover (restart to sql serving) | {fault['recovery_seconds']} s |",
        "",
        "## Soak (no faults)",
        "",
        "| Measure | Value |",
        "| --- | --- |",
        f"| requests | {soak['requests']} in {soak['seconds']} s "
        f"({soak['requests_per_second']}/s) |",
        f"| 5xx | {soak['errors_5xx']} |",
        f"| sessions lost | {soak['sessions_lost']} |",
        f"| RSS after warm-up, at the end | {soak['rss_after_warmup_kib']} KiB, "
        f"{soak['rss_end_kib']} KiB |",
        f"| RSS growth | {_percent(soak['rss_growth'])} |",
        "",
        "## Targets",
        "",
        *(f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in result["targets"].items()),
        "",
    ]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases, 6,000-request soak")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    log_dir = Path(tempfile.mkdtemp(prefix="myapp-soak-"))
    with ThrowawayPostgres() as pg, ThrowawayRedis() as redis_server:
        url = pg.create_database("app")
        migrate(url)
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            # The throwaway server trades durability for speed; a crash would then lose
            # commits the app was told had succeeded, which no session layer can repair.
            conn.execute("ALTER DATABASE app SET synchronous_commit = on")
        app = AppProcess(app_settings(url, redis_server.url), log_dir, threads=plan.clients)
        app.start().wait_ready()
        try:
            print(f"fault phase ({plan.clients} clients), app log in {app.log_path}", flush=True)
            fault = fault_phase(plan, app, pg)
            print(f"soak phase ({plan.soak_requests} requests)", flush=True)
            soak = soak_phase(plan, app)
        finally:
            app.stop()
    result: dict[str, Any] = {
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "clients": plan.clients,
        "plan": asdict(plan),
        "fault": fault,
        "soak": soak,
    }
    result["targets"] = targets(fault, soak)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (RESULTS / "soak.md").write_text(report)
    print(report)
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
