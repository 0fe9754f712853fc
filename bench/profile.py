"""Profile one implementation's view in-process: ``python -m bench.profile ours-sql-pg read``.

Calls the WSGI app directly (no waitress, no sockets) so the profile shows only the
app's own cost; ``--time`` prints microseconds per request instead of a profile.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

from bench.apps import ALL_IMPLEMENTATIONS, VIEWS, WRITE_METHOD, build
from bench.servers import Stores


def _environ(path: str, cookie: str | None) -> dict:
    environ = {
        "REQUEST_METHOD": WRITE_METHOD if path == "/write" else "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "HTTP_USER_AGENT": "bench",
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    return environ


def call(app, path: str, cookie: str | None = None) -> list[tuple[str, str]]:
    captured: list[tuple[str, str]] = []

    def start_response(status, headers, exc_info=None):
        assert status.startswith("200"), status
        captured.extend(headers)

    body = app(_environ(path, cookie), start_response)
    b"".join(body)
    getattr(body, "close", lambda: None)()
    return captured


def cookie_of(headers: list[tuple[str, str]]) -> str | None:
    for name, value in headers:
        if name.lower() == "set-cookie":
            return value.split(";", 1)[0]
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("impl", choices=ALL_IMPLEMENTATIONS)
    parser.add_argument("view", choices=VIEWS)
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--time", action="store_true", help="only time it")
    args = parser.parse_args(argv)
    stores = Stores()
    try:
        app = build(args.impl, stores.env)
        cookie = None if args.view == "new" else cookie_of(call(app, "/write"))
        path = "/" + args.view
        for _ in range(200):
            call(app, path, cookie)
        if args.time:
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.n):
                call(app, path, cookie)
            wall = (time.perf_counter() - started) / args.n * 1e6
            cpu = (time.process_time() - cpu) / args.n * 1e6
            print(f"{args.impl} {args.view}: {wall:.0f} us wall, {cpu:.0f} us CPU per request")
            return
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        with profiler:
            for _ in range(args.n):
                call(app, path, cookie)
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    finally:
        stores.close()


if __name__ == "__main__":
    main()
