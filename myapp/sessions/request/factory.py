"""The ISessionFactory: cookie in -> load -> decide what to write -> cookie out.

Nothing happens until a view touches ``request.session`` (Pyramid calls the factory
lazily). Then the session is loaded, and hooks are put on the request's transaction:
the write runs just before commit (so it commits or rolls back with the view's own
data), and the cookie is set in a response callback once the commit succeeded. Which
store answers when one fails (failover, read-through) and where each write runs (the
request's transaction, or queued until it votes) is ``storeio``'s business.

The session cookie carries a random token (:func:`new_token`), signed
(:class:`CookieSigner`, HMAC-SHA256: the newest secret signs, every listed one
verifies); stores index the session by the token's hash (:func:`storage_key`).
Reading never raises: a cookie that cannot be read is a verdict like a bad signature,
and costs a fresh session.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyramid.interfaces import ISessionFactory
from pyramid_tm import is_tm_active
from zope.interface import implementer

from ..database.requesttm import LazyTransactionManager
from ..events import SessionObserver
from ..exceptions import (
    SessionConflict,
    SessionStoreUnavailable,
    StaleSession,
    StoreError,
)
from ..interfaces import INewSessionAdmission
from ..stores import base
from ..stores.authenticator import Signatures
from ..stores.base import SessionRecord, SessionStore
from . import flashcookie
from .session import Session, dumps_checked, flash_only, loads
from .storeio import AVOID_KEY, UNAVAILABLE_KEY, StoreLoader, UnavailableNotice, Writes, quietly

if TYPE_CHECKING:
    from pyramid.request import Request
    from pyramid.response import Response

    from ..chain import StoreChain
    from ..options import SessionOptions

__all__ = ["AVOID_KEY", "UNAVAILABLE_KEY", "RequestSession", "SessionFactory"]

log = logging.getLogger(__name__)

USER_AGENT_LENGTH = 256
TOKEN_BYTES = 32  # 256 bits from the operating system's CSPRNG
_TOKEN_LENGTH = 43  # base64url of 32 bytes, unpadded
COOKIE_LENGTH = 87  # "token.signature": base64url of the token and of an HMAC-SHA256
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_SALT = b"myapp.sessions.cookie\x00"


def new_token() -> str:
    """A fresh, unguessable session token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def storage_key(token: str) -> str:
    """What stores index by: a hash, so a dump of the store hands out no live token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class CookieVerdict:
    """What a cookie value turned out to be: a token, or the reason it was refused."""

    token: str | None
    reason: str | None = None  # "absent", "malformed", "bad_signature"
    stale_secret: bool = False  # signed with an older secret still listed


class CookieSigner:
    """HMAC-SHA256 over the token: ``token.signature``. The first secret signs; every
    listed secret verifies.

    Hand-made, where the sign-in marker and the flash cookie use webob's
    ``SignedSerializer`` (``stores.authenticator.Signatures``): this one is read on every
    request that touches its session, and webob's builds its HMAC through a Python
    function, so ``hmac`` takes its pure-Python path. Measured on the Redis store's
    read (``python -m bench.instructions``, 300 requests): 932,000 instructions per
    request with this signer, 971,000 with webob's (+4.2 %); ``python -m bench.run
    --only psr ours-redis ours-sql-pg --views read``, the two trees one after the
    other, twice: 1.24x and 1.21x pyramid_session_redis with this signer, 1.13x and
    1.16x with webob's, against the 1.2x target.
    """

    def __init__(self, secrets_newest_first: tuple[bytes, ...]) -> None:
        if not secrets_newest_first:
            raise ValueError("at least one secret is needed")
        # A purpose-bound key per secret, so the same secret reused elsewhere (the
        # marker, another app) never makes interchangeable signatures. Each key's HMAC
        # is set up once and copied per cookie: a one-shot hmac.digest() looks the
        # algorithm up again on every call (~2-9 us on OpenSSL 3, ~1 us for a copy).
        self._keys = tuple(
            hmac.new(hashlib.sha256(_SALT + secret).digest(), digestmod=hashlib.sha256)
            for secret in secrets_newest_first
        )

    def _sign(self, key: hmac.HMAC, token: str) -> str:
        mac = key.copy()
        mac.update(token.encode("ascii"))
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")

    def dumps(self, token: str) -> str:
        return f"{token}.{self._sign(self._keys[0], token)}"

    def loads(self, value: str | None) -> CookieVerdict:
        """Check a cookie value from the browser; never raises."""
        if not value:
            return CookieVerdict(None, "absent")
        if (
            len(value) != COOKIE_LENGTH
            or value[_TOKEN_LENGTH] != "."
            or not _ALPHABET.issuperset(value[:_TOKEN_LENGTH])
            or not _ALPHABET.issuperset(value[_TOKEN_LENGTH + 1 :])
        ):
            return CookieVerdict(None, "malformed")
        token, signature = value[:_TOKEN_LENGTH], value[_TOKEN_LENGTH + 1 :]
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(self._sign(key, token), signature):
                return CookieVerdict(token, None, stale_secret=index > 0)
        return CookieVerdict(None, "bad_signature")


class SessionCookie:
    """One app's session cookie, as its options describe it."""

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self.signer = CookieSigner(options.secret_bytes)

    def read(self, request: Request) -> CookieVerdict:
        """The token the request's cookie carries, or why there is none."""
        try:
            raw = request.cookies.get(self.options.cookie_name)
        except UnicodeDecodeError:
            # WebOb decodes a backslash escape of a non-UTF-8 byte and raises: a
            # garbage Cookie header must cost a fresh session, not a 500.
            raw = "malformed"
        return self.signer.loads(raw)

    def set(self, response: Response, token: str, *, created: float, now: float) -> None:
        """Send ``token``, lasting as the options say (by default: until the
        session's absolute lifetime ends)."""
        options = self.options
        if options.cookie_max_age is None:
            max_age: int | None = max(1, int(created + options.max_lifetime - now))
        else:
            max_age = options.cookie_max_age or None  # 0: ends with the browser session
        value = self.signer.dumps(token)
        response.set_cookie(
            options.cookie_name, value, max_age=max_age, **options.cookie_attributes
        )

    def delete(self, request: Request, response: Response) -> None:
        """Tell the browser to forget the cookie, if it sent one."""
        options = self.options
        if options.cookie_name in request.cookies:
            response.delete_cookie(
                options.cookie_name, path=options.cookie_path, domain=options.cookie_domain
            )


@implementer(ISessionFactory)
class SessionFactory:
    """Builds the :class:`Session` for a request. One instance serves the whole app."""

    def __init__(
        self,
        options: SessionOptions,
        chain: StoreChain,
        *,
        observer: SessionObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.chain = chain
        self.cookie = SessionCookie(options)
        self.flash_cookie = flashcookie.FlashCookie(
            options, Signatures(options.secret_bytes, flashcookie.SALT)
        )
        self.observer = observer or SessionObserver()
        self.clock = clock
        self.unavailable_notice = UnavailableNotice()

    def __call__(self, request: Request) -> Session:
        self.chain.ensure_probing()
        return RequestSession(self, request).session

    # -- helpers shared with RequestSession ------------------------------
    def expiry(self, created: float, now: float) -> float:
        return min(now + self.options.timeout, created + self.options.max_lifetime)

    def timed(self, store: SessionStore, operation: str, fn: Callable[[], object]) -> object:
        started = time.perf_counter()
        try:
            return fn()
        except StoreError as exc:
            self.observer.store_error(store.name, exc.kind)
            log.error("session store %r failed during %s: %s", store.name, operation, exc)
            raise SessionStoreUnavailable(store.name, exc.kind, str(exc)) from exc
        finally:
            self.observer.store_latency(store.name, operation, time.perf_counter() - started)


class RequestSession:
    """The life of one request's session: load, then write and cookie at the end."""

    def __init__(self, factory: SessionFactory, request: Request) -> None:
        self.factory = factory
        self.request = request
        self.options = factory.options
        self.now = factory.clock()
        self.loader = StoreLoader(
            factory.chain,
            factory.observer,
            factory.options,
            request,
            notice=factory.unavailable_notice,
            timed=factory.timed,
            now=self.now,
        )
        self.token: str | None = None
        self.record: SessionRecord | None = None
        self.issue_cookie = False
        self.delete_cookie = False
        self.committed = False
        self.flash_read = False  # the request carried a flash cookie, now in the session
        self.flash_out: str | None = None  # a flash cookie to send instead of a row
        self.session = self._load()
        self._register()

    # -- loading ------------------------------------------------------------
    def _load(self) -> Session:
        factory = self.factory
        verdict = factory.cookie.read(self.request)
        if verdict.token is None:
            if verdict.reason != "absent":
                factory.observer.bad_cookie(verdict.reason or "unknown")
                log.info("ignored a session cookie: %s", verdict.reason)
            return self._fresh()
        loader = self.loader
        record = loader.load(storage_key(verdict.token))
        if record is None:
            unasked = loader.unasked_stores()
            if unasked:
                # Not found here, while a store that may hold it is down: unknown, not ended.
                return loader.unavailable_session(unasked)
            # Unknown, ended or expired: never adopt a token we did not issue.
            factory.observer.bad_cookie("unknown_session")
            self.delete_cookie = True
            return self._fresh()
        try:
            data = loads(record.data)
        except ValueError:
            log.warning("a stored session could not be decoded; starting a fresh one")
            factory.observer.bad_cookie("corrupt_data")
            self.delete_cookie = True
            return self._fresh()
        self.token, self.record = verdict.token, record
        # Re-sign with the newest secret once an older, still-listed one was used.
        self.issue_cookie = verdict.stale_secret
        factory.observer.session_loaded(loader.store.name)
        return Session(data, created=record.created, new=False, user_id=record.user_id)

    def _fresh(self) -> Session:
        carried = self.factory.flash_cookie.read(self.request, self.now)
        self.flash_read = carried is not None
        return Session(carried, created=self.now, new=True)

    wrote = False

    # -- the end of the request -------------------------------------------
    def _register(self) -> None:
        request = self.request
        if is_tm_active(request):
            manager = request.tm
            if isinstance(manager, LazyTransactionManager):
                # A session that is only read starts no transaction.
                manager.on_commit(lambda: self._persist_guarded(manager.get), self._after_commit)
            else:
                txn = manager.get()
                txn.addBeforeCommitHook(self._persist_guarded, (lambda: txn,))
                txn.addAfterCommitHook(self._after_commit)
            request.add_response_callback(self._cookie)
        else:
            # Touched after pyramid_tm finished (an exception view, a response
            # callback): write in a short transaction of our own.
            request.add_response_callback(self._persist_late)

    def _after_commit(self, success: bool) -> None:
        self.committed = success
        if success and self.wrote:
            self.factory.chain.succeeded(self.loader.index)

    def _persist_guarded(self, transaction: Callable[[], Any]) -> None:
        try:
            self._persist(transaction)
        except SessionStoreUnavailable as exc:
            self.loader.bound().abandon()
            raise self.loader.store_failed(exc) from exc
        except BaseException:
            self.loader.bound().abandon()
            raise

    def _persist_late(self, request: Request, response: Response) -> None:
        with request.tm:
            self._persist(request.tm.get)
        self.committed = True
        self._cookie(request, response)

    def _persist(self, transaction: Callable[[], Any]) -> None:
        """Write what the request changed; ``transaction()`` (only called when there
        is something to write) gives the request's transaction."""
        session, record, factory, loader = self.session, self.record, self.factory, self.loader
        if loader.unavailable:
            loader.drop_or_refuse(session)
            return
        now = factory.clock()
        changed = (
            session.explicitly_changed
            or session.new
            or record is None
            or loader.moved_from is not None
            or loads(record.data) != session
        )
        refused = factory.chain.breaker_open(loader.index)
        if not changed:
            stale = record is not None and now - record.last_active >= self.options.reissue_time
            if stale and not refused:  # a touch can wait for the store to answer again
                self._touch(transaction(), record, now)
            return
        ending = record is not None and (session.invalidated or session.rotated)
        if session.new and not ending and session.user_id is None:
            if not session:
                return  # nothing worth storing: no row, no cookie
            if flash_only(session):  # one-off messages travel in a cookie, not a row
                self.flash_out = factory.flash_cookie.dumps(session, now)
                if self.flash_out is not None:
                    return
        if refused:  # fail now, not after a connect timeout
            exc = factory.chain.refusal(loader.index)
            raise SessionStoreUnavailable(loader.store.name, exc.kind, str(exc))
        if record is None and session.user_id is None and not session.invalidated:
            admit = self.request.registry.queryUtility(INewSessionAdmission)
            if admit is not None:
                admit(self.request)  # may raise: nothing is stored
        writes = self._writer(transaction())
        if ending:
            writes.delete(record.key, record)
            if session.invalidated:
                factory.observer.session_invalidated(loader.store.name)
            self.delete_cookie = True
        if session.invalidated and not session:
            self._release_moved(transaction)
            return
        text = dumps_checked(session, self.options.max_size)
        starts_anew = record is None or ending
        created = now if starts_anew else record.created
        new_record = SessionRecord(
            key="",
            data=text,
            created=created,
            last_active=now,
            expires=factory.expiry(created, now),
            user_id=session.user_id,
            user_agent=_user_agent(self.request),
        )
        if starts_anew:
            self.token = new_token()
            new_record.key = storage_key(self.token)
            writes.save(new_record, None, None)
            self.issue_cookie, self.delete_cookie = True, False
            factory.observer.session_created(loader.store.name)
        else:
            new_record.key = record.key
            if loader.moved_from is not None:
                writes.adopt(new_record)
            else:
                writes.save(new_record, record.version, record)
            factory.observer.session_saved(loader.store.name)
        self._release_moved(transaction)

    def _release_moved(self, transaction: Callable[[], Any]) -> None:
        """Once committed, the store a session was read through from lets go of it.

        Also when the session ended here: its old copy must not be read through again.
        """
        moved_from, moved = self.loader.moved_from, self.loader.moved_record
        if moved_from is not None and moved is not None:
            release = functools.partial(base.release, moved_from)
            transaction().addAfterCommitHook(lambda ok: ok and quietly(release, moved))

    def conflict(self, exc: StaleSession) -> None:
        """A save was refused. A session ended meanwhile stays ended; a newer one wins."""
        self.factory.observer.session_conflict(exc.store, exc.gone)
        if exc.gone:
            log.info("refused a late write to a session that has ended (%s store)", exc.store)
            moved_from, moved = self.loader.moved_from, self.loader.moved_record
            if moved_from is not None and moved is not None:
                # Never read through again.
                quietly(functools.partial(base.release, moved_from), moved)
            self.token = None
            self.issue_cookie, self.delete_cookie = False, True
            return
        raise SessionConflict(str(exc)) from exc

    def _touch(self, txn: object, record: SessionRecord, now: float) -> None:
        self._writer(txn).touch(record, now, self.factory.expiry(record.created, now), now)
        self.factory.observer.session_touched(self.loader.store.name)

    def _writer(self, txn: object) -> Writes:
        self.wrote = True
        return Writes(
            self.loader.bound(),
            self.loader.store,
            txn,
            timed=self.factory.timed,
            on_stale=self.conflict,
            on_error=self.loader.store_failed,
        )

    def _cookie(self, request: Request, response: Response) -> None:
        # The answer depends on the cookie now: a shared cache must not give it to others.
        # (Said here, in the one callback every loaded session has, rather than in a
        # second callback of its own: a read costs one callback less.)
        vary_on_cookie(response)
        if not self.committed:
            return
        if self.flash_out is not None:
            self.factory.flash_cookie.set(response, self.flash_out)
        elif self.flash_read:
            self.factory.flash_cookie.delete(response)
        cookie = self.factory.cookie
        if self.issue_cookie and self.token is not None:
            cookie.set(response, self.token, created=self.session.created, now=self.factory.clock())
        elif self.delete_cookie:
            cookie.delete(request, response)


def vary_on_cookie(response: Response) -> None:
    """Add ``Vary: Cookie`` to a response of a request that read its session."""
    headers = response.headers
    current = headers.get("Vary")
    if not current:
        headers["Vary"] = "Cookie"  # the common case: nothing to merge with
        return
    vary = [value.strip() for value in current.split(",")]
    if "*" not in vary and "cookie" not in (value.lower() for value in vary):
        headers["Vary"] = f"{current}, Cookie"


def _user_agent(request: Request) -> str | None:
    agent = request.user_agent
    return agent[:USER_AGENT_LENGTH] if agent else None
