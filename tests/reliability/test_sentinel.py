"""Redis under Sentinel, on real servers: a master, a replica and a Sentinel, with
signed-in shoppers looping over the cart while the master is killed.

Under the Redis store (``session.redis_min_replicas = 1``) and under the read cache
(``session.backends = sql``, ``session.cache = redis``): nobody is signed out, writes
are served again soon after the promotion, no confirmed item is lost. Then the hard
case: the replica is cut off while shoppers write and end sessions, the master is
killed and the stale replica promoted; no cached session older than its database row
is served, and no ended session is served again. Figures are printed (``-s``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from webtest import TestApp

from tests.conftest import LOOPBACK, AppHandle
from tests.support.sentinel import SentinelGroup

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

SHOPPERS = 6
FAST = {
    "pyramid.includes": "tests.support.views tests.reliability.views",
    "session.store_timeout": "0.5",
    "session.breaker_threshold": "1",
    "session.breaker_cooldown": "0.1",
    "session.recheck_interval": "0.2",
}


@pytest.fixture
def sentinel_group(request: pytest.FixtureRequest) -> Iterator[SentinelGroup]:
    """A master, replicas (the ``replicas`` marker's number, 1 by default), a Sentinel."""
    marker = request.node.get_closest_marker("replicas")
    with SentinelGroup(replicas=marker.args[0] if marker else 1) as group:
        yield group


@dataclass
class Shopper:
    """One signed-in client adding numbered items; remembers what was confirmed."""

    client: TestApp
    name: str
    confirmed: list[str] = field(default_factory=list)
    refused: int = 0
    server_errors: list[str] = field(default_factory=list)
    confirmed_at: list[float] = field(default_factory=list)

    def sign_in(self) -> None:
        self.client.get(f"/_t/login?user={self.name}")

    def add(self) -> None:
        item = f"{self.name}-{len(self.confirmed) + self.refused}"
        response = self.client.get(f"/_r/cart_add?item={item}", status="*")
        if response.status_int == 200:
            self.confirmed.append(item)
            self.confirmed_at.append(time.monotonic())
        elif response.status_int == 503:
            self.refused += 1
        else:
            self.server_errors.append(f"{response.status} {response.text[:200]}")

    def state(self) -> dict:
        return self.client.get("/_r/shopper").json


def shoppers_for(handle: AppHandle, count: int = SHOPPERS) -> list[Shopper]:
    shoppers = []
    for _ in range(count):
        shopper = Shopper(
            TestApp(handle.router, extra_environ=LOOPBACK), f"shopper-{uuid.uuid4().hex[:8]}"
        )
        shopper.sign_in()
        shopper.add()
        shoppers.append(shopper)
    return shoppers


class Loop:
    """Every shopper adding items in its own thread until stopped."""

    def __init__(self, shoppers: list[Shopper], pause: float = 0.01) -> None:
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(s, pause), daemon=True) for s in shoppers
        ]

    def _run(self, shopper: Shopper, pause: float) -> None:
        while not self.stop.is_set():
            shopper.add()
            time.sleep(pause)

    def __enter__(self) -> Loop:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def check_nobody_signed_out_nothing_lost(shoppers: list[Shopper]) -> None:
    for shopper in shoppers:
        assert not shopper.server_errors, shopper.server_errors[:3]
        state = shopper.state()
        assert state["user"] == shopper.name, f"{shopper.name} was signed out"
        missing = set(shopper.confirmed) - set(state["cart"])
        assert not missing, f"{shopper.name} lost confirmed items {sorted(missing)[:5]}"


def first_write_after(shoppers: list[Shopper], moment: float) -> float | None:
    after = [t for s in shoppers for t in s.confirmed_at if t >= moment]
    return min(after) - moment if after else None


def kill_master_under_load(
    group: SentinelGroup, shoppers: list[Shopper], report: Callable[[str], None]
) -> float:
    with Loop(shoppers):
        time.sleep(1.0)
        killed = time.monotonic()
        group.master.kill()
        promoted, _ = group.wait_promoted()
        deadline = time.monotonic() + 10
        while first_write_after(shoppers, promoted) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    back = first_write_after(shoppers, promoted)
    report(
        f"master killed; promoted {promoted - killed:.2f} s later; first write served "
        f"{'never' if back is None else f'{back:.2f} s'} after the promotion; "
        f"{sum(len(s.confirmed) for s in shoppers)} items confirmed, "
        f"{sum(s.refused for s in shoppers)} refused (503)"
    )
    assert back is not None and back <= 5.0, "writes were not served within 5 s of the promotion"
    return back


def _report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    def report(line: str) -> None:
        with capsys.disabled():
            print(f"\n[sentinel] {line}")

    return report


# WAIT needs a replica after the failover too: two, so one is left beside the new master.
@pytest.mark.replicas(2)
def test_redis_store_under_sentinel_survives_a_killed_master(
    make_app, postgres_url, sentinel_group, redis_prefix, capsys
):
    handle = make_app(
        "custom",
        **{
            **FAST,
            "sqlalchemy.url": postgres_url,
            "session.backends": "redis",
            "session.redis_url": sentinel_group.url,
            "session.redis_prefix": f"{redis_prefix}sentinel-store:",
            "session.redis_min_replicas": "1",
            "session.redis_replica_timeout": "0.2",
        },
    )
    shoppers = shoppers_for(handle)
    kill_master_under_load(sentinel_group, shoppers, _report(capsys))
    check_nobody_signed_out_nothing_lost(shoppers)
    # Another client, new after the failover, is served too.
    newcomer = shoppers_for(handle, 1)[0]
    newcomer.add()
    check_nobody_signed_out_nothing_lost([newcomer])


def test_read_cache_under_sentinel_survives_a_killed_master(
    make_app, postgres_url, sentinel_group, redis_prefix, capsys
):
    handle = make_app(
        "custom",
        **{
            **FAST,
            "sqlalchemy.url": postgres_url,
            "session.backends": "sql",
            "session.cache": "redis",
            "session.redis_url": sentinel_group.url,
            "session.redis_prefix": f"{redis_prefix}sentinel-cache:",
        },
    )
    shoppers = shoppers_for(handle)
    kill_master_under_load(sentinel_group, shoppers, _report(capsys))
    check_nobody_signed_out_nothing_lost(shoppers)


# -- a stale replica promoted ---------------------------------------------------------


@dataclass
class Ended:
    """A session someone ended (signed out, or ended from another device), and its cookie."""

    cookie: str
    how: str


def end_some(handle: AppHandle, leavers: list[Shopper], pairs: list[tuple[Shopper, Shopper]]):
    """Sign the leavers out; end each pair's second device from its first. Returns what
    was confirmed ended (a 200 that reached every store)."""
    ended = []
    for leaver in leavers:
        cookie = leaver.client.cookies["session"]
        if leaver.client.get("/_r/sign_out", status="*").status_int == 200:
            ended.append(Ended(cookie, "signed out"))
    for first, second in pairs:
        response = first.client.get("/_r/end_others", status="*")
        if response.status_int == 200 and not response.json["missed"]:
            ended.append(Ended(second.client.cookies["session"], "ended from another device"))
    return ended


def devices_of_one_user(handle: AppHandle) -> tuple[Shopper, Shopper]:
    first, second = shoppers_for(handle, 2)
    second.name = first.name
    second.sign_in()
    return first, second


def served_again(handle: AppHandle, ended: list[Ended]) -> list[str]:
    wrong = []
    for session in ended:
        client = TestApp(handle.router, extra_environ=LOOPBACK)
        client.set_cookie("session", session.cookie)
        if client.get("/_r/shopper").json["user"] is not None:
            wrong.append(session.how)
    return wrong


def stale_replica_promoted(
    group: SentinelGroup, handle: AppHandle, report: Callable[[str], None]
) -> None:
    shoppers = shoppers_for(handle)
    leavers = shoppers_for(handle, 2)
    pairs = [devices_of_one_user(handle) for _ in range(2)]
    for shopper in [*shoppers, *leavers, *(s for pair in pairs for s in pair)]:
        shopper.state()  # read once: cached where a cache is
    group.client(group.master).execute_command("WAIT", 1, 2000)
    group.cut_replica_off()
    cut = time.monotonic()
    with Loop(shoppers):
        time.sleep(0.5)
        ended = end_some(handle, leavers, pairs)
        time.sleep(1.5)
        killed = time.monotonic()
        group.master.kill()
        promoted, _ = group.wait_promoted()
        time.sleep(1.0)
    during_cut = sum(1 for s in shoppers for t in s.confirmed_at if cut <= t < killed)
    stale = []
    for shopper in shoppers:
        state = shopper.state()
        assert state["user"] == shopper.name, f"{shopper.name} was signed out"
        if set(shopper.confirmed) - set(state["cart"]):
            stale.append(shopper.name)
    again = served_again(handle, ended)
    report(
        f"replica cut off {killed - cut:.1f} s before the kill, promoted {promoted - killed:.2f} s "
        f"after it: {during_cut} items confirmed and {len(ended)} sessions ended while it was "
        f"cut off; {len(stale)} stale carts served, {len(again)} ended sessions served again"
    )
    assert not [e for s in shoppers for e in s.server_errors]
    assert stale == [], f"stale sessions served to {stale}"
    assert again == [], f"ended sessions served again: {again}"


def test_read_cache_never_serves_a_promoted_stale_replica(
    make_app, postgres_url, sentinel_group, redis_prefix, capsys, caplog
):
    handle = make_app(
        "custom",
        **{
            **FAST,
            "sqlalchemy.url": postgres_url,
            "session.backends": "sql",
            "session.cache": "redis",
            "session.redis_url": sentinel_group.url,
            "session.redis_prefix": f"{redis_prefix}stale-cache:",
        },
    )
    report = _report(capsys)
    stale_replica_promoted(sentinel_group, handle, report)
    drops = [r.getMessage() for r in caplog.records if "dropped in" in r.getMessage()]
    report("; ".join(drops[-1:]) or "no drop logged")
    assert drops, "the cache was never fenced"


def test_redis_store_with_min_replicas_loses_nothing_to_a_promoted_stale_replica(
    make_app, postgres_url, sentinel_group, redis_prefix, capsys
):
    handle = make_app(
        "custom",
        **{
            **FAST,
            "sqlalchemy.url": postgres_url,
            "session.backends": "redis",
            "session.redis_url": sentinel_group.url,
            "session.redis_prefix": f"{redis_prefix}stale-store:",
            "session.redis_min_replicas": "1",
            "session.redis_replica_timeout": "0.2",
        },
    )
    stale_replica_promoted(sentinel_group, handle, _report(capsys))
