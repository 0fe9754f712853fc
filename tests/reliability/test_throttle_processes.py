"""Sign-in throttling holds across app processes: both count into one shared store."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.rediskeys import unique_prefix
from tests.support.site import new_user

from .apps import AppProcess, Client, app_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(params=["sql", "redis"])
def two_apps(request, postgres_url: str, tmp_path: Path) -> Iterator[list[AppProcess]]:
    with unique_prefix("myapp-throttle") as prefix:
        settings = app_settings(
            **{
                "sqlalchemy.url": postgres_url,
                "session.backends": request.param,
                "session.redis_prefix": prefix,
                "signin.account_free_failures": "3",
                "signin.first_delay": "60",
            }
        )
        apps = [AppProcess(settings, tmp_path, threads=2).start() for _ in range(2)]
        try:
            for app in apps:
                app.wait_ready()
            yield apps
        finally:
            for app in apps:
                app.stop()


def sign_in(app: AppProcess, name: str, password: str) -> tuple[int, str, str | None]:
    """A fresh browser posts the sign-in form: (status, page, Retry-After)."""
    client = Client(app.url)
    form = client.request("/signin")
    token = TOKEN.search(form.body).group(1)
    body = urllib.parse.urlencode({"csrf_token": token, "username": name, "password": password})
    req = urllib.request.Request(app.url + "/signin", data=body.encode(), method="POST")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(client.jar), NoRedirect)
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.read().decode(), resp.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers.get("Retry-After")


def test_two_processes_share_the_limit(two_apps, postgres_url):
    engine = sa.create_engine(postgres_url)
    try:
        name, password = new_user(engine, "shared-limit")
    finally:
        engine.dispose()
    first, second = two_apps
    # Two failures in each process: three are free, the fourth begins a block. Counted
    # per process, neither would have reached it.
    for app in (first, second, first, second):
        status, _, _ = sign_in(app, name, "wrong-password")
        assert status == 303
    for app in (first, second):
        status, page, retry_after = sign_in(app, name, password)
        assert status == 429, page[:300]
        assert 50 <= int(retry_after) <= 60
        assert "Too many failed sign-ins" in page
