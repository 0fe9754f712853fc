"""The deadline watchdog and session.redis_url parsing, on real sockets and a real Sentinel."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from myapp.sessions.stores.redisstore.urls import make_client, parse_redis_url
from myapp.sessions.stores.sqlstore.connection import Watchdog
from tests.servers import ThrowawayRedis, free_port


def test_a_blocked_recv_is_released_at_its_deadline():
    left, right = socket.socketpair()
    watchdog = Watchdog()
    started = time.monotonic()
    with left, right, watchdog.guard(left.fileno(), 0.3) as deadline:
        assert left.recv(10) == b""  # the shutdown ends the wait: EOF
    assert deadline.fired
    assert time.monotonic() - started < 3


def test_a_call_that_returns_in_time_is_left_alone():
    left, right = socket.socketpair()
    watchdog = Watchdog()
    with left, right:
        with watchdog.guard(left.fileno(), 0.2) as deadline:
            right.sendall(b"hi")
            assert left.recv(10) == b"hi"
        time.sleep(0.4)
        right.sendall(b"again")
        assert left.recv(10) == b"again"
    assert not deadline.fired


@pytest.mark.parametrize(
    ("url", "kind", "hosts", "service", "db"),
    [
        ("redis://127.0.0.1:6379/2", "single", (), None, 0),
        (
            "redis+sentinel://127.0.0.1:26379/mymaster",
            "sentinel",
            (("127.0.0.1", 26379),),
            "mymaster",
            0,
        ),
        (
            "redis+sentinel://:pw@a:1,b:2/svc/3",
            "sentinel",
            (("a", 1), ("b", 2)),
            "svc",
            3,
        ),
        ("redis+cluster://n1:7000,n2:7001", "cluster", (("n1", 7000), ("n2", 7001)), None, 0),
    ],
)
def test_redis_urls_parse(url, kind, hosts, service, db):
    target = parse_redis_url(url)
    assert (target.kind, target.hosts, target.service, target.db) == (kind, hosts, service, db)


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:6379",
        "memcached://x:1",
        "redis+sentinel://h:1",
        "redis+sentinel://h:x/svc",
        "redis+sentinel:///svc",
        "redis+cluster://h:1/0",
    ],
)
def test_bad_redis_urls_are_refused(url):
    with pytest.raises(ValueError, match="session.redis_url"):
        parse_redis_url(url)


@pytest.mark.slow
def test_a_real_sentinel_hands_out_the_master(tmp_path):
    with ThrowawayRedis() as master:
        port = free_port()
        conf = tmp_path / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        )
        proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = make_client(f"redis+sentinel://127.0.0.1:{port}/mymaster/0", 1.0)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.set("k", "v")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert client.get("k") == b"v"
            client.close()
        finally:
            proc.terminate()
            proc.wait(10)
