"""Targets, the printed table, and bench/results/ (latest.json, latest.md, charts)."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from bench.apps import ALL_IMPLEMENTATIONS, LABELS, VIEWS

RESULTS = Path(__file__).resolve().parent / "results"
EXACT = 0.02  # per-request counts may be off by the few requests in flight when wrk stops


@dataclass(frozen=True)
class Target:
    name: str
    ok: bool | None  # None: not measured in this run
    detail: str

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]


def machine() -> dict[str, object]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    pg = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    redis_v = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2:3]
    packages = (
        "pyramid",
        "pyramid_tm",
        "sqlalchemy",
        "psycopg",
        "redis",
        "waitress",
        "pyramid_session_redis",
        "zope.sqlalchemy",
    )
    return {
        "nproc": len(
            [
                ln
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("processor")
            ]
        ),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgresql": pg,
        "redis_server": redis_v[0].removeprefix("v=") if redis_v else "",
        "wrk": subprocess.run(
            ["wrk", "--version"], capture_output=True, text=True, check=False
        ).stdout.split()[1:2],
        "packages": {name: version(name) for name in packages},
    }


def _near(value: float, expected: float) -> bool:
    return abs(value - expected) <= EXACT


def paired(a: dict, b: dict) -> float:
    """How ``a`` compares with ``b``: the median over rounds of their ratio in each round.

    Implementations are interleaved (A B C ... A B C ...), so within one round two cells
    run seconds apart, while the host's speed drifts from round to round (this one's
    served the floor anywhere between ~4,000 and ~6,600 requests/s in one run). A ratio
    of the two medians can pair a fast round of one with a slow round of the other; the
    per-round ratio compares what ran under the same conditions.
    """
    rounds = list(zip(a.get("rps_all") or [a["rps"]], b.get("rps_all") or [b["rps"]], strict=False))
    return statistics.median(x / y for x, y in rounds if y)


def _both(a: dict, b: dict, peer: str) -> tuple[float, str]:
    """The paired ratio, and how to print it next to the ratio of the medians."""
    ratio = paired(a, b)
    return ratio, f"{ratio:.2f}x {peer} (ratio of medians {a['rps'] / b['rps']:.2f}x)"


def targets(report: dict) -> list[Target]:
    """Every target of docs/performance.md, judged on ratios within this one run."""
    res, raw, scale = report["results"], report["raw"], report.get("scale")
    out: list[Target] = []

    def cell(name: str, view: str) -> dict | None:
        return res.get(name, {}).get(view)

    floor_u = cell("floor", "untouched")
    ours = [n for n in res if n.startswith("ours-")]
    if floor_u and ours:
        worst = min(ours, key=lambda n: paired(res[n]["untouched"], floor_u))
        ratio, shown = _both(res[worst]["untouched"], floor_u, "floor")
        calls = max(
            res[n]["untouched"]["sql_total"]
            + res[n]["untouched"]["redis_cmds_total"]
            + res[n]["untouched"]["pg_xacts"]
            for n in ours
        )
        cookies = [n for n in ours if res[n]["untouched"].get("set_cookie")]
        out.append(
            Target(
                "untouched view >= 0.97x floor, no store calls, no Set-Cookie",
                ratio >= 0.97 and calls == 0 and not cookies,
                f"slowest ours ({worst}) {shown}{_vs_tm(res, worst)}; "
                f"store calls/req {calls:.2f}; "
                f"Set-Cookie from {cookies or 'none'}{_without_tm_tween(res, floor_u)}",
            )
        )
    else:
        out.append(Target("untouched view >= 0.97x floor", None, "not measured"))

    pg_read, psr_read = cell("ours-sql-pg", "read"), cell("psr", "read")
    floor_read = cell("floor", "read")
    if pg_read and psr_read and floor_read:
        selects = pg_read["sql"].get("SELECT", 0.0)
        writes = sum(v for k, v in pg_read["sql"].items() if k in ("INSERT", "UPDATE", "DELETE"))
        ratio, shown = _both(pg_read, psr_read, "psr")
        budget = 1.5 * (floor_read["cpu_us"] + raw["pg_select_txn_cpu"] * 1e6)
        out.append(
            Target(
                "read, sql-PostgreSQL: 1 SELECT, 0 writes, >= 0.8x psr",
                _near(selects, 1) and writes == 0 and ratio >= 0.8,
                f"SELECT/req {selects:.2f}, writes/req {writes:.2f}, {shown}",
            )
        )
        out.append(
            Target(
                "read, sql-PostgreSQL: CPU/req <= 1.5x (floor + raw PG read transaction)",
                pg_read["cpu_us"] <= budget,
                f"{pg_read['cpu_us']:.0f} us vs budget {budget:.0f} us "
                f"(floor {floor_read['cpu_us']:.0f} + raw "
                f"{raw['pg_select_txn_cpu'] * 1e6:.0f}, x1.5)",
            )
        )
    bouncer_read = cell("ours-sql-pgbouncer", "read")
    if bouncer_read and psr_read:
        selects = bouncer_read["sql"].get("SELECT", 0.0)
        writes = sum(
            v for k, v in bouncer_read["sql"].items() if k in ("INSERT", "UPDATE", "DELETE")
        )
        ratio, shown = _both(bouncer_read, psr_read, "psr")
        out.append(
            Target(
                "read, sql through PgBouncer (transaction): 1 SELECT, 0 writes, >= 0.7x psr",
                _near(selects, 1) and writes == 0 and ratio >= 0.7,
                f"SELECT/req {selects:.2f}, writes/req {writes:.2f}, {shown}",
            )
        )
    redis_read = cell("ours-redis", "read")
    if redis_read and psr_read:
        ratio, shown = _both(redis_read, psr_read, "psr")
        out.append(
            Target(
                "read, redis: 1 round trip, >= 1.2x psr",
                _near(redis_read["redis_round_trips"], 1) and ratio >= 1.2,
                f"round trips/req {redis_read['redis_round_trips']:.2f}, {shown}",
            )
        )
    redis_write, psr_write = cell("ours-redis", "write"), cell("psr", "write")
    if redis_write and psr_write:
        ratio, shown = _both(redis_write, psr_write, "psr")
        out.append(
            Target(
                "write, redis: 2 round trips, >= 1.2x psr",
                _near(redis_write["redis_round_trips"], 2) and ratio >= 1.2,
                f"round trips/req {redis_write['redis_round_trips']:.2f}, {shown}; "
                f"CPU/req {redis_write['cpu_us']:.0f} us vs psr's {psr_write['cpu_us']:.0f} us",
            )
        )
    pg_write, naive_write = cell("ours-sql-pg", "write"), cell("naive-db", "write")
    if pg_write and naive_write:
        sql = pg_write["sql"]
        writes = sum(v for k, v in sql.items() if k in ("INSERT", "UPDATE"))
        ratio, shown = _both(pg_write, naive_write, "naive")
        out.append(
            Target(
                "write, sql-PostgreSQL: 1 SELECT + 1 write in 1 transaction, >= 1.3x naive",
                _near(sql.get("SELECT", 0), 1)
                and _near(writes, 1)
                and _near(pg_write["pg_xacts"], 1)
                and ratio >= 1.3,
                f"SELECT {sql.get('SELECT', 0):.2f}, writes {writes:.2f}, "
                f"transactions {pg_write['pg_xacts']:.2f} per request; {shown}",
            )
        )
    pg_new = cell("ours-sql-pg", "new")
    if pg_new:
        sql = pg_new["sql"]
        out.append(
            Target(
                "new session: 1 INSERT, no read before write",
                _near(sql.get("INSERT", 0), 1)
                and sql.get("SELECT", 0) == 0
                and pg_new["sql_total"] <= 1 + EXACT,
                "statements/req "
                + (", ".join(f"{k} {v:.2f}" for k, v in sql.items() if v >= 0.005) or "none"),
            )
        )
    out.extend(scale_targets(scale))
    cache_read = cell("ours-cache", "read")
    if cache_read and psr_read:
        ratio, shown = _both(cache_read, psr_read, "psr")
        out.append(
            Target(
                "read with session.cache = redis >= 1.0x psr",
                ratio >= 1.0,
                shown,
            )
        )
    return out


def _without_tm_tween(res: dict, floor: dict) -> str:
    diag = res.get("diag-ours-memory-no-tm-tween", {}).get("untouched")
    if not diag:
        return ""
    return f"; ours memory without pyramid_tm's tween {paired(diag, floor):.2f}x floor"


def _vs_tm(res: dict, name: str) -> str:
    tm = res.get("floor-tm", {}).get("untouched")
    if not tm:
        return ""
    return f" ({paired(res[name]['untouched'], tm):.2f}x the floor with pyramid_tm)"


def scale_targets(scale: dict | None) -> list[Target]:
    if not scale:
        return [Target("scale series", None, "not run")]
    out = []
    rows = scale["latency"]
    small, big = rows[0], rows[-1]
    load_ratio, save_ratio = big["load_us"] / small["load_us"], big["save_us"] / small["save_us"]
    out.append(
        Target(
            f"load/save at {big['rows']:,} rows <= 1.2x {small['rows']:,} rows",
            load_ratio <= 1.2 and save_ratio <= 1.2,
            f"load {load_ratio:.2f}x, save {save_ratio:.2f}x",
        )
    )
    purge = scale["purge"]
    out.append(
        Target(
            "purge >= 50,000 expired rows/s, concurrent reads never wait longer than a batch",
            purge["rows_per_second"] >= 50_000
            and purge["max_read_wait_ms"] <= purge["max_batch_ms"],
            f"{purge['rows_per_second']:,.0f} rows/s over {purge['rows']:,} rows; longest read "
            f"{purge['max_read_wait_ms']:.1f} ms, longest batch {purge['max_batch_ms']:.1f} ms",
        )
    )
    memory = scale["memory"]
    out.append(
        Target(
            "memory store bounded by session.memory_max_entries; RSS per session reported",
            memory["stored"] <= memory["max_entries"],
            f"{memory['inserted']:,} saved, {memory['stored']:,} kept "
            f"(max {memory['max_entries']:,}); "
            f"{memory['rss_bytes_per_session']:.0f} B RSS per session",
        )
    )
    return out


def _mib(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:,.0f}"


def _fmt_counts(counts: dict[str, float]) -> str:
    return " ".join(f"{k}:{v:.2f}" for k, v in counts.items() if v >= 0.005) or "-"


def table(report: dict) -> str:
    """The main table as Markdown, ratios to the peers in the same run."""
    res = report["results"]
    lines = []
    for view in VIEWS:
        present = [n for n in ALL_IMPLEMENTATIONS if n in res and view in res[n]]
        if not present:
            continue
        lines += [
            f"### {view}",
            "",
            "| implementation | req/s | x floor | x psr | x naive | p50 ms | p99 ms | CPU us/req "
            "| SQL/req | PG xact/req | Redis cmds/req | Redis RTT/req |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|",
        ]
        for name in present:
            c = res[name][view]

            def ratio(peer: str, c: dict = c, view: str = view) -> str:
                other = res.get(peer, {}).get(view)
                return f"{c['rps'] / other['rps']:.2f}" if other and other["rps"] else "-"

            lines.append(
                f"| {LABELS[name]} | {c['rps']:,.0f} | {ratio('floor')} | {ratio('psr')} | "
                f"{ratio('naive-db')} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | "
                f"{c['cpu_us']:.0f} | "
                f"{_fmt_counts(c['sql'])} | {c['pg_xacts']:.2f} | {_fmt_counts(c['redis_cmds'])} | "
                f"{c['redis_round_trips']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def markdown(report: dict, found: list[Target]) -> str:
    m, s, raw = report["machine"], report["settings"], report["raw"]
    lines = [
        "# Latest benchmark results",
        "",
        f"Machine: {m['nproc']} x {m['cpu']}; Python {m['python']}, PostgreSQL {m['postgresql']}, "
        f"Redis {m['redis_server']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + ".",
        f"Run: {s['rounds']} interleaved rounds of {s['seconds']:g} s per cell, "
        f"{s['connections']} connections, medians; {s['wall_seconds']} s wall.",
        "",
        "## Targets",
        "",
        *[f"- **{t.verdict}** {t.name}: {t.detail}" for t in found],
        "",
        "## Raw store limits (one connection, sequential, from Python)",
        "",
        "| operation | wall us | client CPU us |",
        "|---|---:|---:|",
        *[
            f"| {k} | {v * 1e6:.0f} | {raw.get(k + '_cpu', 0) * 1e6:.0f} |"
            for k, v in raw.items()
            if not k.endswith("_cpu")
        ],
        "",
        "## Per view",
        "",
        table(report),
    ]
    scale = report.get("scale")
    if scale:
        lines += [
            "## Scale series (PostgreSQL)",
            "",
            "| rows | table + indexes MiB | load us (median) | load us (p99) "
            "| save us (median) | save us (p99) |",
            "|---:|---:|---:|---:|---:|---:|",
            *[
                f"| {r['rows']:,} | {_mib(r.get('table_bytes'))} | {r['load_us']:.0f} "
                f"| {r['load_p99_us']:.0f} | {r['save_us']:.0f} | {r['save_p99_us']:.0f} |"
                for r in scale["latency"]
            ],
            "",
            (
                "The sizes were sampled in turn, one database each; PostgreSQL's "
                f"shared_buffers: {scale['shared_buffers']}."
                if scale.get("interleaved")
                else "The sizes were measured one after the other, in one table."
            ),
            "",
            f"Purge: {json.dumps(scale['purge'])}",
            "",
            f"Memory store: {json.dumps(scale['memory'])}",
            "",
        ]
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> bool:
    """Print the table and targets, write JSON, Markdown and charts; True if all pass."""
    out.mkdir(parents=True, exist_ok=True)
    found = targets(report)
    report["targets"] = [{"name": t.name, "verdict": t.verdict, "detail": t.detail} for t in found]
    print()
    print(table(report))
    for target in found:
        print(f"{target.verdict}  {target.name}: {target.detail}")
    (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "latest.md").write_text(markdown(report, found))
    from bench.charts import draw

    draw(report, out)
    return all(t.ok is not False for t in found)
