"""The request's transaction under pyramid_tm: a manager that begins it at its first use
(``tm.manager_hook``), the commit veto (``tm.commit_veto``: a server error keeps nothing,
as a raised exception keeps nothing), and which HTTP methods are expected to change state.

pyramid_tm begins and commits a transaction around every request. For a request
that never touches a resource (a page that reads neither the session nor the
database, a health check) that is pure overhead: building the ``Transaction``, its
weak dictionaries and logger, then a two-phase commit of nothing, about 10 us of
CPU per request. Here ``begin`` only records that a transaction was asked for;
the real one starts the moment anyone calls ``get()`` (zope.sqlalchemy joining,
the session factory adding its hooks, ``doom()``, ``savepoint()``...) or touches
the object ``begin`` returned. Committing or aborting one that never started does
nothing, which is exactly what committing an empty transaction does.

``on_commit`` lets a participant that may or may not have work (the session, which
knows only at the end whether it changed) wait for the commit without starting the
transaction: it starts it (``get()``) only if it has something to write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from transaction import TransactionManager
from transaction.interfaces import AlreadyInTransaction
from transaction.weakset import WeakSet

log = logging.getLogger(__name__)

#: The methods that only read (RFC 9110, section 9.2.1), as Pyramid's CSRF check counts
#: them (``safe_methods``): a request with one of them is never expected to change state.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def expects_writes(method: str) -> bool:
    """Whether a request with this HTTP method is expected to change state."""
    return method.upper() not in SAFE_METHODS


def server_error_veto(request: Request, response: Response) -> bool:
    """Abort the request's transaction (the session change and the view's own data) when
    the response is a 5xx, or when an exception view rendered it (what pyramid_tm does
    by itself only while no veto is configured)."""
    return response.status_int >= 500 or getattr(request, "exc_info", None) is not None


class PendingTransaction:
    """What ``begin()`` returns: keeps notes and the user for the real transaction,
    and hands every other use over to it (starting it)."""

    def __init__(self, manager: LazyTransactionManager) -> None:
        self.__dict__["_manager"] = manager
        self.__dict__["_notes"] = []
        self.__dict__["_attributes"] = {}

    def note(self, text: str) -> None:
        if self._manager.pending is self:
            self._notes.append(text)
        else:
            self._manager.get().note(text)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._manager.pending is self:
            self._attributes[name] = value  # ``user``, ``description``
        else:
            setattr(self._manager.get(), name, value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # protocol lookups (copy, pickle...) start nothing
            raise AttributeError(name)
        if self._manager.pending is self and name in self._attributes:
            return self._attributes[name]
        return getattr(self._manager.get(), name)

    def start(self, txn: Any) -> None:
        for name, value in self._attributes.items():
            setattr(txn, name, value)
        for text in self._notes:
            txn.note(text)


class LazyTransactionManager(TransactionManager):
    """An explicit ``TransactionManager`` whose ``begin`` waits for the first use."""

    def __init__(self) -> None:
        # Not the base __init__: its WeakSet of synchronizers is made on first use.
        self.explicit = True
        self._txn: Any = None
        self.pending: PendingTransaction | None = None
        self._before_commit: list[Callable[[], None]] = []
        self._after_commit: list[Callable[[bool], None]] = []

    @property
    def _synchs(self) -> WeakSet:
        synchs = self.__dict__.get("_synchs_set")
        if synchs is None:
            synchs = self.__dict__["_synchs_set"] = WeakSet()
        return synchs

    def begin(self) -> Any:
        if self._txn is not None or self.pending is not None:
            raise AlreadyInTransaction()
        if self.__dict__.get("_synchs_set"):  # synchronizers expect to hear of every one
            return super().begin()
        self.pending = PendingTransaction(self)
        return self.pending

    def get(self) -> Any:
        pending = self.pending
        if pending is not None:
            self.pending = None
            txn = super().begin()
            pending.start(txn)
            return txn
        return super().get()

    def started(self) -> bool:
        """Whether a real transaction is running (False while one is only pending)."""
        return self._txn is not None

    def on_commit(self, before: Callable[[], None], after: Callable[[bool], None]) -> None:
        """Call ``before()`` first thing when this transaction commits, and
        ``after(success)`` once it has; neither if it aborts. Registering does not
        start the transaction (a hook on the transaction itself would)."""
        self._before_commit.append(before)
        self._after_commit.append(after)

    def commit(self) -> None:
        before, self._before_commit = self._before_commit, []
        after, self._after_commit = self._after_commit, []
        for fn in before:
            fn()  # may start the transaction; an exception stops the commit
        try:
            if self.pending is not None:
                self.pending = None  # nothing joined it: there is nothing to commit
            else:
                super().commit()
        except BaseException:
            _call_after(after, False)
            raise
        _call_after(after, True)

    def abort(self) -> None:
        self._before_commit, self._after_commit = [], []
        if self.pending is not None:
            self.pending = None
            return
        super().abort()

    def isDoomed(self) -> bool:
        if self.pending is not None:
            return False
        return super().isDoomed()

    def registerSynch(self, synch: Any) -> None:
        if self.pending is not None:
            self.get()  # the synchronizer hears of the transaction it joins
        super().registerSynch(synch)


def _call_after(callbacks: list[Callable[[bool], None]], success: bool) -> None:
    for fn in callbacks:
        try:
            fn(success)
        except Exception:  # as the transaction package does with after-commit hooks
            log.exception("an after-commit callback failed")


def lazy_manager(request: Request) -> LazyTransactionManager:
    """pyramid_tm's ``tm.manager_hook``: one lazy explicit manager per request."""
    return LazyTransactionManager()
