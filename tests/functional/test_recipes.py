"""Every cron, systemd and container example of the docs, run as printed.

The examples live under /srv/myapp. Each runs in a mount namespace of its own where a
temporary folder is /srv: /srv/myapp holds the venv, the repository's production.ini
(pointed at this run's database, Redis prefix and a free port, as an operator points it
at theirs) and the secrets file the systemd unit names. The commands are taken from the
markdown and run with the environment each one documents: cron's bare PATH, systemd's
EnvironmentFile, the container's ENV plus the secret from the orchestrator.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.servers import free_port, stop_process
from tests.support.databases import REPO

pytestmark = pytest.mark.slow

DOCS = [REPO / "README.md", REPO / "docs" / "operations.md"]
PRODUCTION_URL = "postgresql+psycopg://myapp@127.0.0.1:5432/myapp"
CRON_ENV = {"HOME": "/root", "LOGNAME": "root", "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_SECONDS = 30


def examples(language: str) -> list[str]:
    """The fenced blocks marked ``language`` in the docs, as printed (dedented)."""
    found = []
    fence = re.compile(rf"^([ \t]*)```{language}\n(.*?)^\1```", re.S | re.M)
    for doc in DOCS:
        found += [textwrap.dedent(m.group(2)) for m in fence.finditer(doc.read_text())]
    return found


@dataclass
class Srv:
    root: Path  # mounted on /srv
    port: int


@pytest.fixture(scope="module")
def srv(tmp_path_factory, postgres_url: str, redis_prefix: str) -> Srv:
    if subprocess.run(["unshare", "--mount", "true"], check=False).returncode != 0:
        reason = "needs mount namespaces (unshare --mount, as root) to lay out /srv/myapp"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI runs as root in its container: this must work there
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("srv")
    app = root / "myapp"
    app.mkdir()
    (app / ".venv").symlink_to(REPO / ".venv")
    port = free_port()
    ini = (REPO / "production.ini").read_text()
    for printed, here in [
        (PRODUCTION_URL, postgres_url),
        ("myapp:session:", f"{redis_prefix}recipes:"),
        ("listen = 127.0.0.1:6543", f"listen = 127.0.0.1:{port}"),
    ]:
        assert printed in ini, printed
        ini = ini.replace(printed, here)
    (app / "production.ini").write_text(ini)
    return Srv(root, port)


def in_srv(srv: Srv, argv: list[str], env: dict[str, str], cwd: str, **popen) -> subprocess.Popen:
    """Run ``argv`` with exactly ``env``, in ``cwd``, where /srv is ``srv.root``.

    unshare, sh and env each exec the next: the process is the command itself, so a
    signal sent to it reaches it as a supervisor's would.
    """
    script = 'mount --bind "$1" /srv && cd "$2" && shift 2 && exec env -i "$@"'
    variables = [f"{key}={value}" for key, value in env.items()]
    command = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script]
    return subprocess.Popen(
        [*command, "sh", str(srv.root), cwd, *variables, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def add_expired_session(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO user_sessions (id, data, created_at, last_active_at, expires_at)"
                " VALUES (:id, '{}', now() - interval '2 days', now() - interval '2 days',"
                " now() - interval '1 day')"
            ),
            {"id": secrets.token_hex(32)},
        )
    engine.dispose()


def test_the_docs_have_each_kind_of_recipe():
    assert examples("cron") and examples("systemd") and examples("dockerfile")


@pytest.mark.parametrize("line", examples("cron"))
def test_each_cron_line_runs_as_printed_without_the_secret(srv, line, postgres_url):
    schedule, command = line.split(None, 5)[:5], line.split(None, 5)[5].strip()
    assert len(schedule) == 5
    add_expired_session(postgres_url)
    proc = in_srv(srv, ["/bin/sh", "-c", command], CRON_ENV, cwd="/")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "MYAPP_SESSION_SECRET" not in err
    assert re.search(r"sql: deleted [1-9]\d* expired sessions? in \d+ batch", out), out


def unit_service(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser["Service"]


def wait_for_serving(proc: subprocess.Popen, port: int) -> list[str]:
    """The server's log lines up to the one saying where it listens."""
    lines: list[str] = []
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if f"serving on http://127.0.0.1:{port}" in line:
            return lines
    pytest.fail("the server never said where it listens:\n" + "".join(lines))


def serve_and_stop(proc: subprocess.Popen, port: int, stop: signal.Signals, within: float):
    try:
        wait_for_serving(proc, port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=within)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.fixture
def secrets_file(srv: Srv) -> Iterator[Path]:
    path = srv.root / "myapp" / "secrets.env"
    path.write_text(f"MYAPP_SESSION_SECRET={secrets.token_urlsafe(48)}\n")
    path.chmod(0o600)
    yield path
    path.unlink()


def service_command(service: configparser.SectionProxy, srv: Srv) -> tuple[list[str], str]:
    assert service["EnvironmentFile"].startswith("/srv/myapp/")
    return shlex.split(service["ExecStart"]), service["WorkingDirectory"]


@pytest.mark.parametrize("unit", examples("systemd"))
def test_each_systemd_unit_serves_and_stops_as_printed(srv, unit, secrets_file):
    service = unit_service(unit)
    argv, cwd = service_command(service, srv)
    env = {"PATH": SYSTEMD_PATH}
    for line in secrets_file.read_text().splitlines():  # what EnvironmentFile= reads
        key, _, value = line.partition("=")
        env[key] = value
    proc = in_srv(srv, argv, env, cwd)
    stop = signal.Signals[service.get("KillSignal", "SIGTERM")]
    serve_and_stop(proc, srv.port, stop, within=float(service["TimeoutStopSec"]))


@pytest.mark.parametrize("unit", examples("systemd"))
@pytest.mark.parametrize(
    ("secret", "said"),
    [
        (None, "session.secret_env: the environment variable MYAPP_SESSION_SECRET is not set"),
        ("a" * 48, "a secret has too little entropy"),
    ],
)
def test_a_missing_or_weak_secret_stops_the_unit_with_one_line(srv, unit, secret, said):
    argv, cwd = service_command(unit_service(unit), srv)
    env = {"PATH": SYSTEMD_PATH, **({"MYAPP_SESSION_SECRET": secret} if secret else {})}
    proc = in_srv(srv, argv, env, cwd)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("myapp: cannot start with /srv/myapp/production.ini: ")
    assert said in lines[0]


def dockerfile(text: str) -> tuple[str, dict[str, str], list[str]]:
    workdir, env, cmd = "/", {}, []
    for line in text.splitlines():
        instruction, _, rest = line.partition(" ")
        if instruction == "WORKDIR":
            workdir = rest.strip()
        elif instruction == "ENV":
            key, _, value = rest.strip().partition("=")
            env[key] = value
        elif instruction == "CMD":
            cmd = json.loads(rest)  # the exec form: no shell in between
    assert cmd, "the example has no CMD in exec form"
    return workdir, env, cmd


@pytest.mark.parametrize("text", examples("dockerfile"))
def test_each_container_command_serves_and_stops_on_docker_stop(srv, text):
    workdir, env, cmd = dockerfile(text)
    env["MYAPP_SESSION_SECRET"] = secrets.token_urlsafe(48)  # from the orchestrator
    proc = in_srv(srv, cmd, env, workdir)
    serve_and_stop(proc, srv.port, signal.SIGTERM, within=10)  # docker stop's default
