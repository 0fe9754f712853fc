"""Which Redis master the read cache's entries came from: another one fences the cache.

Redis replicates asynchronously. A replica cut off from its master keeps the entries
it had and misses later ones (a newer version, a tombstone); once promoted (a Sentinel
failover, a managed Redis switching its endpoint) it would serve them. A promoted
replica takes a new replication id, and so does a master restarted empty. The cache
keeps, in Redis itself, the replication id its entries were written under
(``<prefix>master``): every new connection compares it with the server's own
(``INFO replication``) before its first command. When they differ, the cache is
fenced: reads are misses until the record entries are dropped (tombstones and moved
markers stay) and the key names the new master. A stale replica holds the old id in
that key (it was replicated with the entries), so it is always caught, by every
process, also one started after the failover.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

log = logging.getLogger(__name__)


def _command(connection: Any, *args: str) -> Any:
    connection.send_command(*args)
    return connection.read_response()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class MasterFence:
    """Set on connect when the server is not the master the entries came from."""

    def __init__(self, master_key: str) -> None:
        self.master_key = master_key
        self._lock = threading.Lock()
        #: The server's replication id, once one connection differed from the key.
        self.pending_id: str | None = None
        self.epoch = 0
        self._cleared_epoch = 0
        self._unfenceable = False

    def on_connect(self, connection: Any) -> None:
        """redis-py's connect hook (on the new connection, before its first command)."""
        try:
            info = _text(_command(connection, "INFO", "replication")) or ""
        except redis.ResponseError as exc:  # INFO not allowed to this user (an ACL)
            if not self._unfenceable:
                self._unfenceable = True
                log.warning(
                    "session cache (Redis): INFO is refused (%s), so a promoted stale "
                    "replica cannot be detected; allow +info for this user",
                    exc,
                )
            return
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        if fields.get("role", "master").strip() != "master":
            return  # a replica answers reads only: nothing written here to compare
        server_id = fields.get("master_replid", "").strip()
        written_under = _text(_command(connection, "GET", self.master_key))
        if not server_id or server_id == written_under:
            return
        with self._lock:
            self.pending_id = server_id
            self.epoch += 1
        log.warning(
            "session cache (Redis): its entries were written under %s, the server is %s "
            "(a failover, or a restart); they are dropped before the cache is read again",
            f"master {written_under}" if written_under else "no recorded master",
            server_id,
        )

    @property
    def fenced(self) -> bool:
        return self.epoch != self._cleared_epoch

    def cleared(self, epoch: int) -> None:
        """The entries were dropped and the key names the master seen at ``epoch``."""
        with self._lock:
            self._cleared_epoch = max(self._cleared_epoch, epoch)
