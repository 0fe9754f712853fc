"""What asynchronous PostgreSQL replication loses when the primary dies: signed-in
shoppers on a primary with an asynchronous streaming standby, the primary killed
(SIGKILL), the standby promoted, and the confirmed items the shoppers then miss.

Two cases: the standby streaming normally (its lag is what is lost), and the standby
cut off from the primary for ``--cut`` seconds first (a network partition, a stalled
WAL receiver): everything confirmed in that window is lost. The synchronous case is a
test (tests/reliability/test_switchover.py): nothing confirmed is lost.

``python -m bench.failover_loss [--rounds 3] [--cut 3] [--shoppers 10]``; throwaway
servers only; prints the figures and writes bench/results/failover_loss.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from tests.reliability.apps import AppProcess, wait_for
from tests.servers import ThrowawayPostgres
from tests.support.databases import migrate
from tests.support.replication import (
    ThrowawayPrimary,
    ThrowawayStandby,
    multi_host_url,
    run_sql,
    wait_streaming,
)
from tests.support.shoppers import (
    production_settings,
    shopper_accounts,
    signed_in_crowd,
    writes_since,
)

RESULTS = Path(__file__).resolve().parent / "results"


def _writes_and_clock(server: ThrowawayPostgres, clock: str) -> tuple[int, datetime | None]:
    """Session writes the server holds (each write adds 1 to a row's version), and
    ``clock`` (an SQL expression giving a time) there."""
    with psycopg.connect(server.dsn("app"), autocommit=True, connect_timeout=2) as conn:
        writes, moment = conn.execute(
            f"SELECT coalesce(sum(version), 0), {clock} FROM user_sessions"
        ).fetchone()
    return int(writes), moment


def one_round(cut: float, shoppers: int, shop_seconds: float) -> dict[str, Any]:
    with (
        ThrowawayPrimary(synchronous=False) as primary,
        ThrowawayStandby(primary) as standby,
        tempfile.TemporaryDirectory() as logs,
    ):
        wait_streaming(primary)
        url = primary.create_database("app")
        migrate(url)
        logins = shopper_accounts(url, shoppers)
        settings = production_settings(
            multi_host_url("app", primary, standby), "failover-loss:", **{"session.backends": "sql"}
        )
        app = AppProcess(settings, Path(logs)).start().wait_ready()
        try:
            crowd, tally = signed_in_crowd(app, logins)
            try:
                time.sleep(shop_seconds)
                confirmed_before_cut = tally.confirmed_adds
                if cut:
                    # The standby stops receiving WAL: its WAL receiver is told no primary.
                    run_sql(standby, "ALTER SYSTEM SET primary_conninfo = ''")
                    run_sql(standby, "SELECT pg_reload_conf()")
                    time.sleep(cut)
                # The app paused for the count: what the primary holds is what it
                # confirmed; the promoted standby's count is taken before any new write.
                app.proc.send_signal(signal.SIGSTOP)
                try:
                    time.sleep(0.2)  # commits already sent finish
                    confirmed_at_kill = tally.confirmed_adds
                    on_primary, killed_at = _writes_and_clock(primary, "clock_timestamp()")
                    primary.kill()
                    standby.promote()
                    on_standby, last_replayed = _writes_and_clock(
                        standby, "pg_last_xact_replay_timestamp()"
                    )
                finally:
                    app.proc.send_signal(signal.SIGCONT)
                promoted_at = time.monotonic()
                wait_for(lambda: writes_since(tally, promoted_at) >= 20, 20, "writes again")
                time.sleep(shop_seconds)
            finally:
                crowd.stop()
            crowd.final_check()
        finally:
            app.stop()
    # From the last transaction the standby replayed to the kill: what was confirmed in
    # that time is gone.
    window = 0.0
    if on_primary > on_standby and last_replayed is not None:
        window = (killed_at - last_replayed).total_seconds()
    return {
        "cut_seconds": cut,
        "session_writes_lost": on_primary - on_standby,
        "session_writes_before_kill": on_primary,
        "window_seconds": round(window, 3),
        "items_confirmed_in_cut": confirmed_at_kill - confirmed_before_cut if cut else 0,
        "items_confirmed": tally.confirmed_adds,
        # What shoppers saw: carts that shrank, and removed items that came back.
        "items_lost": tally.items_lost,
        "removed_items_back": tally.phantom_items,
        "users_signed_out": tally.users_signed_out,
        "lost_examples": tally.lost_examples[:2],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cut", type=float, default=3.0, help="seconds the standby is cut off")
    parser.add_argument("--shoppers", type=int, default=10)
    parser.add_argument("--shop-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {"streaming": [], "cut": []}
    for _ in range(args.rounds):
        for case, cut in (("streaming", 0.0), ("cut", args.cut)):
            figures = one_round(cut, args.shoppers, args.shop_seconds)
            results[case].append(figures)
            print(case, json.dumps(figures), flush=True)
    for case, rounds in results.items():
        lost = [r["session_writes_lost"] for r in rounds]
        window = [r["window_seconds"] for r in rounds]
        seen = [(r["items_lost"], r["removed_items_back"]) for r in rounds]
        print(
            f"{case}: confirmed session writes lost per round {lost}, window {window} s;"
            f" (items missing, removed items back) seen by shoppers {seen}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "failover_loss.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
