"""Instructions per request of the serving process, counted by valgrind's callgrind.

Throughput on this shared two-core host drifts by tens of per cent between runs; the
number of instructions the app's process executes for a request does not. Each
implementation is served by ``bench.serve`` (waitress, the same process the throughput
runs time) under ``valgrind --tool=callgrind``; after a warm-up the counters are
dumped, ``--requests`` requests are sent over one keep-alive connection, and the
counters are dumped again. The difference, divided by the requests, is printed: the
app's own instructions, waitress included, socket waits and the stores' servers not.

    python -m bench.instructions                           # ours-redis and psr, read
    python -m bench.instructions --only ours-sql-pg psr --view write --requests 500

Under callgrind a request runs ~50 times slower: 1,000 requests take about a minute.
Needs Debian's ``valgrind``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.apps import ALL_IMPLEMENTATIONS, VIEWS
from bench.servers import REPO, Stores
from tests.servers import free_port, stop_process

WARM_UP = 100


class CountedServer:
    """``bench.serve`` for one implementation, under callgrind."""

    def __init__(self, name: str, env_json: str, out_dir: Path) -> None:
        self.port = free_port()
        self.out = out_dir / f"{name}.callgrind"
        self.proc = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={self.out}",
                sys.executable,
                "-m",
                "bench.serve",
                name,
                str(self.port),
                env_json,
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.connection = self._connect(timeout=300)

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        deadline = time.monotonic() + timeout
        while True:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                connection.connect()
                return connection
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server under valgrind did not start") from None
                time.sleep(0.5)

    def get(self, path: str, cookie: str | None) -> http.client.HTTPResponse:
        headers = {"User-Agent": "bench"} | ({"Cookie": cookie} if cookie else {})
        self.connection.request("GET", path, headers=headers)
        response = self.connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
        return response

    def dump(self) -> int:
        """Dump the counters; the instructions executed since the previous dump."""
        before = set(self.out.parent.glob(f"{self.out.name}.*"))
        subprocess.run(
            ["callgrind_control", "--dump", str(self.proc.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for path in set(self.out.parent.glob(f"{self.out.name}.*")) - before:
                for line in path.read_text().splitlines():
                    if line.startswith("summary:"):
                        return int(line.split()[1])
            time.sleep(0.2)
        raise RuntimeError("callgrind wrote no dump")

    def stop(self) -> None:
        self.connection.close()
        stop_process(self.proc)


def instructions_per_request(name: str, env_json: str, view: str, requests: int) -> float:
    with tempfile.TemporaryDirectory(prefix="myapp-callgrind-") as out_dir:
        server = CountedServer(name, env_json, Path(out_dir))
        try:
            made = server.get("/write", None).getheader("Set-Cookie")
            cookie = None if view == "new" or not made else made.split(";", 1)[0]
            for _ in range(WARM_UP):
                server.get("/" + view, cookie)
            server.dump()
            for _ in range(requests):
                server.get("/" + view, cookie)
            return server.dump() / requests
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", nargs="+", choices=ALL_IMPLEMENTATIONS, default=["ours-redis", "psr"]
    )
    parser.add_argument("--view", choices=[v for v in VIEWS if v != "new"], default="read")
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    stores = Stores()
    try:
        env_json = json.dumps(asdict(stores.env))
        counts = {
            name: instructions_per_request(name, env_json, args.view, args.requests)
            for name in args.only
        }
    finally:
        stores.close()
    last = args.only[-1]
    print(f"{args.view}: instructions per request of the serving process, {args.requests} requests")
    for name, count in counts.items():
        print(f"  {name:<14} {count:>12,.0f}   {last}'s / this: {counts[last] / count:.3f}")


if __name__ == "__main__":
    main()
