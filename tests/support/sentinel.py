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
# Also how long Sentinel leaves a replica pointed elsewhere before it repoints it
# ("+fix-slave-config"): longer than any cut-off a test makes.
FAILOVER_TIMEOUT_MS = 10000


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
    """A master, replicas and a Sentinel; ``url`` is the app's ``session.redis_url``."""

    def __init__(self, replicas: int = 1) -> None:
        self._stack = ExitStack()
        self.master = ThrowawayRedis()
        self.replica_count = replicas
        self.replicas: list[ReplicaRedis] = []
        self.sentinel: ThrowawaySentinel | None = None

    @property
    def replica(self) -> ReplicaRedis:
        """The first replica: the one a test cuts off and expects promoted."""
        return self.replicas[0]

    def __enter__(self) -> Self:
        try:
            self._stack.enter_context(self.master)
            for _ in range(self.replica_count):
                replica = self._stack.enter_context(ReplicaRedis(self.master.port))
                self.replicas.append(replica)
                self.wait_in_sync(replica)
            self.sentinel = self._stack.enter_context(ThrowawaySentinel(self.master.port))
            self.wait_sentinel_sees_replicas()
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

    def wait_in_sync(self, replica: ThrowawayRedis, timeout: float = 20.0) -> None:
        _wait(
            lambda: self.client(replica).info("replication").get("master_link_status") == "up",
            timeout,
            "a replica to sync with its master",
        )

    def wait_sentinel_sees_replicas(self, timeout: float = 20.0) -> None:
        _wait(
            lambda: len(self.sentinel_client().sentinel_slaves(SERVICE)) == self.replica_count,
            timeout,
            "Sentinel to discover the replicas",
        )

    def wait_promoted(self, timeout: float = 30.0) -> tuple[float, ThrowawayRedis]:
        """Wait until Sentinel names a replica as master and it has taken the role;
        return when (monotonic) and which."""
        old_port = self.master.port
        _wait(lambda: self.master_port() != old_port, timeout, "Sentinel to promote a replica")
        promoted = next(r for r in self.replicas if r.port == self.master_port())
        _wait(
            lambda: self.client(promoted).info("replication").get("role") == "master",
            timeout,
            "the replica to take the master role",
        )
        return time.monotonic(), promoted

    def cut_replica_off(self) -> None:
        """Point the first replica at a port nobody listens on: it keeps its data and
        misses the master's later writes (no kernel buffer carries them over later)."""
        nowhere = self.master.port + 1 if self.master.port < 65000 else 1
        self.client(self.replica).execute_command("REPLICAOF", "127.0.0.1", str(nowhere))


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
