"""The metadata the site's tables belong to (Alembic reads it too)."""

from sqlalchemy import MetaData

from myapp.sessions.stores.sqlstore.table import NAMING_CONVENTION

# The same constraint names as the session table's, so migrations read alike.
metadata = MetaData(naming_convention=NAMING_CONVENTION)
