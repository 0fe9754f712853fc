"""The contracts of the session package, each stated once (as Pyramid's ``interfaces``).

A store (:class:`ISessionStore`) is a handful of I/O methods on
:class:`~myapp.sessions.stores.base.SessionRecord` values; everything shared (expiry,
ids, dirty tracking, cookies) lives above it. A request uses a store through its
request-bound form (:class:`IRequestBoundStore`), which every store provides: stores
that keep no request state are their own bound form.

What only some stores can do is an interface of its own (:class:`IUserSessions`,
:class:`IPurgeable`, :class:`IStoreStatistics`, :class:`IReadCache`,
:class:`IUserSessionsTable`), declared with ``@implementer`` by the stores that have it
and asked for with ``providedBy``: never by a store's name or type.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ISessionStore(Interface):
    """Where session records live: the core every store keeps. Stores do I/O only;
    expiry rules live above them.

    Every method may raise :class:`~myapp.sessions.exceptions.StoreError` when the
    store fails. Times are seconds since the epoch (UTC). A record is *live* at ``now``
    while ``now < record.expires``; a store never returns, revives or counts as live a
    record that is not.
    """

    name = Attribute("The backend name used in ``session.backends`` (``sql``, ``redis``...).")
    shared = Attribute("True when every process of the site sees the same records.")

    def check() -> None:
        """Prove the store can serve now, or raise ``StoreNotReady`` (with its fix)."""

    def load(key: str, now: float):
        """The live record stored under ``key``, or None (missing or expired at ``now``)."""

    def save(record, expected_version: int | None) -> int:
        """Store ``record``; return its new version.

        ``expected_version`` None inserts a new session (refused with ``StaleSession``,
        ``gone=False``, when the key exists). Otherwise the stored version must still
        equal it and the session must still be live, or ``StaleSession`` is raised
        and nothing is written: ``gone=True`` when the session is no longer stored or no
        longer live (ended, expired: the caller starts afresh), ``gone=False`` when it is
        stored and live but another write changed it since it was read.
        """

    def touch(record, last_active: float, expires: float, now: float) -> bool:
        """Move a live session's expiry forward; False (nothing written) when it has
        already ended, so a late touch never revives a session.

        ``record`` is the session as it was loaded: a store that authenticates its
        records re-signs it with the new times, and writes only while the stored
        version is still ``record.version`` (a newer save moved the expiry already:
        nothing written, True)."""

    def delete(key: str) -> None:
        """Forget one session (no error when it is already gone)."""

    def close() -> None:
        """Release connections; the store is not used afterwards."""

    def bind(request) -> IRequestBoundStore:
        """This store as ``request`` uses it (:class:`IRequestBoundStore`).

        The same object for every call in one request, since it may hold that
        request's state; a store with no request state returns itself.
        """


class IRequestBoundStore(ISessionStore):
    """A store bound to one request: its I/O joins the request's transactions.

    The SQL store runs its statements in the request's database transaction when the
    view opened one, else in a session transaction of its own (a state-changing
    request on PostgreSQL), else one autocommit statement each. Other stores write
    nothing in a transaction of their own: the session factory queues their writes
    until the request's transaction votes.
    """

    answered_from_cache = Attribute(
        "True when the last ``load`` needed no call to the store's server (a read "
        "cache answered): it says nothing about the server's health."
    )

    def in_request_transaction() -> bool:
        """Whether writes go straight into the request's open database transaction;
        if not, the factory queues them until the request's transaction votes."""

    def session_transaction():
        """The request's open session transaction that queued writes run in (an
        ``IDataManager`` with ``commit_with_next_statement``, ``commit_now`` and
        ``committed``), or None."""

    def abandon() -> None:
        """Roll back the request's database work now: a save that failed while the
        request's transaction was committing must not keep its row locks."""


class IUserSessions(Interface):
    """A store that knows which sessions belong to a user (``record.user_id``)."""

    def delete_user(user_id: str, *, except_key: str | None = None) -> int:
        """End every session of ``user_id`` (but ``except_key``); return how many."""

    def list_user(user_id: str, now: float) -> list:
        """The live sessions of ``user_id``, oldest first."""


class IPurgeable(Interface):
    """A store whose expired records stay until they are purged. A store that does not
    provide it expires its records by itself (Redis): there is nothing to purge."""

    def purge_expired(now: float, batch_size: int) -> int:
        """Delete up to ``batch_size`` sessions expired at ``now``; return how many went
        (0 once none is left). Each call is short: callers repeat it."""


class IStoreStatistics(Interface):
    """Counts for operators (``myapp-sessions stats``), never used on the hot path."""

    def count(now: float) -> tuple[int, int]:
        """How many sessions are (live, expired)."""

    def top_users(now: float, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` (user id, live sessions) pairs, most first, then by user id."""


class IReadCache(Interface):
    """A store with a read cache in front of its server (``session.cache``): it can
    answer some reads while the server is down, and takes part in moving sessions
    between stores after a switch.

    Without it, the chain uses the core: nothing offline, ``save(record, None)`` to
    adopt, ``delete(record.key)`` to release, no extra health.
    """

    def load_offline(key: str, now: float):
        """What the store can answer while its server is down (the cache's copy), or None."""

    def adopt(record) -> int:
        """Store a session read through from another store (after a switch of stores)."""

    def release(record) -> None:
        """The session now lives in another store (or ended there): forget it here."""

    def health() -> dict:
        """The cache's state for ``/healthz`` (its breaker); read from memory, no I/O."""


class IUserSessionsTable(Interface):
    """A store whose records are the ``user_sessions`` rows of the site's database
    (``sqlalchemy.url``): purges of it take the fleet-wide advisory lock in that
    database, operators see the table's health, and rows stored before rows carried an
    authenticator can be signed."""

    def sign_unsigned(now: float, batch_size: int) -> int:
        """Sign the live rows stored without an authenticator, ``batch_size`` per
        transaction; return how many were signed."""


class INewSessionAdmission(Interface):
    """An app's say on storing a new session without a user (a utility; optional).

    Called in the request's transaction, just before such a session would first be
    stored. Returning admits it; raising refuses it: nothing is stored, the request's
    transaction is aborted, and the exception reaches the app's exception views (so
    the app chooses the answer, e.g. a 429).
    """

    def __call__(request):
        """Admit the new anonymous session of ``request``, or raise."""
