"""The benchmark: ``python -m bench.run [--quick]`` (see docs/performance.md).

Every implementation runs in its own waitress process; wrk loads one at a time,
implementations interleaved over several rounds, and medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench import probes, wrk
from bench.apps import ALL_IMPLEMENTATIONS, IMPLEMENTATIONS, VIEWS, WRITE_METHOD
from bench.report import RESULTS, machine, write_report
from bench.servers import AppServer, Stores


def measure(
    server: AppServer,
    view: str,
    *,
    seconds: float,
    connections: int,
    tmp: Path,
    stores: Stores,
    rclient: redis.Redis,
) -> dict:
    """One cell: load ``view`` of ``server`` with wrk and account for what it cost."""
    header, script, cookie = None, None, None
    if view in ("untouched", "read"):
        cookie = server.new_cookie()
        header = f"Cookie: {cookie}" if cookie else None
    elif view == "write":
        # A view that changes state answers a POST, as a form or an API call sends it.
        cookies = [server.new_cookie() for _ in range(connections)]
        script = wrk.cookie_script([c for c in cookies if c], tmp, method=WRITE_METHOD)
    # Flush PostgreSQL's counters of earlier traffic by ending the app's backends.
    before_app = probes.app_stats(server.base_url, dispose=True)
    before_xacts = probes.pg_transactions_settled(stores.dbname)
    before_cmds = probes.redis_commands(rclient)
    before_cpu = probes.cpu_seconds(server.pid)
    result = wrk.run(
        f"{server.base_url}/{view}",
        seconds=seconds,
        connections=connections,
        header=header,
        script=script,
    )
    cpu = probes.cpu_seconds(server.pid) - before_cpu
    after_cmds = probes.redis_commands(rclient)
    after_app = probes.app_stats(server.base_url, dispose=True)
    xacts = probes.pg_transactions_settled(stores.dbname) - before_xacts
    n = max(result.requests, 1)
    # Checked after the counters were read, so it is not charged to the view.
    set_cookie = server.sets_cookie("/untouched", cookie) if view == "untouched" else None
    sql = probes.delta(after_app["sql"], before_app["sql"])
    cmds = probes.delta(after_cmds, before_cmds)
    return {
        "rps": result.rps,
        "p50_ms": result.p50 * 1e3,
        "p99_ms": result.p99 * 1e3,
        "requests": result.requests,
        "errors": result.errors,
        "cpu_us": cpu / n * 1e6,
        "sql": {verb: count / n for verb, count in sql.items()},
        "sql_total": sum(sql.values()) / n,
        "pg_xacts": max(xacts - 1, 0) / n,  # the stats request's dispose is not one
        "redis_cmds": {name: count / n for name, count in cmds.items()},
        "redis_cmds_total": sum(cmds.values()) / n,
        "set_cookie": set_cookie,
        "redis_round_trips": (after_app["redis_round_trips"] - before_app["redis_round_trips"]) / n,
    }


def median_cell(samples: list[dict]) -> dict:
    """Medians of every figure over the rounds (per-verb maps too)."""
    cell: dict = {"rounds": len(samples)}
    for key, value in samples[0].items():
        if value is None or isinstance(value, bool):
            cell[key] = any(s[key] for s in samples)
        elif isinstance(value, dict):
            names = sorted({name for s in samples for name in s[key]})
            cell[key] = {n: statistics.median(s[key].get(n, 0.0) for s in samples) for n in names}
        else:
            cell[key] = statistics.median(s[key] for s in samples)
    cell["rps_all"] = [s["rps"] for s in samples]
    return cell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, small scale series")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument(
        "--only",
        nargs="*",
        choices=ALL_IMPLEMENTATIONS,
        help="a subset of implementations (diag-* only run when named here)",
    )
    parser.add_argument("--views", nargs="*", choices=VIEWS, default=list(VIEWS))
    parser.add_argument("--no-scale", action="store_true", help="skip the scale series")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 2.0
    names = args.only or list(IMPLEMENTATIONS)

    started = time.time()
    stores = Stores()
    servers: list[AppServer] = []
    tmp = Path(tempfile.mkdtemp(prefix="myapp-bench-wrk-"))
    try:
        servers = [AppServer(name, stores.env, tmp) for name in names]
        for server in servers:
            server.wait_ready()
        rclient = redis.Redis.from_url(stores.env.redis_url)
        raw = probes.raw_limits(
            stores.dsn, stores.env.redis_url, seconds=0.5 if args.quick else 2.0
        )
        samples: dict[str, dict[str, list[dict]]] = {
            s.name: {v: [] for v in args.views} for s in servers
        }
        for round_no in range(args.rounds):
            for view in args.views:
                for server in servers:  # interleaved: A B C ... per view, every round
                    if round_no == 0:  # warm caches and pools once
                        wrk.run(
                            f"{server.base_url}/{view}", seconds=1, connections=args.connections
                        )
                    cell = measure(
                        server,
                        view,
                        seconds=args.seconds,
                        connections=args.connections,
                        tmp=tmp,
                        stores=stores,
                        rclient=rclient,
                    )
                    samples[server.name][view].append(cell)
                    print(
                        f"round {round_no + 1} {view:9} {server.name:16} "
                        f"{cell['rps']:8.0f} req/s  {cell['cpu_us']:6.0f} us cpu  "
                        f"sql {cell['sql_total']:.2f}  xact {cell['pg_xacts']:.2f}  "
                        f"redis {cell['redis_round_trips']:.2f}  err {cell['errors']}",
                        flush=True,
                    )
        results = {
            name: {v: median_cell(c) for v, c in views.items()} for name, views in samples.items()
        }
        rclient.close()
    finally:
        for server in servers:
            server.stop()
        stores.close()
    scale = None
    if not args.no_scale:
        from bench import scale as scale_series

        scale = scale_series.run(quick=args.quick)
    report = {
        "machine": machine(),
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "connections": args.connections,
            "quick": args.quick,
            "wall_seconds": round(time.time() - started),
        },
        "raw": raw,
        "results": results,
        "scale": scale,
    }
    ok = write_report(report, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
