"""A throwaway Redis master, replica and Sentinel on free loopback ports (killed by pid)."""

from __future__ import annotations

import shutil
import socket
import time
from contextlib import ExitStack
from typing import Self

import redis

from tests.servers import ThrowawayRedis, ThrowawayServer

SERVICE = "sessions"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class ReplicaRedis(ThrowawayRedis):
    """A redis-server that replicates ``master_port`` from its start."""

    def __init__(self, master_port: int) -> None:
        super().__init__()
        self.master_port = master_port

    def _command(self) -> list[str]:
        return [*super()._command(), "--replicaof", "127.0.0.1", str(self.master_port)]


class ThrowawaySentinel(ThrowawayServer):
    """``redis-server --sentinel`` watching one master (quorum 1, quick failover)."""

    kind = "sentinel"

    def __init__(self, master_port: int) -> None:
        super().__init__()
        self.master_port = master_port

    def _prepare(self) -> None:
        # Sentinel rewrites its config file: one of its own in the server's directory.
        (self.dir / "sentinel.conf").write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )

    def _command(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [binary, str(self.dir / "sentinel.conf"), "--sentinel"]

    def _is_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class SentinelGroup:
    """A master, one replica and a Sentinel; ``url`` is the app's ``session.redis_url``."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self.master = ThrowawayRedis()
        self.replica: ReplicaRedis | None = None
        self.sentinel: ThrowawaySentinel | None = None

    def __enter__(self) -> Self:
        try:
            self._stack.enter_context(self.master)
            self.replica = self._stack.enter_context(ReplicaRedis(self.master.port))
            self.wait_replica_in_sync()
            self.sentinel = self._stack.enter_context(ThrowawaySentinel(self.master.port))
            self.wait_sentinel_sees_replica()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def url(self) -> str:
        assert self.sentinel is not None
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SERVICE}/0"

    def client(self, server: ThrowawayRedis) -> redis.Redis:
        return redis.Redis(port=server.port, socket_timeout=2, socket_connect_timeout=2)

    def sentinel_client(self) -> redis.Redis:
        assert self.sentinel is not None
        return redis.Redis(port=self.sentinel.port, socket_timeout=2, socket_connect_timeout=2)

    def master_port(self) -> int:
        """The master's port as Sentinel says now."""
        _, port = self.sentinel_client().sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def wait_replica_in_sync(self, timeout: float = 20.0) -> None:
        assert self.replica is not None
        _wait(
            lambda: self.client(self.replica).info("replication").get("master_link_status") == "up",
            timeout,
            "the replica to sync with its master",
        )

    def wait_sentinel_sees_replica(self, timeout: float = 20.0) -> None:
        _wait(
            lambda: len(self.sentinel_client().sentinel_slaves(SERVICE)) == 1,
            timeout,
            "Sentinel to discover the replica",
        )

    def wait_promoted(self, timeout: float = 30.0) -> float:
        """Wait until Sentinel names the replica as master; return when (monotonic)."""
        assert self.replica is not None
        replica_port = self.replica.port
        _wait(lambda: self.master_port() == replica_port, timeout, "Sentinel to promote")
        _wait(
            lambda: self.client(self.replica).info("replication").get("role") == "master",
            timeout,
            "the replica to take the master role",
        )
        return time.monotonic()

    def cut_replica_off(self) -> None:
        """Point the replica at a port nobody listens on: it keeps its data and stops
        receiving the master's writes (no kernel buffer carries them over later)."""
        assert self.replica is not None
        nowhere = self.master.port + 1 if self.master.port < 65000 else 1
        self.client(self.replica).execute_command("REPLICAOF", "127.0.0.1", str(nowhere))

    def reconnect_replica(self) -> None:
        assert self.replica is not None
        self.client(self.replica).execute_command("REPLICAOF", "127.0.0.1", str(self.master.port))


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
