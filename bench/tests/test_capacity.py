"""The capacity page is recomputed from benchmark results, and the sustained targets judged."""

from __future__ import annotations

import json
from pathlib import Path

from bench import capacity, sustained


def variant(**overrides: object) -> dict:
    base = {
        "sessions": 1000,
        "rounds": 20,
        "payload_bytes": 120,
        "hot_share": 0.98,
        "growth": 1.05,
        "p99_drift": 1.1,
        "wal_bytes_per_write": 400.0,
        "pg_server_cpu_us_per_write": 100.0,
        "background_cpu_share": 0.1,
        "size_after_first_write": {"table": 700_000, "indexes": 300_000, "toast": 0, "total": 1e6},
        "size_after_run": {"table": 750_000, "indexes": 300_000, "toast": 0, "total": 1.05e6},
    }
    return {**base, **overrides}


LATEST = {
    "results": {
        "ours-sql-pg": {
            "read": {"cpu_us": 500.0},
            "write": {"cpu_us": 900.0},
            "new": {"cpu_us": 700.0},
        }
    },
    "raw": {"pg_select_txn": 0.0003, "pg_select_txn_cpu": 0.0001},
}
SUSTAINED = {
    "variants": {"ours-small": variant(), "django-small": variant(wal_bytes_per_write=600.0)},
    "redis": {"sessions": 100, "bytes_per_session": 500.0, "payload_bytes": 120},
}


def test_capacity_follows_the_measured_costs():
    figures = capacity.compute(LATEST, SUSTAINED)
    # 5,000 req/s: 80 % reads at 500 us, 15 % writes at 900 us, 5 % new at 700 us.
    assert round(figures["app_cpu_us"]) == 570
    assert round(figures["app_cores"], 2) == round(5000 * 570e-6 / 0.6, 2)
    # 750 saves + 250 new + 200 reissues per second, 400 B of WAL each.
    assert figures["session_writes"] == 1200
    assert figures["wal_per_day"] == 1200 * 400 * 86_400
    assert figures["redis_bytes"] == 10_000_000 * 500 * capacity.REDIS_OVERHEAD
    doubled = capacity.compute(
        LATEST, {**SUSTAINED, "variants": {"ours-small": variant(wal_bytes_per_write=800.0)}}
    )
    assert doubled["wal_per_day"] == 2 * figures["wal_per_day"]


def test_the_capacity_page_is_written_from_the_results(tmp_path: Path):
    (tmp_path / "latest.json").write_text(json.dumps(LATEST))
    (tmp_path / "sustained.json").write_text(json.dumps(SUSTAINED))
    out = tmp_path / "capacity.md"
    args = ["--latest", str(tmp_path / "latest.json"), "--sustained"]
    assert capacity.main([*args, str(tmp_path / "sustained.json"), "--out", str(out)]) == 0
    page = out.read_text()
    assert "10,000,000 sessions" in page and "WAL per day" in page


def test_sustained_targets_pass_and_fail_on_their_thresholds():
    passing = {t["target"]: t["passed"] for t in sustained.targets(SUSTAINED["variants"])}
    assert all(passing.values()) and len(passing) == 4
    worse = {
        "ours-small": variant(hot_share=0.5, growth=2.0, p99_drift=3.0),
        "django-small": variant(wal_bytes_per_write=450.0),
    }
    assert not any(t["passed"] for t in sustained.targets(worse))
