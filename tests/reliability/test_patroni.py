"""A Patroni cluster (two PostgreSQL members over one etcd, synchronous mode) switching
its leader over under signed-in shoppers, then losing its leader's node.

Each member runs ``docs/patroni.yml``, the operator's recipe; the app's
``sqlalchemy.url`` names both members with ``target_session_attrs=read-write``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.databases import migrate
from tests.support.patroni import ETCD, PATRONI, PatroniMember, ThrowawayEtcd, wait_for_cluster
from tests.support.replication import multi_host_url
from tests.support.shoppers import (
    first_write_after,
    longest_write_pause,
    production_settings,
    report,
    shopper_accounts,
    signed_in_crowd,
    writes_since,
)

from .apps import AppProcess, wait_for
from .test_switchover import FAULT_SECONDS, SHOPPERS, WRITES_BACK_BOUND

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def members() -> Iterator[list[PatroniMember]]:
    if not (os.path.exists(PATRONI) and os.path.exists(ETCD)) and not os.environ.get("CI"):
        pytest.skip("patroni or etcd is not installed (.ci/run installs them)")
    with ThrowawayEtcd() as etcd:
        members = [PatroniMember("pg1", etcd), PatroniMember("pg2", etcd)]
        try:
            for member in members:  # the first bootstraps, the second clones it
                member.start()
            yield members
        finally:
            for member in reversed(members):
                member.cleanup()


def test_patroni_switches_over_and_fails_over_with_nobody_signed_out_and_nothing_lost(
    members: list[PatroniMember], redis_prefix: str, tmp_path: Path
) -> None:
    leader = wait_for_cluster(members)
    url = multi_host_url("app", *members)
    admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{leader.port}/postgres"
    _create_app_database(admin_url)
    app_url = admin_url.rsplit("/", 1)[0] + "/app"
    migrate(app_url)
    logins = shopper_accounts(app_url, SHOPPERS)
    app = AppProcess(production_settings(url, redis_prefix), tmp_path).start().wait_ready()
    try:
        crowd, tally = signed_in_crowd(app, logins)
        try:
            # A planned switchover through the REST API, to the synchronous standby.
            candidate = next(m for m in members if m is not leader)
            switched_at = time.monotonic()
            status, body = leader.post(
                "/switchover", {"leader": leader.name, "candidate": candidate.name}
            )
            assert status == 200, body
            leader = wait_for_cluster(members)
            assert leader is candidate
            time.sleep(FAULT_SECONDS)
            switchover_pause = longest_write_pause(tally, switched_at, time.monotonic())

            # The leader's node dies (Patroni and PostgreSQL killed): its leader key
            # expires (ttl) and Patroni promotes the synchronous standby by itself.
            crashed_at = time.monotonic()
            leader.kill()
            assert leader._postmaster_pid() is None  # its PostgreSQL died with it
            survivor = next(m for m in members if m is not leader)
            wait_for(lambda: survivor.role() in ("master", "primary"), 30, "a new leader")
            promoted_at = time.monotonic()
            wait_for(lambda: writes_since(tally, promoted_at) >= 20, 20, "writes again")
            failover_seconds = first_write_after(tally, promoted_at)
            time.sleep(FAULT_SECONDS)
        finally:
            crowd.stop()
        crowd.final_check()
    finally:
        app.stop()
    report("Patroni switchover: longest pause in writes", switchover_pause, tally)
    report(
        f"Patroni leader's node killed, promoted {promoted_at - crashed_at:.1f}s later;"
        " first write served after the promotion",
        failover_seconds,
        tally,
    )
    assert switchover_pause <= WRITES_BACK_BOUND
    assert failover_seconds <= WRITES_BACK_BOUND
    assert tally.users_signed_out == 0, app.log()[-3000:]
    assert crowd.signed_in == SHOPPERS
    assert tally.items_lost == 0, tally.lost_examples
    assert all(status == 503 for _, _, status in tally.failures), tally.failures[:10]


def _create_app_database(admin_url: str) -> None:
    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE DATABASE app")
