"""Prove that the throwaway servers really start, die, hang and come back."""

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.servers import ThrowawayPostgres, ThrowawayRedis, free_port

CLIENT_TIMEOUT = 1.0


def _pg_connect(server: ThrowawayPostgres, dbname: str = "postgres") -> psycopg.Connection:
    # psycopg enforces a 2 s minimum connect timeout.
    return psycopg.connect(server.dsn(dbname), autocommit=True, connect_timeout=2)


def _pg_select_one(server: ThrowawayPostgres) -> int:
    with _pg_connect(server) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


def _redis_client(server: ThrowawayRedis) -> redis.Redis:
    # No retries, so a timeout shows up after exactly one socket timeout.
    return redis.Redis.from_url(
        server.url,
        socket_timeout=CLIENT_TIMEOUT,
        socket_connect_timeout=CLIENT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


def test_free_port_is_bindable_and_nobody_listens_there() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # refused: nothing listens
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname() == ("127.0.0.1", port)


def test_postgres_starts_and_answers(throwaway_pg: ThrowawayPostgres) -> None:
    assert (
        throwaway_pg.url == f"postgresql+psycopg://postgres@127.0.0.1:{throwaway_pg.port}/postgres"
    )
    assert _pg_select_one(throwaway_pg) == 1


def test_postgres_kill_refuses_connections(throwaway_pg: ThrowawayPostgres) -> None:
    conn = _pg_connect(throwaway_pg)
    throwaway_pg.kill()
    assert not throwaway_pg.running
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    with pytest.raises(psycopg.OperationalError, match="refused"):
        _pg_connect(throwaway_pg)
    throwaway_pg.start()
    assert _pg_select_one(throwaway_pg) == 1


def test_postgres_freeze_hangs_until_thaw(throwaway_pg: ThrowawayPostgres) -> None:
    with _pg_connect(throwaway_pg) as conn, ThreadPoolExecutor(1) as pool:
        throwaway_pg.freeze()
        query = pool.submit(lambda: conn.execute("SELECT 42").fetchone())
        with pytest.raises(FutureTimeout):
            query.result(timeout=CLIENT_TIMEOUT)
        # The kernel still completes the TCP handshake, so new clients hang rather than fail.
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            _pg_connect(throwaway_pg)
        assert time.monotonic() - started >= 1.5
        throwaway_pg.thaw()
        assert query.result(timeout=10) == (42,)
    assert _pg_select_one(throwaway_pg) == 1


def test_postgres_restart_keeps_data(throwaway_pg: ThrowawayPostgres) -> None:
    url = throwaway_pg.create_database("kept")
    assert url.endswith(f":{throwaway_pg.port}/kept")
    with _pg_connect(throwaway_pg, "kept") as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (7)")
    old_pid = throwaway_pg.pid
    throwaway_pg.restart()
    assert throwaway_pg.pid != old_pid
    with _pg_connect(throwaway_pg, "kept") as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(7,)]


def test_postgres_restart_after_freeze(throwaway_pg: ThrowawayPostgres) -> None:
    throwaway_pg.freeze()
    throwaway_pg.restart()
    assert _pg_select_one(throwaway_pg) == 1


@pytest.mark.slow
def test_postgres_start_failure_includes_log() -> None:
    with ThrowawayPostgres() as first:
        clash = ThrowawayPostgres(port=first.port, start_timeout=5)
        try:
            with pytest.raises(RuntimeError, match="Address already in use"):
                clash.start()
        finally:
            clash.cleanup()


def test_port_clash_moves_to_a_free_port() -> None:
    server = ThrowawayRedis()
    taken = server.port
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", taken))
        blocker.listen()
        with server:
            assert server.port != taken
            assert _redis_client(server).ping()


def test_redis_lifecycle(throwaway_redis: ThrowawayRedis) -> None:
    client = _redis_client(throwaway_redis)
    assert throwaway_redis.url == f"redis://127.0.0.1:{throwaway_redis.port}/0"
    assert client.ping()

    throwaway_redis.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()

    throwaway_redis.start()
    assert client.ping()

    throwaway_redis.freeze()
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    assert time.monotonic() - started < 3
    throwaway_redis.thaw()
    assert client.ping()

    client.set("k", "v")
    throwaway_redis.restart()
    assert client.ping()
    # Persistence is off, so a restart starts empty.
    assert client.get("k") is None
    client.close()
