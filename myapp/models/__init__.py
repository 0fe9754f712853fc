"""The site's tables. The database wiring (engine, ``request.dbsession``, the
transaction manager) comes from ``myapp.sessions.database``."""

from .meta import metadata
from .orders import order_lines, orders
from .signin_throttle import signin_throttle
from .users import users

__all__ = ["metadata", "order_lines", "orders", "signin_throttle", "users"]
