"""The ``sql`` store: the ``user_sessions`` table, through SQLAlchemy Core.

``store`` (the store), ``request`` (its request-bound form), ``operations`` (the I/O
methods, one statement each), ``statements`` (built once per dialect), ``schema`` (the
start-up check), ``guard`` (deadlines, their watchdog thread, errors), ``driver``
(statements on psycopg's cursor), ``held`` (connections kept between statements),
``pipeline`` (the session transaction: a state-changing request's one database
transaction, in one psycopg pipeline).
"""

from .request import RequestSqlStore
from .store import SqlStore, build

__all__ = ["RequestSqlStore", "SqlStore", "build"]
