"""Record authenticators for tests that build stores by hand, under the suite's secret."""

from __future__ import annotations

import sqlalchemy as sa

from myapp.sessions.stores.authenticator import RecordAuthenticator
from myapp.sessions.stores.sqlstore import SqlStore
from myapp.sessions.stores.sqlstore.store import row_mac, unverified_record
from myapp.sessions.stores.sqlstore.table import user_sessions
from tests.conftest import SECRET


def authenticator(purpose: str, secret: str = SECRET) -> RecordAuthenticator:
    """The authenticator an app built from the suite's settings uses for ``purpose``
    (``sql``, ``redis`` or ``cache``)."""
    return RecordAuthenticator((secret.encode("utf-8"),), purpose)


def sign_stored_row(store: SqlStore, key: str) -> None:
    """Sign one row an older release stored without an authenticator, as
    ``myapp-sessions sign-unsigned`` does for every live row at an upgrade."""
    columns = store.statements.record_columns
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(*columns).where(user_sessions.c.id == key)).one()
        record, _ = unverified_record(row)
        mac = row_mac(store.authenticator, record, record.version, store.statements)
        conn.execute(sa.update(user_sessions).where(user_sessions.c.id == key).values(mac=mac))
