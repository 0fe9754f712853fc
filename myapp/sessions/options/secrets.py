"""The cookie secrets and the operator token: present, long, and random-looking."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pyramid.exceptions import ConfigurationError
from pyramid.settings import aslist

if TYPE_CHECKING:
    from .reader import SettingsReader

MIN_SECRET_LENGTH = 32
# A secret must look random: its characters, counted in it, carry at least this many bits
# (``secrets.token_hex(16)`` scores about 120, ``token_urlsafe(48)`` about 370, 32 x "a" 0).
MIN_SECRET_BITS = 96
MIN_SECRET_DISTINCT = 10
# Committed in development.ini for ``make run``: public, so refused unless the ini says
# ``session.allow_development_secret = true`` (development.ini alone does).
DEVELOPMENT_SECRET = "development-secret-do-not-use-in-production-0123456789"  # noqa: S105
GENERATE_HINT = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'


def session_secrets(reader: SettingsReader, environ: Mapping[str, str]) -> tuple[str, ...]:
    """``session.secret`` (or the variable ``session.secret_env`` names), newest first;
    each one checked, and the committed development secret refused unless allowed."""
    env_name = reader.text("session.secret_env", None)
    if env_name:
        raw = environ.get(env_name, "")
        if not raw.strip():
            raise ConfigurationError(
                f"session.secret_env: the environment variable {env_name} is not set; "
                "export it with one or more secrets (newest first) before starting"
            )
        source = f"the environment variable {env_name} (session.secret_env)"
    else:
        raw = reader.text("session.secret", "")
        source = "session.secret"
    secrets = tuple(aslist(raw, flatten=True))
    if not secrets:
        raise ConfigurationError(
            "session.secret is required: set it (one or more secrets, newest first) "
            "or point session.secret_env at an environment variable that holds it"
        )
    allow_development = reader.boolean("session.allow_development_secret", False)
    for secret in secrets:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigurationError(
                f"{source}: every secret must be at least {MIN_SECRET_LENGTH} characters long; "
                f"{GENERATE_HINT}"
            )
        if secret == DEVELOPMENT_SECRET and not allow_development:
            raise ConfigurationError(
                f"{source}: this is the development secret committed in development.ini; "
                f"anyone can forge cookies with it. {GENERATE_HINT}"
            )
        if secret != DEVELOPMENT_SECRET and not looks_random(secret):
            raise ConfigurationError(
                f"{source}: a secret has too little entropy (repeated or too few distinct "
                f"characters); {GENERATE_HINT}"
            )
    return secrets


def looks_random(secret: str) -> bool:
    """Whether ``secret``'s own character counts carry at least MIN_SECRET_BITS bits."""
    counts = Counter(secret)
    if len(counts) < MIN_SECRET_DISTINCT:
        return False
    length = len(secret)
    bits = -sum(n * math.log2(n / length) for n in counts.values())
    return bits >= MIN_SECRET_BITS


def operator_token(reader: SettingsReader, environ: Mapping[str, str]) -> str | None:
    """``session.operator_token`` (or the variable ``..._env`` names); None if unset."""
    env_name = reader.text("session.operator_token_env", None)
    if env_name:
        token = environ.get(env_name, "").strip() or None
        source = f"the environment variable {env_name} (session.operator_token_env)"
    else:
        token = reader.text("session.operator_token", None)
        source = "session.operator_token"
    if token is not None and (len(token) < MIN_SECRET_LENGTH or not looks_random(token)):
        raise ConfigurationError(
            f"{source}: the operator token must be at least {MIN_SECRET_LENGTH} random "
            f"characters; {GENERATE_HINT}"
        )
    return token
