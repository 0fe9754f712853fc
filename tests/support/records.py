"""Record authenticators for tests that build stores by hand, under the suite's secret."""

from __future__ import annotations

from myapp.sessions.stores.authenticator import RecordAuthenticator
from tests.conftest import SECRET


def authenticator(purpose: str, secret: str = SECRET) -> RecordAuthenticator:
    """The authenticator an app built from the suite's settings uses for ``purpose``
    (``sql``, ``redis`` or ``cache``)."""
    return RecordAuthenticator((secret.encode("utf-8"),), purpose)
