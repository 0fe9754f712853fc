"""A throwaway PostgreSQL primary with a streaming standby made by ``pg_basebackup -R``.

Production-like where it matters for what a failover loses: ``synchronous_commit = on``,
and with ``synchronous=True`` the primary waits for the standby
(``synchronous_standby_names = '*'``) before it confirms a commit.
"""

from __future__ import annotations

import time

import psycopg

from tests.servers import ThrowawayPostgres

PROMOTE_TIMEOUT = 30


class ThrowawayStandby(ThrowawayPostgres):
    """A hot standby streaming from ``primary``, cloned with ``pg_basebackup -R``."""

    kind = "standby"

    def __init__(self, primary: ThrowawayPostgres, application_name: str = "standby") -> None:
        self.primary = primary
        self.application_name = application_name
        super().__init__()

    def _prepare(self) -> None:
        if self.data_dir.exists():
            return
        source = f"{self.primary.dsn()} application_name={self.application_name}"
        command = [
            str(self.bindir / "pg_basebackup"),
            f"--pgdata={self.data_dir}",
            f"--dbname={source}",
            "--write-recovery-conf",  # -R: standby.signal and primary_conninfo
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
        ]
        self.run_tool(command)
        # The copied postgresql.conf names the primary's socket directory, and its
        # synchronous standby: promoted, this server has none, and would wait for one
        # on every commit.
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(f"\nunix_socket_directories = '{self.dir}'\n")
            conf.write("synchronous_standby_names = ''\n")

    def _is_ready(self) -> bool:
        # A standby's postmaster.pid says "standby" once it accepts read-only clients.
        try:
            lines = self._pidfile_lines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and self._proc is not None
            and lines[0].strip() == str(self._proc.pid)
            and lines[7].strip() in ("ready", "standby")
        )

    def promote(self) -> None:
        """``pg_ctl promote --wait``: returns once the server accepts writes."""
        self.run_tool(
            [str(self.bindir / "pg_ctl"), "promote", "--wait", f"--pgdata={self.data_dir}"],
            timeout=PROMOTE_TIMEOUT,
            error=RuntimeError,
        )

    def replay_lsn(self) -> str:
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=5) as conn:
            return str(conn.execute("SELECT pg_last_wal_replay_lsn()").fetchone()[0])


class ThrowawayPrimary(ThrowawayPostgres):
    """A primary that confirms a commit once it is durable here and, ``synchronous``,
    once a standby has it too."""

    kind = "primary"

    def __init__(self, *, synchronous: bool) -> None:
        self.synchronous = synchronous
        super().__init__()

    def _prepare(self) -> None:
        if self.data_dir.exists():
            return
        super()._prepare()
        settings = {
            "synchronous_commit": "on",
            "synchronous_standby_names": "'*'" if self.synchronous else "''",
        }
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())


def run_sql(server: ThrowawayPostgres, *statements: str, dbname: str = "postgres") -> None:
    with psycopg.connect(server.dsn(dbname), autocommit=True, connect_timeout=5) as conn:
        for statement in statements:
            conn.execute(statement)


def make_read_only(server: ThrowawayPostgres, read_only: bool = True) -> None:
    """``default_transaction_read_only`` through ALTER SYSTEM and a reload, as an
    operator fences a primary (every write refused with SQLSTATE 25006)."""
    value = "on" if read_only else "off"
    run_sql(
        server,
        f"ALTER SYSTEM SET default_transaction_read_only = {value}",
        "SELECT pg_reload_conf()",
    )


def wait_streaming(primary: ThrowawayPostgres, timeout: float = 20.0) -> None:
    """Wait until the standby streams (and, if configured, is the synchronous one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(primary.dsn(), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT state, sync_state FROM pg_stat_replication LIMIT 1"
            ).fetchone()
            wanted = conn.execute("SHOW synchronous_standby_names").fetchone()[0]
        if row is not None and row[0] == "streaming" and (not wanted or row[1] == "sync"):
            return
        time.sleep(0.1)
    raise AssertionError(f"no standby streaming to port {primary.port} within {timeout}s")


def multi_host_url(dbname: str, *servers: ThrowawayPostgres) -> str:
    """SQLAlchemy's form of a libpq multi-host URL that connects only to the primary."""
    hosts = "&".join(f"host=127.0.0.1:{server.port}" for server in servers)
    return f"postgresql+psycopg://postgres@/{dbname}?{hosts}&target_session_attrs=read-write"
