"""The cookie secrets and the operator token: present, long, and hard to guess.

Hard to guess as zxcvbn (Dropbox's strength estimator, the Python port) judges it:
it finds sequences (``abcdef…``, ``0123…``), repeats, keyboard walks (``qwerty``,
``1qaz2wsx``), dictionary words and dates, and estimates the guesses an attacker needs.
A secret needs at least 10**MIN_SECRET_GUESSES_LOG10 (about 66 bits): 2,000 draws each
of ``secrets.token_hex(16)`` and ``token_urlsafe(24)`` scored 10**27.8 and more. And a
secret that is a near-copy of the committed development secret is refused like it.
"""

from __future__ import annotations

import difflib
import functools
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pyramid.exceptions import ConfigurationError
from pyramid.settings import aslist
from zxcvbn import zxcvbn

if TYPE_CHECKING:
    from .reader import SettingsReader

MIN_SECRET_LENGTH = 32
MIN_SECRET_GUESSES_LOG10 = 20
#: zxcvbn refuses longer input; a secret whose first 72 characters are strong is strong.
ESTIMATED_LENGTH = 72
#: difflib's similarity ratio from which a secret counts as a copy of the development one.
NEAR_COPY_RATIO = 0.8
# zxcvbn keeps the user_inputs dictionary in a module global: one estimate at a time.
_ESTIMATOR_LOCK = threading.Lock()
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
        if secret != DEVELOPMENT_SECRET and near_development_secret(secret):
            raise ConfigurationError(
                f"{source}: a secret is a near-copy of the development secret committed in "
                f"development.ini; {GENERATE_HINT}"
            )
        if secret != DEVELOPMENT_SECRET and not looks_random(secret):
            raise ConfigurationError(
                f"{source}: a secret has too little entropy (it is easy to guess: "
                f"{weakness(secret)}); {GENERATE_HINT}"
            )
    return secrets


def near_development_secret(secret: str) -> bool:
    """Whether ``secret`` is the development secret with a few characters changed."""
    ratio = difflib.SequenceMatcher(None, secret.lower(), DEVELOPMENT_SECRET.lower()).ratio()
    return ratio >= NEAR_COPY_RATIO


@functools.lru_cache(maxsize=64)  # apps (and tests) are built with the same secrets
def _estimate(secret: str) -> dict:
    with _ESTIMATOR_LOCK:
        return zxcvbn(secret[:ESTIMATED_LENGTH], user_inputs=["myapp", "session", "secret"])


def looks_random(secret: str) -> bool:
    """Whether zxcvbn estimates ``secret`` needs at least 10**MIN_SECRET_GUESSES_LOG10 guesses."""
    return _estimate(secret)["guesses_log10"] >= MIN_SECRET_GUESSES_LOG10


def weakness(secret: str) -> str:
    """What zxcvbn found in ``secret``, without repeating it (for error messages)."""
    result = _estimate(secret)
    patterns = sorted({m["pattern"] for m in result["sequence"] if m["pattern"] != "bruteforce"})
    found = ", ".join(patterns) or "too short a random part"
    return f"{found}; about 10^{result['guesses_log10']:.0f} guesses"


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
