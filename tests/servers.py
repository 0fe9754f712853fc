"""Throwaway PostgreSQL and Redis servers that fault tests may kill, freeze and restart.

Each server gets its own temporary directory and loopback port, so tests never touch
the shared services.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
_LOG_TAIL_CHARS = 4000
# free_port() can race with other processes; a server that loses gets another port.
_PORT_ATTEMPTS = 3

# Servers still alive at interpreter exit; a crashed test must not leak processes.
_LIVE: set[ThrowawayServer] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen | None, timeout: float = STOP_TIMEOUT) -> None:
    """Terminate a child process we started; kill it if it does not exit within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def child_pids(pid: int) -> list[int]:
    """Return the pids of the direct children of ``pid``, read from /proc."""
    children = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces or parentheses; the fields after the last
        # ")" are state and ppid.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def is_alive(pid: int) -> bool:
    """Tell whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _send(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class ServerStartError(RuntimeError):
    """A throwaway server did not come up; the message ends with its log."""


class StartedInWith:
    """``with server:`` starts it and always cleans up, also when the start fails."""

    def start(self) -> Self:
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class ThrowawayServer(StartedInWith):
    """A server process in a private temp dir that can be started, killed and frozen."""

    kind = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, port: int | None = None, start_timeout: float = START_TIMEOUT) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        # /tmp rather than $TMPDIR: the postgres user must be able to reach the directory.
        self.dir = Path(tempfile.mkdtemp(prefix=f"throwaway-{self.kind}-", dir="/tmp"))
        self.log_path = self.dir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen: list[int] = []
        # Only a port picked here may be swapped; a caller's port (or one clients already
        # know from an earlier start) must stay.
        self._may_change_port = port is None
        _LIVE.add(self)

    # Hooks for subclasses.

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Create on-disk state before the first start."""

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _is_ready(self) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """Pid of the main server process, or None when it is not running."""
        return self._proc.pid if self.running and self._proc else None

    # Lifecycle.

    @property
    def running(self) -> bool:
        """True while the main process exists (even if frozen)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the server and wait until it accepts clients."""
        if self.running:
            return self
        self._prepare()
        attempts = _PORT_ATTEMPTS if self._may_change_port else 1
        for attempt in range(1, attempts + 1):
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._start_once()
            except ServerStartError:
                new_output = self.log_text()[log_offset:]
                if attempt == attempts or "Address already in use" not in new_output:
                    raise
                self.port = free_port()
            else:
                break
        self._may_change_port = False
        return self

    def _start_once(self) -> None:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                # A Ctrl-C in the terminal must not reach the server; cleanup() ends it.
                start_new_session=True,
                **self._popen_kwargs(),
            )
        deadline = time.monotonic() + self.start_timeout
        while not self._is_ready():
            code = self._proc.poll()
            if code is not None:
                raise ServerStartError(f"{self.kind} exited with status {code}{self._log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    f"{self.kind} did not accept clients within {self.start_timeout}s"
                    f"{self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def stop(self) -> None:
        """Shut the server down cleanly, killing it if that takes too long."""
        if not self.running or self._proc is None:
            return
        self.thaw()
        self._proc.send_signal(self.stop_signal)
        try:
            self._proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server and its child processes, like a crash of the host process."""
        pid = self.pid
        if pid is None or self._proc is None:
            return
        # Children are collected first: once the parent dies they are reparented.
        children = child_pids(pid)
        _send([pid, *children], signal.SIGKILL)
        self._proc.wait(STOP_TIMEOUT)
        self._frozen = []
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(is_alive(child) for child in children) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)

    def freeze(self) -> None:
        """SIGSTOP the server and its children: sockets stay open but nothing answers."""
        pid = self.pid
        if pid is None:
            raise RuntimeError(f"{self.kind} is not running")
        # Stopping the parent first keeps it from forking children that would escape.
        _send([pid], signal.SIGSTOP)
        children = child_pids(pid)
        _send(children, signal.SIGSTOP)
        self._frozen = [pid, *children]

    def thaw(self) -> None:
        """SIGCONT everything that freeze() stopped."""
        pid = self.pid
        pids = set(self._frozen)
        if pid is not None:
            pids.update([pid, *child_pids(pid)])
        _send(sorted(pids), signal.SIGCONT)
        self._frozen = []

    def restart(self) -> Self:
        """Stop the server if it runs, then start it again on the same port and data."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Kill everything and delete the temp dir; safe to call more than once."""
        self.kill()
        _LIVE.discard(self)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        """Return the server's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _log_tail(self) -> str:
        text = self.log_text()[-_LOG_TAIL_CHARS:]
        return f"\n--- {self.log_path} ---\n{text}" if text else " (empty log)"


def _postgres_bindir() -> Path:
    """Find the newest PostgreSQL server binaries; PG_BINDIR overrides the search."""
    if override := os.environ.get("PG_BINDIR"):
        return Path(override)
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not candidates:
        found = shutil.which("initdb")
        if found is None:
            raise FileNotFoundError("initdb not found; install postgresql or set PG_BINDIR")
        return Path(found).parent
    newest = max(candidates, key=lambda path: int(Path(path).parts[-3]))
    return Path(newest).parent


class ThrowawayPostgres(ThrowawayServer):
    """A private PostgreSQL cluster on 127.0.0.1 with trust auth and fsync off.

    The postmaster runs in the foreground as our child, so ``pid`` is the pid recorded in
    postmaster.pid (start() checks that) and signals reach it without pg_ctl.
    """

    kind = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: abort transactions, disconnect, exit.
    stop_signal = signal.SIGINT

    def __init__(self, port: int | None = None, start_timeout: float = START_TIMEOUT) -> None:
        # Looked up before the temp dir exists, so a missing install leaks nothing.
        self.bindir = _postgres_bindir()
        # The server refuses to run as root, so it runs as the postgres user instead.
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        super().__init__(port, start_timeout)
        self.data_dir = self.dir / "data"
        if self._owner is not None:
            os.chown(self.dir, self._owner.pw_uid, self._owner.pw_gid)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL of another database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq connection string for psycopg."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def _pidfile_lines(self) -> list[str]:
        return (self.data_dir / "postmaster.pid").read_text().splitlines()

    def _as_owner(self) -> dict[str, Any]:
        if self._owner is None:
            return {}
        return {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}

    def run_tool(
        self, command: list[str], *, timeout: float = 60, error: type[Exception] = ServerStartError
    ) -> None:
        """Run a PostgreSQL program as the data directory's owner; ``error`` with its
        output when it fails."""
        result = subprocess.run(
            command,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self._as_owner(),
        )
        if result.returncode != 0:
            name = Path(command[0]).name
            raise error(f"{name} failed:\n{result.stdout}{result.stderr}")

    def _prepare(self) -> None:
        if self.data_dir.exists():
            return
        initdb = [
            str(self.bindir / "initdb"),
            f"--pgdata={self.data_dir}",
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        self.run_tool(initdb)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.dir}'",
            # Durability is pointless for a server that lives for one test.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "50",
        }
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# throwaway test server\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _command(self) -> list[str]:
        # The port goes on the command line so that a port clash can be retried.
        return [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]

    def _popen_kwargs(self) -> dict[str, Any]:
        return self._as_owner()

    def _is_ready(self) -> bool:
        # postmaster.pid starts with the postmaster's pid and its line 8 is the status,
        # "ready" once it listens and recovery is done. A file left by a killed server
        # also says "ready", so the pid must be the one just started.
        try:
            lines = self._pidfile_lines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and self._proc is not None
            and lines[0].strip() == str(self._proc.pid)
            and lines[7].strip() == "ready"
        )


class ThrowawayRedis(ThrowawayServer):
    """A private redis-server on 127.0.0.1 without persistence."""

    kind = "redis"

    @property
    def url(self) -> str:
        """redis-py URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
        ]

    def _is_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class ThrowawayPgBouncer(ThrowawayServer):
    """Debian's PgBouncer on 127.0.0.1 in front of a PostgreSQL server, as ``postgres``.

    Transaction pooling with a small server pool by default: consecutive transactions
    of one client run on whichever server connection is free, as in production.
    """

    kind = "pgbouncer"
    stop_signal = signal.SIGINT  # PgBouncer's "safe shutdown": wait for clients

    def __init__(
        self,
        backend_port: int = 5432,
        *,
        pool_mode: str = "transaction",
        default_pool_size: int = 2,
        port: int | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.path.exists(self.binary):
            raise FileNotFoundError("pgbouncer not found; install Debian's pgbouncer package")
        self.backend_port = backend_port
        self.pool_mode = pool_mode
        self.default_pool_size = default_pool_size
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        super().__init__(port, start_timeout)
        if self._owner is not None:
            os.chown(self.dir, self._owner.pw_uid, self._owner.pw_gid)

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL of a database, through PgBouncer."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def _config_path(self) -> Path:
        return self.dir / "pgbouncer.ini"

    def _prepare(self) -> None:
        (self.dir / "users.txt").write_text('"postgres" ""\n"root" ""\n')
        # Written at each start: the port may have changed after a clash.
        self._config_path().write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.backend_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.default_pool_size}\n"
            "max_client_conn = 500\n"
            "server_round_robin = 1\n"
            "query_wait_timeout = 30\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        if self._owner is not None:
            for path in self.dir.iterdir():
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _start_once(self) -> None:
        self._prepare()
        super()._start_once()

    def _command(self) -> list[str]:
        return [self.binary, str(self._config_path())]

    def _popen_kwargs(self) -> dict[str, Any]:
        if self._owner is None:
            return {}
        return {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}

    def _is_ready(self) -> bool:
        try:
            with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
                conn.execute("SELECT 1", prepare=False)
        except psycopg.Error:
            return False
        return True


@atexit.register
def _cleanup_leftovers() -> None:
    for server in list(_LIVE):
        server.cleanup()
