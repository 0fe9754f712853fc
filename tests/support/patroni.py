"""A throwaway Patroni cluster: one etcd and PostgreSQL members managed by Patroni, on
free loopback ports in temp dirs, each member running as ``postgres``.

Each member's configuration is ``docs/patroni.yml`` (the operator's recipe) with its
``$``-names filled in.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import string
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import STOP_TIMEOUT, ThrowawayServer, child_pids, free_port, is_alive
from tests.support.databases import REPO

RECIPE = REPO / "docs" / "patroni.yml"
PATRONI = shutil.which("patroni") or "/usr/bin/patroni"
ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def recipe_text() -> str:
    return RECIPE.read_text()


class ThrowawayEtcd(ThrowawayServer):
    """A single-node etcd 3 on 127.0.0.1, its v3 API on ``port``."""

    kind = "etcd"

    def __init__(self) -> None:
        if not os.path.exists(ETCD):
            raise FileNotFoundError("etcd not found; install Debian's etcd-server package")
        self.peer_port = free_port()
        super().__init__()

    def _command(self) -> list[str]:
        client = f"http://127.0.0.1:{self.port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            ETCD,
            "--name=dcs",
            f"--data-dir={self.dir / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=dcs={peer}",
            "--log-level=warn",
        ]

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False


class PatroniMember(ThrowawayServer):
    """One Patroni member (and the PostgreSQL it runs), as ``postgres``."""

    kind = "patroni"

    def __init__(self, name: str, etcd: ThrowawayEtcd, scope: str = "shop") -> None:
        if not os.path.exists(PATRONI):
            raise FileNotFoundError("patroni not found; install Debian's patroni package")
        self.name = name
        self.scope = scope
        self.etcd = etcd
        self.rest_port = free_port()
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        super().__init__(port=free_port(), start_timeout=60)
        self.data_dir = self.dir / "data"
        if self._owner is not None:
            os.chown(self.dir, self._owner.pw_uid, self._owner.pw_gid)

    @property
    def config_path(self) -> Path:
        return self.dir / "patroni.yml"

    def config(self) -> str:
        return string.Template(recipe_text()).substitute(
            scope=self.scope,
            name=self.name,
            rest_port=self.rest_port,
            etcd_port=self.etcd.port,
            pg_port=self.port,
            data_dir=self.data_dir,
            state_dir=self.dir,
        )

    def _prepare(self) -> None:
        self.config_path.write_text(self.config())
        if self._owner is not None:
            os.chown(self.config_path, self._owner.pw_uid, self._owner.pw_gid)

    def _command(self) -> list[str]:
        return [PATRONI, str(self.config_path)]

    def _popen_kwargs(self) -> dict[str, Any]:
        if self._owner is None:
            return {}
        return {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}

    def _is_ready(self) -> bool:
        status = self.status()
        return status is not None and status.get("state") == "running"

    def kill(self) -> None:
        """SIGKILL Patroni and the PostgreSQL it runs, as when the machine dies.

        Patroni starts the postmaster through a helper process that exits, so the
        postmaster is not Patroni's child: it is found through its pid file.
        """
        postmaster = self._postmaster_pid()
        doomed = [] if postmaster is None else [postmaster, *child_pids(postmaster)]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        super().kill()
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(is_alive(pid) for pid in doomed) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:  # a stale pid file's pid may belong to another process by now
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if str(self.data_dir).encode() in command and is_alive(pid) else None

    # -- the REST API -----------------------------------------------------------------
    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def status(self) -> dict[str, Any] | None:
        """``GET /patroni`` (any status: a replica answers 503 on /, not here)."""
        try:
            with urllib.request.urlopen(self.api + "/patroni", timeout=2) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            return None

    def role(self) -> str | None:
        status = self.status()
        return None if status is None else status.get("role")

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        request = urllib.request.Request(
            self.api + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def cluster(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.api + "/cluster", timeout=2) as response:
            return json.loads(response.read())

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"


def wait_for_cluster(members: list[PatroniMember], timeout: float = 60.0) -> PatroniMember:
    """Wait for one leader and every other member streaming as its synchronous standby;
    returns the leader."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = members[0].cluster()
        except (OSError, ValueError):
            time.sleep(0.2)
            continue
        roles = {m["name"]: (m["role"], m["state"]) for m in last.get("members", [])}
        leaders = [name for name, (role, _) in roles.items() if role == "leader"]
        synced = [name for name, (role, state) in roles.items() if role == "sync_standby"]
        if len(leaders) == 1 and len(synced) == len(members) - 1:
            return next(m for m in members if m.name == leaders[0])
        time.sleep(0.2)
    raise AssertionError(f"no leader with a synchronous standby within {timeout}s: {last}")
