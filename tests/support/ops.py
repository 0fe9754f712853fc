"""Running the console scripts as an operator would: an ini file in a temp dir, a subprocess."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from myapp.sessions.operations.purge import Purger, StorePurge
from myapp.sessions.request.factory import new_token, storage_key
from myapp.sessions.stores.base import SessionRecord, SessionStore
from myapp.sessions.stores.sqlstore.table import EXPIRY_BUCKET_SECONDS
from tests.conftest import REDIS_URL, SECRET
from tests.support.databases import REPO

BIN = Path(sys.executable).parent
SCRIPT_TIMEOUT = 60

INI_TEMPLATE = """\
[app:main]
use = egg:myapp
sqlalchemy.url = {url}
session.backends = {backends}
session.secret = {secret}
session.redis_url = {redis_url}
session.redis_prefix = {redis_prefix}
session.check_timeout = 2
{extra}

[alembic]
script_location = {migrations}
version_locations = {migrations}/versions myapp.sessions:migrations
path_separator = space

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)s [%(name)s] %(message)s
"""


def write_ini(
    directory: Path,
    url: str,
    *,
    redis_prefix: str,
    backends: str = "sql redis memory",
    secret: str = SECRET,
    name: str = "ops.ini",
    **extra: object,
) -> Path:
    path = directory / name
    path.write_text(
        INI_TEMPLATE.format(
            url=url.replace("%", "%%"),
            backends=backends,
            secret=secret,
            redis_url=REDIS_URL,
            redis_prefix=redis_prefix,
            migrations=REPO / "migrations",
            extra="\n".join(f"{key} = {value}" for key, value in extra.items()),
        )
    )
    return path


def run(script: str, *args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a console script from the venv, as an operator's shell would."""
    return subprocess.run(
        [str(BIN / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
        **kwargs,
    )


def add_session(store: SessionStore, *, user_id: str | None = None, expired: bool = False) -> str:
    """Store one session directly; returns its storage key."""
    now = time.time()
    # An expired one lies in an expiry bucket that has ended: the purge's to delete.
    expires = now - EXPIRY_BUCKET_SECONDS - 60 if expired else now + 3600
    record = SessionRecord(
        key=storage_key(new_token()),
        data="{}",
        created=now - 7200,
        last_active=expires - 3600,
        expires=expires,
        user_id=user_id,
        user_agent="test",
    )
    store.save(record, None)
    return record.key


def purge_while_another_purges(store: SessionStore, engine) -> tuple[StorePurge, StorePurge]:
    """(first, second): a second purge started while a first one is inside its lock."""
    inside, release = threading.Event(), threading.Event()

    def hold_inside_the_lock(result: StorePurge) -> None:
        inside.set()
        release.wait(10)

    first = Purger([store], batch_size=10, lock_engine=engine)
    outcome: list[StorePurge] = []
    thread = threading.Thread(
        target=lambda: outcome.extend(first.run(on_batch=hold_inside_the_lock))
    )
    thread.start()
    try:
        assert inside.wait(10), "the first purge never got inside its lock"
        (second,) = Purger([store], batch_size=10, lock_engine=engine).run()
    finally:
        release.set()
        thread.join(10)
    return outcome[0], second
