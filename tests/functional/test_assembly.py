"""One assembly: the app and the operator scripts build the same stores from one ini."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.databases import REPO
from tests.support.ops import write_ini

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# Prints what a chain was built of: every store with the settings it was built with.
DESCRIBE = """
import json, sys
from pyramid.paster import get_app
from myapp.sessions import get_chain
from myapp.scripts.environment import load_environment

def store(s):
    out = {"class": type(s).__name__, "name": s.name, "shared": s.shared}
    primary = getattr(s, "primary", None)
    if primary is not None:
        out["primary"] = store(primary)
        cache = s.cache
        out["cache"] = {"prefix": cache.prefix, "ttl": cache.ttl,
                        "first_delay": cache.breaker.first_delay,
                        "max_delay": cache.breaker.max_delay}
    for attr in ("timeout", "check_timeout", "session_transactions", "prefix", "max_entries"):
        if hasattr(s, attr):
            out[attr] = getattr(s, attr)
    return out

def chain(c):
    return {
        "names": list(c.names),
        "runtime_failover": c.runtime_failover,
        "recheck_interval": c.recheck_interval,
        "breakers": [[b.threshold, b.first_delay, b.max_delay] for b in c.breakers],
        "stores": [store(s.store) for s in c.states],
    }

ini = sys.argv[1]
app_chain = get_chain(get_app(ini).registry)
env = load_environment(ini)
print(json.dumps({"app": chain(app_chain), "script": chain(env.chain)}))
"""


def test_the_app_and_the_scripts_build_the_same_stores_from_one_ini(
    tmp_path, postgres_url, redis_prefix
):
    ini = write_ini(
        tmp_path,
        postgres_url,
        redis_prefix=redis_prefix,
        backends="sql redis memory",
        **{
            "session.cache": "redis",
            "session.store_timeout": "0.7",
            "session.breaker_threshold": "3",
            "session.breaker_cooldown": "0.5",
            "session.recheck_interval": "7",
            "session.runtime_failover": "true",
            "session.memory_max_entries": "123",
        },
    )
    result = subprocess.run(
        [sys.executable, "-c", DESCRIBE, str(ini)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    built = json.loads(result.stdout)
    assert built["script"] == built["app"]
    app = built["app"]
    assert app["names"] == ["sql", "redis", "memory"]
    assert app["breakers"] == [[3, 0.5, 7.0]] * 3
    sql = app["stores"][0]
    assert sql["class"] == "CachedStore"  # the read cache, in the scripts too
    assert sql["cache"] == {
        "prefix": redis_prefix + "cache:",
        "ttl": 600,
        "first_delay": 0.5,
        "max_delay": 7.0,
    }
    assert sql["primary"]["timeout"] == 0.7
    assert app["stores"][2]["max_entries"] == 123
