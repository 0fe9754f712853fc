"""The session a view sees: a dict of JSON values plus Pyramid's ISession API. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pyramid.interfaces import ISession
from zope.interface import implementer

from .serializer import check_value

_MISSING = object()
#: The keys of flash message queues start with it (Pyramid's own sessions name them so).
FLASH_PREFIX = "_f_"


@implementer(ISession)
class Session(dict):
    """A dict whose values are checked the moment they are set.

    ``new`` is true until the session has been stored once; ``created`` is the
    epoch second it began. What happens at the end of the request (store, touch,
    delete, cookie) is decided by the factory from the flags kept here.
    """

    __slots__ = ("created", "explicitly_changed", "invalidated", "new", "rotated", "user_id")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        created: float,
        new: bool,
        user_id: str | None = None,
    ) -> None:
        super().__init__(data or {})
        self.created = created
        self.new = new
        self.user_id = user_id
        self.explicitly_changed = False
        self.invalidated = False
        self.rotated = False

    # -- ISession ---------------------------------------------------------
    def changed(self) -> None:
        """Mark the session for saving (also detected without this call)."""
        self.explicitly_changed = True

    def invalidate(self) -> None:
        """Empty the session and end it on the server; later writes start a new one."""
        super().clear()
        self.invalidated = True
        self.explicitly_changed = True
        self.user_id = None

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        storage = self.setdefault(FLASH_PREFIX + queue, [])
        check_value(FLASH_PREFIX + queue, msg)
        if allow_duplicate or msg not in storage:
            storage.append(msg)
            self.explicitly_changed = True

    def pop_flash(self, queue: str = "") -> list[Any]:
        messages = super().pop(FLASH_PREFIX + queue, [])
        if messages:
            self.explicitly_changed = True
        return messages

    def peek_flash(self, queue: str = "") -> list[Any]:
        return list(self.get(FLASH_PREFIX + queue, []))

    # -- beyond ISession --------------------------------------------------
    def rotate(self) -> None:
        """Give the session a new id, keeping its data: call it on sign-in (fixation)."""
        self.rotated = True
        self.explicitly_changed = True

    def set_user(self, user_id: str | None) -> None:
        """Tie the session to a user (so all of a user's sessions can be ended), and rotate."""
        self.user_id = None if user_id is None else str(user_id)
        self.rotate()

    # -- dict methods that set values check them first ----------------------
    def __setitem__(self, key: str, value: Any) -> None:
        check_value(key, value)
        super().__setitem__(key, value)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            check_value(key, default)
        return super().setdefault(key, default)

    def update(self, other: Iterable[Any] | Mapping[str, Any] = (), /, **kwargs: Any) -> None:
        pending = dict(other, **kwargs)
        for key, value in pending.items():
            check_value(key, value)
        super().update(pending)

    def __repr__(self) -> str:
        # Never print session contents (they end up in logs and tracebacks).
        return f"<Session keys={sorted(self)!r} new={self.new}>"

    __hash__ = None  # type: ignore[assignment]

    # A session is not copyable into a plain value by accident.
    def copy(self) -> dict[str, Any]:
        return dict(self)

    def __reduce__(self):  # pragma: no cover - sessions are never pickled
        raise TypeError("sessions are stored as JSON, never pickled")
