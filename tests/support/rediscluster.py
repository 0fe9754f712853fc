"""A throwaway three-master Redis Cluster on loopback, removed afterwards even on failure."""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Self

import redis

from tests.servers import ServerStartError, StartedInWith, ThrowawayRedis, free_port

CLUSTER_TIMEOUT = 15.0
_POLL_INTERVAL = 0.1
_NODES = 3


def redis_binaries_missing() -> str | None:
    """Name the missing binary, or None when both are installed."""
    for binary in ("redis-server", "redis-cli"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed"
    return None


class ThrowawayClusterNode(ThrowawayRedis):
    """A cluster-enabled redis-server; its node file and bus port are its own.

    The bus port is picked like the client port: the default (port + 10000) could be
    taken, or above 65535.
    """

    kind = "redis-cluster-node"

    def __init__(self) -> None:
        super().__init__()
        self.bus_port = 0  # picked by the first start

    def _command(self) -> list[str]:
        if self._may_change_port:  # a retry after a port clash picks a new bus port too
            self.bus_port = free_port()
        return [
            *super()._command(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.dir / f"nodes-{self.port}.conf"),
            "--cluster-port",
            str(self.bus_port),
        ]


class ThrowawayRedisCluster(StartedInWith):
    """Three masters, no replicas, all 16384 slots assigned by ``redis-cli --cluster create``."""

    def __init__(self, timeout: float = CLUSTER_TIMEOUT) -> None:
        self.timeout = timeout
        self.nodes: list[ThrowawayClusterNode] = []

    @property
    def url(self) -> str:
        """``session.redis_url`` naming one node: the client learns the others."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self) -> Self:
        for _ in range(_NODES):
            node = ThrowawayClusterNode()
            self.nodes.append(node)
            node.start()
        create = [
            shutil.which("redis-cli") or "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in self.ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        try:
            result = subprocess.run(
                create,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerStartError(f"redis-cli --cluster create took over {self.timeout}s") from exc
        if result.returncode != 0:
            raise ServerStartError(
                f"redis-cli --cluster create exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        self._wait_until_ok()
        return self

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + self.timeout
        states: dict[int, str] = {}
        while True:
            for port in self.ports:
                states[port] = self._state(port)
            if all(state == "ok" for state in states.values()):
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"cluster_state not ok on every node within {self.timeout}s: {states}"
                )
            time.sleep(_POLL_INTERVAL)

    @staticmethod
    def _state(port: int) -> str:
        client = redis.Redis(
            host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1
        )
        try:
            info = client.execute_command("CLUSTER INFO")
        except redis.RedisError as exc:
            return f"error: {exc}"
        finally:
            client.close()
        # redis-py parses the reply into a dict of strings.
        return str(info.get("cluster_state", "unknown"))

    def cleanup(self) -> None:
        """SIGKILL every node by pid and delete its directory; safe to call twice."""
        for node in self.nodes:
            node.cleanup()
