"""``session.redis_url`` for a single Redis, a Sentinel-managed master, or a Redis Cluster.

``redis://`` and ``rediss://`` go to redis-py as they are;
``redis+sentinel://[:password@]host:port[,host:port]/service_name[/db]`` and
``redis+cluster://[:password@]host:port[,host:port]`` use redis-py's own clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from ...redact import redact

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"


@dataclass(frozen=True)
class RedisTarget:
    """What a ``session.redis_url`` names."""

    kind: str  # "single", "sentinel" or "cluster"
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    password: str | None = None
    username: str | None = None


def parse_redis_url(url: str) -> RedisTarget:
    """Split a Sentinel or Cluster URL into its parts; a plain URL is kept whole.

    Raises ValueError naming what is wrong.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("session.redis_url has no scheme (redis://, rediss://, ...)")
    if scheme in ("redis", "rediss", "unix"):
        return RedisTarget("single", url)
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise ValueError(
            f"session.redis_url: unknown scheme {scheme!r}; use redis, rediss, "
            f"{SENTINEL_SCHEME} or {CLUSTER_SCHEME}"
        )
    username = password = None
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    netloc, _, path = rest.partition("/")
    hosts = tuple(_host_port(part, url) for part in netloc.split(",") if part.strip())
    if not hosts:
        raise ValueError(f"session.redis_url: {scheme} URL names no host:port")
    parts = [p for p in path.split("/") if p]
    if scheme == CLUSTER_SCHEME:
        if parts:
            raise ValueError(
                "session.redis_url: a Redis Cluster has only database 0; drop the path"
            )
        return RedisTarget("cluster", url, hosts, password=password, username=username)
    if not parts or len(parts) > 2:
        raise ValueError(
            "session.redis_url: a Sentinel URL is "
            "redis+sentinel://host:port[,host:port]/service_name[/db]"
        )
    db = _integer(parts[1], "database number") if len(parts) == 2 else 0
    return RedisTarget("sentinel", url, hosts, parts[0], db, password, username)


def _host_port(text: str, url: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"session.redis_url: {redact(text)!r} in {redact(url)!r} is not host:port")
    return host.strip("[]"), _integer(port, "port")


def _integer(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"session.redis_url: {what} {text!r} is not a number") from None
    if value < 0:
        raise ValueError(f"session.redis_url: {what} {value} is negative")
    return value


def make_client(url: str, timeout: float, on_connect: Callable[[Any], None] | None = None) -> Any:
    """A client that fails within ``timeout`` instead of retrying with back-off.

    Returns a ``redis.Redis`` (a Sentinel master is one too) or a ``RedisCluster``.
    ``on_connect(connection)`` runs on every new connection, after redis-py's own
    handshake and before its first command (not on a Cluster).
    """
    bounded: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
    }
    target = parse_redis_url(url)
    if on_connect is not None and target.kind != "cluster":
        bounded["redis_connect_func"] = _after_handshake(on_connect)
    if target.kind == "single":
        return redis.Redis.from_url(url, health_check_interval=0, **bounded)
    credentials = {"password": target.password, "username": target.username}
    if target.kind == "sentinel":
        sentinel = Sentinel(
            list(target.hosts),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        # master_for asks the sentinels for the current master on every (re)connect,
        # so a failover is followed without a restart.
        return sentinel.master_for(target.service, db=target.db, **credentials, **bounded)
    # The cluster client learns the slot map on construction: it needs a node up.
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        **credentials,
    )


def _after_handshake(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    # redis-py calls redis_connect_func instead of its own on_connect (AUTH, SELECT...).
    def connect(connection: Any) -> None:
        connection.on_connect()
        hook(connection)

    return connect
