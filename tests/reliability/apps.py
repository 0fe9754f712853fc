"""Run the app in real waitress processes, and talk to it like a browser would."""

from __future__ import annotations

import http.cookiejar
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import SECRET
from tests.servers import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0

# Builds the app from JSON settings and serves it; logs go to stderr (a file).
_SERVE = """
import json, logging, os, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(levelname)s [%(name)s] %(message)s")
import myapp
from myapp.server import serve
settings = json.loads(os.environ["TEST_APP_SETTINGS"])
app = myapp.main({}, **settings)
print("APP BUILT", flush=True, file=sys.stderr)
serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True,
      connection_limit=200, channel_timeout=30, shutdown_grace=sys.argv[3])
print("APP EXITED", flush=True, file=sys.stderr)
"""


def app_settings(**overrides: Any) -> dict[str, str]:
    settings = {
        "session.secret": SECRET,
        "session.check_timeout": "1",
        "session.store_timeout": "1",
        "session.recheck_interval": "0.5",
        "pyramid.includes": "tests.support.views tests.reliability.views",
        "myapp.password_hash_profile": "CHEAPEST",  # as the test accounts' hashes
    }
    settings.update({k: str(v) for k, v in overrides.items()})
    return settings


class AppProcess:
    """One waitress process serving myapp on a free loopback port."""

    def __init__(
        self, settings: dict[str, str], log_dir: Path, threads: int = 4, grace: float = 10.0
    ) -> None:
        self.settings = settings
        self.port = free_port()
        self.threads = threads
        self.grace = grace
        self.log_path = log_dir / f"app-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppProcess:
        env = {**os.environ, "TEST_APP_SETTINGS": json.dumps(self.settings)}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE, str(self.port), str(self.threads), str(self.grace)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> AppProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _ = Client(self.url).get("/healthz", timeout=2)
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200:
                return self
        raise AssertionError(f"app not ready within {timeout}s:\n{self.log()}")

    def health(self) -> dict[str, Any]:
        status, body = Client(self.url).get("/healthz", timeout=5)
        assert status == 200, body
        return json.loads(body)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class Response:
    status: int
    body: str
    set_cookies: list[str]

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A browser-like client: keeps cookies, never follows redirects, never raises on 5xx."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(
        self,
        path: str,
        timeout: float = 10,
        cookie: str | None = None,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
    ) -> Response:
        req = urllib.request.Request(self.base + path, method=method, headers=headers or {})
        if cookie is not None:
            req.add_header("Cookie", cookie)
            opener = urllib.request.build_opener()
        else:
            opener = self.opener
        try:
            with opener.open(req, timeout=timeout) as resp:
                return Response(
                    resp.status, resp.read().decode(), resp.headers.get_all("Set-Cookie") or []
                )
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read().decode(), exc.headers.get_all("Set-Cookie") or [])

    def get(self, path: str, timeout: float = 10) -> tuple[int, str]:
        response = self.request(path, timeout)
        return response.status, response.body

    def cookie(self, name: str = "session") -> str | None:
        for cookie in self.jar:
            if cookie.name == name:
                return cookie.value
        return None

    def copy_cookies_to(self, other: Client) -> None:
        # The host is the same (127.0.0.1), only the port differs: cookies ignore ports.
        for cookie in self.jar:
            other.jar.set_cookie(cookie)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll until ``predicate()`` is true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
