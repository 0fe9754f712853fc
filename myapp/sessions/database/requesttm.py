"""The request's transaction under pyramid_tm and its database session: a manager that
begins it at its first use (``tm.manager_hook``), ``request.dbsession`` joined to it, the
commit veto (``tm.commit_veto``: a server error keeps nothing, as a raised exception keeps
nothing), and which HTTP methods are expected to change state.

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

import zope.sqlalchemy.datamanager
from pyramid.request import Request
from pyramid.response import Response
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import sessionmaker
from transaction import TransactionManager
from transaction.interfaces import AlreadyInTransaction, ITransactionManager, NoTransaction
from zope.interface import implementer

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


_ZOPE_EVENTS = "myapp.zope_events"
_ZOPE_HOOKS = (
    "after_begin",
    "after_attach",
    "after_flush",
    "after_bulk_update",
    "after_bulk_delete",
    "before_commit",
    "do_orm_execute",
)


def get_dbsession_factory(engine: Engine) -> sessionmaker[DBSession]:
    """The sessionmaker of ``request.dbsession``, with zope.sqlalchemy's listeners.

    ``zope.sqlalchemy.register(dbsession, transaction_manager=request.tm)`` would do
    the same per database session, since each request has its own manager; but
    SQLAlchemy then builds the session's own event dispatch every time. Measured with
    ``bench.instructions`` (500 requests, a view that uses ``request.dbsession``:
    ``naive-db``, write): 2,130,493 instructions per request wired here, 2,613,040
    through ``register`` (+23%). Views that never make a ``request.dbsession`` (the
    session store's own reads and writes) cost the same either way. So the same
    listeners are registered once, on the sessionmaker, and find the session's own
    transaction manager in its ``info``.
    """
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    for hook in _ZOPE_HOOKS:
        event.listen(factory, hook, _zope_listener(hook))
    return factory


def _zope_listener(hook: str) -> Any:
    def listener(target: Any, *args: Any) -> None:
        session = getattr(target, "session", target)  # bulk and execute contexts
        events = session.info.get(_ZOPE_EVENTS)
        if events is not None:
            getattr(events, hook)(target, *args)

    return listener


def get_tm_dbsession(
    dbsession_factory: sessionmaker[DBSession],
    transaction_manager: TransactionManager | LazyTransactionManager,
) -> DBSession:
    """A database session that commits or aborts with ``transaction_manager``."""
    dbsession = dbsession_factory()
    dbsession.info[_ZOPE_EVENTS] = zope.sqlalchemy.datamanager.ZopeTransactionEvents(
        transaction_manager=transaction_manager
    )
    return dbsession


def request_dbsession(dbsession_factory: sessionmaker[DBSession], request: Request) -> DBSession:
    """``request.dbsession`` (reified): a database session in the request's transaction.

    Tests may hand in their own database session through the environ."""
    existing = request.environ.get("app.dbsession")
    if existing is not None:
        return existing
    return get_tm_dbsession(dbsession_factory, request.tm)


def existing_dbsession(request: Request) -> DBSession | None:
    """``request.dbsession`` if the request has one already; never creates it."""
    dbsession = request.__dict__.get("dbsession")  # where reify keeps it
    return dbsession if dbsession is not None else request.environ.get("app.dbsession")


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


@implementer(ITransactionManager)
class LazyTransactionManager:
    """An explicit transaction manager whose ``begin`` waits for the first use.

    Built on the transaction package's public API: it delegates to a real explicit
    ``TransactionManager``, made when a transaction first starts (with its weak set of
    synchronizers), so a request that uses none builds neither.
    """

    explicit = True

    def __init__(self) -> None:
        self._manager: TransactionManager | None = None
        self.pending: PendingTransaction | None = None
        self._before_commit: list[Callable[[], None]] = []
        self._after_commit: list[Callable[[bool], None]] = []

    @property
    def manager(self) -> TransactionManager:
        """The real manager, made at its first use."""
        if self._manager is None:
            self._manager = TransactionManager(explicit=True)
        return self._manager

    def begin(self) -> Any:
        if self.pending is not None or self.started():
            raise AlreadyInTransaction()
        if self._manager is not None and self._manager.registeredSynchs():
            return self._manager.begin()  # synchronizers expect to hear of every one
        self.pending = PendingTransaction(self)
        return self.pending

    def get(self) -> Any:
        pending = self.pending
        if pending is not None:
            self.pending = None
            txn = self.manager.begin()
            pending.start(txn)
            return txn
        return self.manager.get()

    def started(self) -> bool:
        """Whether a real transaction is running (False while one is only pending)."""
        if self._manager is None or self.pending is not None:
            return False
        try:
            self._manager.get()
        except NoTransaction:
            return False
        return True

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
                self.manager.commit()
        except BaseException:
            _call_after(after, False)
            raise
        _call_after(after, True)

    def abort(self) -> None:
        self._before_commit, self._after_commit = [], []
        if self.pending is not None:
            self.pending = None
            return
        self.manager.abort()

    def doom(self) -> None:
        self.get().doom()

    def isDoomed(self) -> bool:
        if self.pending is not None:
            return False
        return self.manager.isDoomed()

    def savepoint(self, optimistic: bool = False) -> Any:
        return self.get().savepoint(optimistic)

    def registerSynch(self, synch: Any) -> None:
        if self.pending is not None:
            self.get()  # the synchronizer hears of the transaction it joins
        self.manager.registerSynch(synch)

    def unregisterSynch(self, synch: Any) -> None:
        self.manager.unregisterSynch(synch)

    def clearSynchs(self) -> None:
        if self._manager is not None:
            self._manager.clearSynchs()

    def registeredSynchs(self) -> bool:
        return self._manager is not None and self._manager.registeredSynchs()

    def attempts(self, number: int = 3) -> Any:
        return self.manager.attempts(number)

    def run(self, func: Callable[..., Any] | None = None, tries: int = 3) -> Any:
        return self.manager.run(func, tries)

    def __enter__(self) -> Any:
        return self.begin()

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if exc_value is None:
            self.commit()
        else:
            self.abort()


def _call_after(callbacks: list[Callable[[bool], None]], success: bool) -> None:
    for fn in callbacks:
        try:
            fn(success)
        except Exception:  # as the transaction package does with after-commit hooks
            log.exception("an after-commit callback failed")


def lazy_manager(request: Request) -> LazyTransactionManager:
    """pyramid_tm's ``tm.manager_hook``: one lazy explicit manager per request."""
    return LazyTransactionManager()
