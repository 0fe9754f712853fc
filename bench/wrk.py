"""Running wrk and reading its report."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK = "/usr/bin/wrk"
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}

# Gives each wrk thread (one connection each) its own session cookie: two
# connections writing one session would measure conflict retries, not sessions.
PER_THREAD_COOKIES = """
local cookies = {%s}
local counter = 0
function setup(thread)
  counter = counter + 1
  if #cookies > 0 then
    thread:set("cookie", cookies[(counter - 1) %% #cookies + 1])
  end
end
function init(args)
  wrk.method = "%s"
  wrk.headers["Cookie"] = cookie
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50: float  # seconds
    p99: float
    errors: int  # non-2xx/3xx responses plus socket errors


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(output: str) -> WrkResult:
    """Read the figures out of ``wrk --latency`` output."""
    total = re.search(r"(\d+) requests in ([\d.]+\w+),", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (total and rps and p50 and p99):
        raise ValueError(f"cannot read wrk output:\n{output}")
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return WrkResult(
        requests=int(total.group(1)),
        seconds=_seconds(total.group(2)),
        rps=float(rps.group(1)),
        p50=_seconds(p50.group(1)),
        p99=_seconds(p99.group(1)),
        errors=errors,
    )


def cookie_script(cookies: list[str], directory: Path, method: str = "GET") -> Path:
    """A wrk Lua script that sends ``method`` requests with one of ``cookies`` per thread."""
    if method not in ("GET", "POST"):
        raise ValueError(f"unsupported method {method!r}")
    quoted = ", ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in cookies)
    path = directory / f"cookies-{method}-{abs(hash(tuple(cookies)))}.lua"
    path.write_text(PER_THREAD_COOKIES % (quoted, method))
    return path


def run(
    url: str,
    *,
    seconds: float,
    connections: int,
    header: str | None = None,
    script: Path | None = None,
) -> WrkResult:
    """Load ``url`` for ``seconds`` with one thread per connection (bounded by a timeout)."""
    command = [
        WRK,
        f"-t{connections}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "2s",
        "--latency",
    ]
    if header:
        command += ["-H", header]
    if script:
        command += ["-s", str(script)]
    done = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 30, check=True
    )
    return parse(done.stdout)
