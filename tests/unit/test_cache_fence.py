"""The read cache's fence: which answers of a new connection fence the cache."""

from __future__ import annotations

import redis

from myapp.sessions.stores.cachedstore.fence import MasterFence


class FakeConnection:
    """Answers INFO replication and GET of the master key, as a server would."""

    def __init__(self, role: str, server_id: str, recorded: bytes | None, info_error=None):
        self.answers = {
            "INFO": f"# Replication\r\nrole:{role}\r\nmaster_replid:{server_id}\r\n".encode(),
            "GET": recorded,
        }
        self.info_error = info_error
        self.last = ""

    def send_command(self, *args: str) -> None:
        self.last = args[0]

    def read_response(self):
        if self.last == "INFO" and self.info_error is not None:
            raise self.info_error
        return self.answers[self.last]


def test_the_master_the_entries_came_from_does_not_fence():
    fence = MasterFence("p:master")
    fence.on_connect(FakeConnection("master", "a" * 40, b"a" * 40))
    assert not fence.fenced


def test_another_master_or_none_recorded_fences_until_cleared():
    fence = MasterFence("p:master")
    fence.on_connect(FakeConnection("master", "b" * 40, b"a" * 40))
    assert fence.fenced and fence.pending_id == "b" * 40
    fence.cleared(fence.epoch)
    assert not fence.fenced
    fence.on_connect(FakeConnection("master", "c" * 40, None))
    assert fence.fenced


def test_a_replica_or_a_refused_info_leaves_the_cache_as_it_is(caplog):
    fence = MasterFence("p:master")
    fence.on_connect(FakeConnection("slave", "b" * 40, b"a" * 40))
    refused = redis.ResponseError("NOPERM this user has no permissions to run 'info'")
    fence.on_connect(FakeConnection("master", "b" * 40, b"a" * 40, info_error=refused))
    fence.on_connect(FakeConnection("master", "b" * 40, b"a" * 40, info_error=refused))
    assert not fence.fenced
    assert caplog.text.count("INFO is refused") == 1
