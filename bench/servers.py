"""The stores a bench run uses, and one waitress process per implementation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

import psycopg

from bench.apps import NAIVE_DDL, BenchEnv
from bench.serve import THREADS
from tests.servers import ThrowawayPgBouncer, ThrowawayRedis, free_port, stop_process
from tests.support.databases import create_database, drop_database, migrate, pg_url

REPO = Path(__file__).resolve().parents[1]


class Stores:
    """A fresh PostgreSQL database, a SQLite file, a private redis-server, and a
    PgBouncer in transaction pooling mode in front of the database."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="myapp-bench-"))
        self.dbname = create_database(prefix="myapp_bench")
        self.redis = ThrowawayRedis()
        # As many server connections as the app has threads: no request waits for one.
        self.pgbouncer = ThrowawayPgBouncer(pool_mode="transaction", default_pool_size=THREADS)
        try:
            self.redis.start()
            self.pgbouncer.start()
            url = pg_url(self.dbname)
            migrate(url)
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(NAIVE_DDL)
            sqlite_url = f"sqlite:///{self.dir / 'bench.sqlite'}"
            migrate(sqlite_url)
            self.env = BenchEnv(
                pg_url=url,
                sqlite_url=sqlite_url,
                redis_url=self.redis.url,
                pgbouncer_url=self.pgbouncer.url_for(self.dbname),
            )
        except BaseException:
            self.close()
            raise

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port=5432 user=postgres dbname={self.dbname}"

    def close(self) -> None:
        self.redis.cleanup()
        self.pgbouncer.cleanup()
        drop_database(self.dbname)
        shutil.rmtree(self.dir, ignore_errors=True)


class AppServer:
    """``bench.serve`` for one implementation on a free loopback port."""

    def __init__(self, name: str, env: BenchEnv, log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.serve",
                    name,
                    str(self.port),
                    json.dumps(asdict(env)),
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base_url + "/_bench/stats", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n{self.log_path.read_text()[-3000:]}")

    def new_cookie(self) -> str | None:
        """``name=value`` of a session made by the write view, or None (no cookie issued)."""
        with urllib.request.urlopen(self.base_url + "/write", timeout=10) as response:
            header = response.headers.get("Set-Cookie")
        return header.split(";", 1)[0] if header else None

    def sets_cookie(self, path: str, cookie: str | None) -> bool:
        """Whether a request to ``path`` sending ``cookie`` gets a Set-Cookie back."""
        request = urllib.request.Request(self.base_url + path)
        if cookie:
            request.add_header("Cookie", cookie)
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.headers.get("Set-Cookie") is not None

    def stop(self) -> None:
        stop_process(self.proc)
