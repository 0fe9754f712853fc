"""The one mapping from backend names (``session.stores``) to the stores they build."""

from __future__ import annotations

#: name -> "module:builder"; each builder is ``(options, registry) -> SessionStore`` and
#: is imported only when its backend is configured (an unused driver is never loaded).
BUILDERS = {
    "sql": "myapp.sessions.stores.sqlstore:build",
    "redis": "myapp.sessions.stores.redisstore:build",
    "memory": "myapp.sessions.stores.memorystore:build",
}
BACKEND_NAMES: tuple[str, ...] = tuple(BUILDERS)
