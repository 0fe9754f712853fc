"""What the operator scripts need from an ini file: settings, the engine and the store chain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyramid.paster import get_appsettings, setup_logging
from pyramid.registry import Registry
from sqlalchemy.engine import Engine

from myapp.sessions.assemble import build_store_chain
from myapp.sessions.chain import StoreChain
from myapp.sessions.database import register_engine
from myapp.sessions.options import SessionOptions
from myapp.sessions.redact import install_log_redaction


@dataclass
class ScriptEnvironment:
    """Built exactly as the app builds it at start-up, minus the web parts."""

    ini: str
    settings: dict[str, Any]
    options: SessionOptions
    engine: Engine
    chain: StoreChain

    def close(self) -> None:
        self.chain.close()
        self.engine.dispose()


def load_environment(ini: str, *, needs_secret: bool = False) -> ScriptEnvironment:
    """Read ``ini``; raises pyramid's ConfigurationError for a bad setting.

    The cookie secret is read (and checked) only when ``needs_secret``: a tool that
    signs no cookie runs where the secret is not exported (cron, a maintenance shell).
    """
    setup_logging(ini)
    install_log_redaction()
    settings = dict(get_appsettings(ini))
    settings["myapp.config_file"] = ini  # operator messages name this file
    options = SessionOptions.from_settings(settings, signs_cookies=needs_secret)
    registry = Registry("myapp-sessions")
    registry.settings = settings
    engine = register_engine(registry, settings)  # as the app reaches the database
    chain = build_store_chain(options, registry)  # as the app builds it, cache included
    return ScriptEnvironment(ini, settings, options, engine, chain)
