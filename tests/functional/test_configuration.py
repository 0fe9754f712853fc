"""The shipped ini files and the Alembic migrations, as an operator uses them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from plaster import get_settings
from pyramid.exceptions import ConfigurationError

from myapp.sessions.options import SessionOptions
from myapp.sessions.stores.sqlstore.table import USER_SESSIONS_REVISION
from tests.support.databases import REPO, alembic_config, create_database, drop_database, pg_url

pytestmark = pytest.mark.postgres

PRODUCTION_SECRET = "Zt4Qm8Rw1Xp6Lk3Vb9Nc2Hd7Jf5Gs0Ya8Ue4Io"


@pytest.fixture
def empty_database():
    name = create_database("myapp_migrate")
    yield pg_url(name)
    drop_database(name)


def test_production_ini_refuses_to_start_without_the_secret():
    settings = get_settings(str(REPO / "production.ini"), "app:main")
    with pytest.raises(ConfigurationError, match="MYAPP_SESSION_SECRET is not set"):
        SessionOptions.from_settings(settings, environ={})


def test_production_ini_cookie_flags():
    settings = get_settings(str(REPO / "production.ini"), "app:main")
    options = SessionOptions.from_settings(
        settings, environ={"MYAPP_SESSION_SECRET": PRODUCTION_SECRET}
    )
    assert options.cookie_secure is True
    assert options.cookie_samesite == "Lax"
    assert options.backends == ("sql", "redis", "memory")


def test_no_secret_is_committed_in_production_ini():
    text = (REPO / "production.ini").read_text()
    assert "session.secret =" not in text
    assert "session.secret_env = MYAPP_SESSION_SECRET" in text


def test_the_code_knows_a_revision_the_migrations_have():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_revision(USER_SESSIONS_REVISION) is not None


def test_upgrade_and_downgrade(empty_database):
    config = alembic_config(empty_database)
    engine = sa.create_engine(empty_database)
    command.upgrade(config, "head")
    with engine.connect() as conn:
        assert "user_sessions" in sa.inspect(conn).get_table_names()
    command.downgrade(config, "base")
    with engine.connect() as conn:
        assert "user_sessions" not in sa.inspect(conn).get_table_names()
    command.upgrade(config, "head")
    with engine.connect() as conn:
        assert "user_sessions" in sa.inspect(conn).get_table_names()
    engine.dispose()


def test_alembic_command_line_reads_the_ini(tmp_path):
    """`alembic -c development.ini upgrade head` as a newcomer runs it (on a copy)."""
    ini = tmp_path / "development.ini"
    text = (REPO / "development.ini").read_text()
    text = text.replace("%(here)s/migrations", str(REPO / "migrations"))
    ini.write_text(text)
    result = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "alembic"),
            "-c",
            str(ini),
            "upgrade",
            "head",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'myapp.sqlite'}")
    with engine.connect() as conn:
        assert "user_sessions" in sa.inspect(conn).get_table_names()
    engine.dispose()


def test_production_ini_refuses_the_development_secret():
    settings = get_settings(str(REPO / "production.ini"), "app:main")
    development = get_settings(str(REPO / "development.ini"), "app:main")["session.secret"]
    with pytest.raises(ConfigurationError, match="MYAPP_SESSION_SECRET.*development secret"):
        SessionOptions.from_settings(settings, environ={"MYAPP_SESSION_SECRET": development})
    with pytest.raises(ConfigurationError, match="MYAPP_SESSION_SECRET.*too little entropy"):
        SessionOptions.from_settings(settings, environ={"MYAPP_SESSION_SECRET": "a" * 32})
