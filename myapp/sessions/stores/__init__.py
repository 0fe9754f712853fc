"""The session stores, and the one mapping from backend names to them."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyramid.registry import Registry

    from ..options import SessionOptions
    from .base import SessionStore

# name -> "module:builder"; each builder is ``(options, registry) -> SessionStore``.
_BUILDERS = {
    "sql": "myapp.sessions.stores.sqlstore:build",
    "redis": "myapp.sessions.stores.redisstore:build",
    "memory": "myapp.sessions.stores.memorystore:build",
}
BACKEND_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_store(name: str, options: SessionOptions, registry: Registry) -> SessionStore:
    """Build the store called ``name`` (imported lazily: an unused driver is never loaded)."""
    module_name, _, attr = _BUILDERS[name].partition(":")
    builder = getattr(import_module(module_name), attr)
    return builder(options, registry)
