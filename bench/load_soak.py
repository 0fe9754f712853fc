"""Load and soak: signed-in shoppers through PostgreSQL outages, then a long run for memory.

Three faults, each on a fresh app process: PostgreSQL killed under runtime failover with
and without the Redis read cache, and PostgreSQL frozen with failover off. Then a soak
without faults. ``python -m bench.load_soak [--quick] [--only NAME]``; throwaway servers
only; results in bench/results/.
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
import sqlalchemy as sa

from bench.soak_client import Crowd, Tally
from myapp.accounts import create_user
from tests.reliability.apps import AppProcess
from tests.servers import ThrowawayPostgres, ThrowawayRedis
from tests.support.databases import migrate
from tests.support.site import CHEAP_HASHER

RESULTS = Path(__file__).resolve().parent / "results"
SECRET = "soak-test-secret-not-for-production-0123456789abcdef"
RECOVERY_LIMIT = 60.0  # seconds after the repair before recovery counts as failed
MEMORY_TOLERANCE = 0.10


@dataclass(frozen=True)
class Plan:
    clients: int  # signed-in shoppers in the fault phases
    threads: int  # waitress threads
    warm: float  # seconds of traffic before the fault
    outage: float  # seconds PostgreSQL stays dead or frozen
    after: float  # seconds of traffic after recovery
    soak_clients: int
    soak_requests: int
    soak_warmup: int
    soak_limit: float  # seconds the soak may take at most


FULL = Plan(clients=20, threads=4, warm=8, outage=10, after=6, soak_clients=8,
            soak_requests=100_000, soak_warmup=10_000, soak_limit=1800)  # fmt: skip
QUICK = Plan(clients=20, threads=4, warm=4, outage=5, after=3, soak_clients=8,
             soak_requests=6_000, soak_warmup=1_500, soak_limit=300)  # fmt: skip
STORE_TIMEOUT = 1.0
REFUSAL_BOUND = STORE_TIMEOUT + 0.5  # p99 of requests arriving during a freeze
RETURN_BOUND = 5.0  # seconds from "PostgreSQL accepts connections" to /healthz ok


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    fault: str  # "kill" (SIGKILL, then a restart) or "freeze" (SIGSTOP, then SIGCONT)
    settings: dict[str, str]


SCENARIOS = (
    Scenario(
        "kill-failover-cache",
        "PostgreSQL killed; runtime failover with the Redis read cache (recommended)",
        "kill",
        {"session.runtime_failover": "true", "session.cache": "redis"},
    ),
    Scenario(
        "kill-failover",
        "PostgreSQL killed; runtime failover without the cache",
        "kill",
        {"session.runtime_failover": "true"},
    ),
    Scenario(
        "freeze-no-failover",
        "PostgreSQL frozen (SIGSTOP); runtime failover off",
        "freeze",
        {"session.runtime_failover": "false"},
    ),
)


def app_settings(pg_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "sqlalchemy.url": pg_url,
        "session.secret": SECRET,
        "session.backends": "sql redis memory",
        "session.redis_url": redis_url,
        "session.recheck_interval": "30",
        "session.breaker_cooldown": "1",
        "session.store_timeout": str(STORE_TIMEOUT),
        "session.check_timeout": "1",
        "retry.attempts": "3",
        **extra,
    }


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def health(app: AppProcess, timeout: float = 5.0) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(app.url + "/healthz", timeout=timeout) as response:
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


def create_accounts(pg: ThrowawayPostgres, count: int) -> list[tuple[str, str]]:
    """Shoppers' accounts, with cheap password hashes (sign-in is not what is measured)."""
    accounts = [(f"shopper{i}", f"shopper-password-{i}") for i in range(count)]
    engine = sa.create_engine(pg.url_for("app"))
    with engine.begin() as conn:
        for name, password in accounts:
            create_user(conn, name, password, hasher=CHEAP_HASHER)
    engine.dispose()
    return accounts


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def fault_phase(
    plan: Plan,
    scenario: Scenario,
    app: AppProcess,
    pg: ThrowawayPostgres,
    accounts: list[tuple[str, str]],
) -> dict[str, Any]:
    """Signed-in traffic, the fault, the repair, and traffic until sql serves again."""
    tally = Tally()
    crowd = Crowd(app.port, plan.clients, tally, accounts=accounts).start()
    statuses: dict[str, int] = {}
    slowest_health = 0.0
    try:
        deadline = time.monotonic() + 30
        while crowd.signed_in < plan.clients and time.monotonic() < deadline:
            time.sleep(0.1)
        signed_in_before = crowd.signed_in
        time.sleep(plan.warm)
        fault_at = time.monotonic()
        pg.kill() if scenario.fault == "kill" else pg.freeze()
        print(f"  {scenario.fault}: PostgreSQL after {tally.requests} requests", flush=True)
        while time.monotonic() - fault_at < plan.outage:
            started = time.monotonic()
            state = health(app)
            slowest_health = max(slowest_health, time.monotonic() - started)
            status = state.get("status", "no answer")
            statuses[status] = statuses.get(status, 0) + 1
            time.sleep(0.2)
        repaired_wall = time.time()
        if scenario.fault == "kill":
            pg.start()  # returns once PostgreSQL accepts connections
        else:
            pg.thaw()
        ready_at = time.monotonic()
        recovered_at = None
        while time.monotonic() - ready_at < RECOVERY_LIMIT:
            state = health(app)
            on_sql = state.get("status") == "ok" and state.get("session_backend") == "sql"
            if on_sql and sql_writes_since(pg, repaired_wall) > 0:
                recovered_at = time.monotonic()
                break
            time.sleep(0.05)
        print(f"  repaired; back on sql: {recovered_at is not None}", flush=True)
        time.sleep(plan.after)
    finally:
        crowd.stop()
    crowd.final_check()
    during = [end - start for start, end, _ in tally.samples if fault_at <= start < ready_at]
    p99, slowest = _percentile(during, 0.99), max(during, default=None)
    return {
        "title": scenario.title,
        "settings": scenario.settings,
        "requests": tally.requests,
        "requests_during_fault": len(during),
        "confirmed_adds": tally.confirmed_adds,
        "signed_in_before": signed_in_before,
        "users_signed_out": tally.users_signed_out,
        "signed_in_after": crowd.signed_in,
        "items_lost": tally.items_lost,
        "lost_examples": tally.lost_examples,
        "phantom_items": tally.phantom_items,
        "errors_5xx": tally.errors_5xx,
        "transport_errors": tally.transport_errors,
        "unavailable_pages": tally.unavailable_pages,
        "other_status": tally.other_status,
        "p99_seconds_during_fault": None if p99 is None else round(p99, 3),
        "max_seconds_during_fault": None if slowest is None else round(slowest, 3),
        "health_during_fault": statuses,
        "slowest_healthz_seconds": round(slowest_health, 3),
        "outage_seconds": round(ready_at - fault_at, 2),
        "ready_to_ok_seconds": None if recovered_at is None else round(recovered_at - ready_at, 2),
    }


def soak_phase(plan: Plan, app: AppProcess) -> dict[str, Any]:
    """``soak_requests`` requests without faults; RSS after warm-up and at the end."""
    assert app.proc is not None
    pid = app.proc.pid
    tally = Tally()
    crowd = Crowd(app.port, plan.soak_clients, tally, max_requests=plan.soak_requests).start()
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


def targets(faults: dict[str, dict[str, Any]], soak: dict[str, Any]) -> dict[str, bool]:
    growth = soak["rss_growth"]
    freeze = faults["freeze-no-failover"]
    return {
        "nobody signed out, in any scenario": all(
            f["users_signed_out"] == 0 and f["signed_in_after"] == f["signed_in_before"]
            for f in faults.values()
        ),
        "no confirmed item lost, in any scenario or the soak": all(
            f["items_lost"] == 0 for f in faults.values()
        )
        and soak["sessions_lost"] == 0,
        "/healthz not ok during any fault, and answering within the refusal bound": all(
            "ok" not in f["health_during_fault"] and f["slowest_healthz_seconds"] <= REFUSAL_BOUND
            for f in faults.values()
        ),
        f"p99 during the freeze within store_timeout + 0.5 s ({REFUSAL_BOUND:g} s)": (
            freeze["p99_seconds_during_fault"] is not None
            and freeze["p99_seconds_during_fault"] <= REFUSAL_BOUND
        ),
        f"back on PostgreSQL within {RETURN_BOUND:g} s of it accepting connections": all(
            f["ready_to_ok_seconds"] is not None and f["ready_to_ok_seconds"] <= RETURN_BOUND
            for f in faults.values()
        ),
        "no 5xx in the soak": soak["errors_5xx"] + soak["transport_errors"] == 0,
        f"memory flat within {MEMORY_TOLERANCE:.0%} over the soak": growth is not None
        and growth <= MEMORY_TOLERANCE,
    }


def markdown(result: dict[str, Any]) -> str:
    faults, soak = result["faults"], result["soak"]
    names = list(faults)
    cells = {name: _cells(fault) for name, fault in faults.items()}
    lines = [
        "# Load and soak",
        "",
        f"`python -m bench.load_soak{' --quick' if result['quick'] else ''}`, {result['date']}, "
        f"{result['plan']['clients']} signed-in shoppers, waitress with "
        f"{result['plan']['threads']} threads.",
        "",
        "## Faults",
        "",
        *(f"- `{name}`: {faults[name]['title']}" for name in names),
        "",
        "| Measure | " + " | ".join(f"`{name}`" for name in names) + " |",
        "| --- |" + " --- |" * len(names),
        *(
            f"| {label} | " + " | ".join(cells[name][label] for name in names) + " |"
            for label in cells[names[0]]
        ),
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


def _cells(f: dict[str, Any]) -> dict[str, str]:
    """One scenario's column of the report, by row label."""
    return {
        "signed-in shoppers before, after": f"{f['signed_in_before']}, {f['signed_in_after']}",
        "users signed out": str(f["users_signed_out"]),
        "confirmed items lost": str(f["items_lost"]),
        "requests (during the fault)": f"{f['requests']} ({f['requests_during_fault']})",
        "5xx (transport errors)": f"{f['errors_5xx']} ({f['transport_errors']})",
        "pages served without their session": str(f["unavailable_pages"]),
        "p99, max latency during the fault": (
            f"{f['p99_seconds_during_fault']} s, {f['max_seconds_during_fault']} s"
        ),
        "/healthz during the fault (slowest answer)": (
            f"{_statuses(f['health_during_fault'])} ({f['slowest_healthz_seconds']} s)"
        ),
        "outage": f"{f['outage_seconds']} s",
        "PostgreSQL ready to /healthz ok": f"{f['ready_to_ok_seconds']} s",
    }


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} x{n}" for status, n in sorted(counts.items()))


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases, 6,000-request soak")
    parser.add_argument(
        "--only", choices=[s.name for s in SCENARIOS], action="append", help="fault scenarios"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    log_dir = Path(tempfile.mkdtemp(prefix="myapp-soak-"))
    faults: dict[str, dict[str, Any]] = {}
    with ThrowawayPostgres() as pg, ThrowawayRedis() as redis_server:
        url = pg.create_database("app")
        migrate(url)
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            # The throwaway server trades durability for speed; a crash would then lose
            # commits the app was told had succeeded, which no session layer can repair.
            conn.execute("ALTER DATABASE app SET synchronous_commit = on")
        accounts = create_accounts(pg, plan.clients)
        for scenario in scenarios:
            settings = app_settings(url, redis_server.url, **scenario.settings)
            app = AppProcess(settings, log_dir, threads=plan.threads)
            app.start().wait_ready()
            try:
                print(f"{scenario.name}, app log in {app.log_path}", flush=True)
                faults[scenario.name] = fault_phase(plan, scenario, app, pg, accounts)
            finally:
                app.stop()
        settings = app_settings(url, redis_server.url, **SCENARIOS[0].settings)
        app = AppProcess(settings, log_dir, threads=plan.soak_clients)
        app.start().wait_ready()
        try:
            print(f"soak phase ({plan.soak_requests} requests)", flush=True)
            soak = soak_phase(plan, app)
        finally:
            app.stop()
    result: dict[str, Any] = {
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "plan": asdict(plan),
        "faults": faults,
        "soak": soak,
    }
    result["targets"] = targets(faults, soak) if len(faults) == len(SCENARIOS) else {}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (RESULTS / "soak.md").write_text(report)
    print(report)
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
