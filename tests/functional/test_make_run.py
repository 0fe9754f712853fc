"""``make run`` as a developer uses it: Ctrl+C in the terminal stops it cleanly, a port
in use is said in one line with the way out, and ``PORT`` picks another."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tests.servers import free_port
from tests.support.databases import REPO

pytestmark = pytest.mark.slow

SERVE_SECONDS = 90  # a first `make run` may create the venv's stamp files


class Terminal:
    """``make run PORT=...`` in a pseudo-terminal, as typed at a shell prompt."""

    def __init__(self, port: int) -> None:
        self.output = b""
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: make, with the pty as its controlling terminal
            os.chdir(REPO)
            os.execvp("make", ["make", "--no-print-directory", "run", f"PORT={port}"])

    def read_until(self, text: bytes, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # the other side closed: everything has exited
                return text in self.output
            if not chunk:
                return text in self.output
            self.output += chunk
            if text in self.output:
                return True
        return False

    def wait(self, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.read_until(b"\x00never", 0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        pytest.fail("make run did not exit:\n" + self.text)

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")


@pytest.fixture(autouse=True)
def needs_make():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")


def test_ctrl_c_stops_make_run_cleanly_on_the_chosen_port():
    port = free_port()
    terminal = Terminal(port)
    assert terminal.read_until(f"serving on http://127.0.0.1:{port}".encode(), SERVE_SECONDS), (
        terminal.text
    )
    os.write(terminal.fd, b"\x03")  # Ctrl+C, as the terminal sends it
    assert terminal.wait(30) == 0, terminal.text
    assert "forcefully killing" not in terminal.text
    assert "Error" not in terminal.text
    assert "stopped after" in terminal.text
    # The port is free again: nothing was left behind.
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_a_port_in_use_is_said_in_one_line_with_the_way_out():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            ["make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=SERVE_SECONDS,
            check=False,
        )
    assert result.returncode != 0
    said = [line for line in result.stderr.splitlines() if not line.startswith("make")]
    assert said == [
        f"Port {port} on 127.0.0.1 is already in use (is another server running?). "
        f"Choose another: make run PORT={port + 1}"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_the_readme_shows_how_to_choose_the_port():
    readme = (REPO / "README.md").read_text()
    assert "make run PORT=6544" in readme
