"""What ``make run`` leaves on disk: its SQLite file is readable by its owner only."""

from __future__ import annotations

import os
import stat

from tests.support.databases import migrate


def test_the_development_database_file_is_created_private(tmp_path):
    path = tmp_path / "myapp.sqlite"
    previous = os.umask(0o022)  # the usual umask: SQLite alone would make it 0644
    try:
        migrate(f"sqlite:///{path}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # An existing file is used as it is, and the database works.
    migrate(f"sqlite:///{path}")
    assert path.stat().st_size > 0
