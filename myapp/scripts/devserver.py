"""``make run``: the development server on a port of your choice, stopped by Ctrl+C.

Ctrl+C reaches only the server (its own process group, in the terminal's foreground),
which stops gracefully, so ``make`` sees a clean exit instead of dying of the signal.
With ``--reload`` the server restarts when a Python file or the ini changes, and is
given its ``shutdown_grace`` to stop before anything is killed. A port already taken is
said in one line, with how to choose another.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from contextlib import suppress

import hupper
import plaster
from pyramid.paster import get_app, setup_logging

from myapp.server import DEFAULT_GRACE, serve

EXIT_PORT_TAKEN = 1


def port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _server_settings(ini: str) -> dict[str, str]:
    settings = dict(plaster.get_loader(ini, protocols=["wsgi"]).get_settings("server:main"))
    settings.pop("use", None)
    return settings


def run_server(ini: str, host: str, port: int) -> None:
    """The server itself (in hupper's worker process when reloading)."""
    setup_logging(ini)
    if hupper.is_active():
        hupper.get_reloader().watch_files([os.path.abspath(ini)])
    settings = _server_settings(ini)
    settings["listen"] = f"{host}:{port}"
    serve(get_app(ini), **settings)


def _terminal() -> int | None:
    with suppress(OSError, ValueError):
        if os.isatty(sys.stdin.fileno()):
            return sys.stdin.fileno()
    return None


def _give_terminal(fd: int | None, group: int) -> None:
    if fd is None:
        return
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # we may be in the background
    try:
        with suppress(OSError):
            os.tcsetpgrp(fd, group)
    finally:
        signal.signal(signal.SIGTTOU, previous)


def _serve(args: argparse.Namespace) -> int:
    if not args.reload:
        run_server(args.ini, args.host, args.port)
        return 0
    grace = float(_server_settings(args.ini).get("shutdown_grace", DEFAULT_GRACE))
    hupper.start_reloader(
        "myapp.scripts.devserver.run_server",
        worker_args=[args.ini, args.host, args.port],
        shutdown_interval=grace + 2,  # the graceful stop, never a forced kill
    )
    return 0  # pragma: no cover - start_reloader exits the monitor itself


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n\n")[0])
    parser.add_argument("ini")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6543)
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--check-port", action="store_true", help="only say if it is free")
    parser.add_argument("--in-foreground", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_foreground:
        return _serve(args)
    if port_taken(args.host, args.port):
        print(
            f"Port {args.port} on {args.host} is already in use (is another server "
            f"running?). Choose another: make run PORT={args.port + 1}",
            file=sys.stderr,
        )
        return EXIT_PORT_TAKEN
    if args.check_port:
        return 0
    command = [sys.executable, "-m", "myapp.scripts.devserver", "--in-foreground"]
    command += [*(["--reload"] if args.reload else []), "--host", args.host]
    command += ["--port", str(args.port), args.ini]
    terminal = _terminal()
    server = subprocess.Popen(command, process_group=0)  # noqa: S603 - ourselves
    _give_terminal(terminal, server.pid)
    try:
        while True:
            try:
                status = server.wait()
                break
            except KeyboardInterrupt:  # not in the terminal's foreground: pass it on
                server.send_signal(signal.SIGINT)
    finally:
        _give_terminal(terminal, os.getpgrp())
    # Stopped by Ctrl+C (or SIGTERM) after a graceful stop: a clean exit.
    return 0 if status in (0, -signal.SIGINT, -signal.SIGTERM) else status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
