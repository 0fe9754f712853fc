"""Run one benchmarked app in waitress: ``python -m bench.serve NAME PORT ENV_JSON``."""

from __future__ import annotations

import json
import logging
import sys

import waitress

from bench.apps import BenchEnv, build

THREADS = 4


def main(argv: list[str]) -> None:
    name, port, env_json = argv
    logging.basicConfig(level=logging.WARNING)
    app = build(name, BenchEnv(**json.loads(env_json)))
    waitress.serve(app, listen=f"127.0.0.1:{port}", threads=THREADS, _quiet=True)


if __name__ == "__main__":
    main(sys.argv[1:])
