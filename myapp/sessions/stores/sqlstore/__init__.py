"""The ``sql`` store: the ``user_sessions`` table, through SQLAlchemy Core.

Three modules on a request's road: ``store`` (the store, the SQL of each operation, rows
as records), ``transaction`` (the store as one request uses it, and its session
transaction: a state-changing request's one database transaction, in one psycopg
pipeline) and ``connection`` (deadlines and their watchdog thread, errors, connections
held between statements, statements on psycopg's cursor). Beside them: ``statements``
(built once per dialect) and ``table`` (the table and its start-up check).
"""

from .store import SqlStore, build
from .transaction import RequestSqlStore

__all__ = ["RequestSqlStore", "SqlStore", "build"]
