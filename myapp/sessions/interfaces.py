"""The contracts of the session package, each stated once (as Pyramid's ``interfaces``).

A store (:class:`ISessionStore`) is a handful of I/O methods on
:class:`~myapp.sessions.stores.base.SessionRecord` values; everything shared (expiry,
ids, dirty tracking, cookies) lives above it. A request uses a store through its
request-bound form (:class:`IRequestBoundStore`), which every store provides: stores
that keep no request state are their own bound form, so callers never probe for
capabilities.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ISessionStore(Interface):
    """Where session records live. Stores do I/O only; expiry rules live above them.

    Every method may raise :class:`~myapp.sessions.exceptions.StoreError` when the
    store fails. Times are seconds since the epoch (UTC).
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
        (``gone`` telling "ended" from "changed") and nothing is written.
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

    def delete_user(user_id: str, *, except_key: str | None = None) -> int:
        """End every session of ``user_id`` (but ``except_key``); return how many."""

    def list_user(user_id: str, now: float) -> list:
        """The live sessions of ``user_id``, oldest first."""

    def purge_expired(now: float, batch_size: int) -> int:
        """Delete up to ``batch_size`` sessions expired at ``now``; return how many went."""

    def count(now: float) -> tuple[int, int]:
        """How many sessions are (live, expired): for operators, not the hot path."""

    def top_users(now: float, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` (user id, live sessions) pairs, most first, then by user id:
        for operators, not the hot path."""

    def load_offline(key: str, now: float):
        """What the store can answer while its server is down (a cache's copy), or None."""

    def adopt(record) -> int:
        """Store a session read through from another store (after a switch of stores)."""

    def release(record) -> None:
        """The session now lives in another store (or ended there): forget it here."""

    def health() -> dict:
        """Extra state for ``/healthz`` (a cache's breaker); read from memory, no I/O."""

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


class INewSessionAdmission(Interface):
    """An app's say on storing a new session without a user (a utility; optional).

    Called in the request's transaction, just before such a session would first be
    stored. Returning admits it; raising refuses it: nothing is stored, the request's
    transaction is aborted, and the exception reaches the app's exception views (so
    the app chooses the answer, e.g. a 429).
    """

    def __call__(request):
        """Admit the new anonymous session of ``request``, or raise."""
