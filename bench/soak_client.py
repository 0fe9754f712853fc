"""A shopper for the load test: signs in (optionally), builds carts through the site's forms,
and checks every read: items the site confirmed must never go missing, and a signed-in
shopper's cookie must never be deleted or replaced behind their back."""

from __future__ import annotations

import http.client
import random
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from myapp.catalogue import PRODUCTS

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
LINE = re.compile(r'<tr id="line-([\w-]+)">.*?name="quantity" value="(\d+)"', re.S)
COOKIE = re.compile(r"^session=([^;]*)")
# Before a session exists, the CSRF token of the forms lives in a cookie of its own.
CSRF_COOKIE = re.compile(r"^session_csrf=([^;]*)")
REQUEST_TIMEOUT = 15.0
ADDS_PER_CART = 12  # then start a new cart: many sessions, and far from the quantity cap
SIGNED_IN_AS = re.compile(r'id="signed-in-as">.*?<strong>([^<]+)</strong>', re.S)
#: The layout's banner while a request is served without its session (a store is down).
UNAVAILABLE = 'id="session-unavailable"'


@dataclass
class Tally:
    """What every client saw; shared, so guarded by a lock."""

    requests: int = 0
    errors_5xx: int = 0
    transport_errors: int = 0
    other_status: int = 0
    carts: int = 0
    carts_lost: int = 0
    phantom_items: int = 0
    confirmed_adds: int = 0
    items_lost: int = 0  # confirmed items a later read did not show
    users_signed_out: int = 0  # signed-in shoppers whose cookie was deleted or replaced
    unavailable_pages: int = 0  # pages served without their session (banner shown)
    # (started, ended, status) of every 5xx or transport error (status 0)
    failures: list[tuple[float, float, int]] = field(default_factory=list)
    # (started, ended, status) of every request, for latency during a fault
    samples: list[tuple[float, float, int]] = field(default_factory=list)
    lost_examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, started: float, status: int) -> None:
        with self.lock:
            if len(self.samples) < 500_000:
                self.samples.append((started, time.monotonic(), status))
            self.requests += 1
            if status >= 500 or status == 0:
                if status == 0:
                    self.transport_errors += 1
                else:
                    self.errors_5xx += 1
                if len(self.failures) < 10_000:
                    self.failures.append((started, time.monotonic(), status))
            elif status not in (200, 303):
                self.other_status += 1


class Shopper:
    """One browser: its own connection and cookie, one cart at a time."""

    def __init__(
        self, port: int, tally: Tally, seed: int, account: tuple[str, str] | None = None
    ) -> None:
        self.port = port
        self.tally = tally
        self.account = account  # (name, password): shop signed in
        self.signed_in = False
        self.lost_sign_in = False
        self.random = random.Random(seed)
        self.conn: http.client.HTTPConnection | None = None
        self.cookie: str | None = None
        self.csrf_cookie: str | None = None
        self.token: str | None = None
        self.confirmed: dict[str, int] = {}  # what the site said the cart holds
        self.maybe: dict[str, int] = {}  # adds whose answer never came (5xx, dropped)
        self.adds = 0

    # -- HTTP ---------------------------------------------------------------
    def _request(self, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        headers = {"Connection": "keep-alive"}
        cookies = [f"session={self.cookie}"] if self.cookie else []
        if self.csrf_cookie:
            cookies.append(f"session_csrf={self.csrf_cookie}")
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        started = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT
                )
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            self._close()
            self.tally.count(started, 0)
            return 0, ""
        for header in response.headers.get_all("Set-Cookie") or []:
            match = COOKIE.match(header)
            if match:
                gone = "Max-Age=0" in header or not match.group(1)
                new = None if gone else match.group(1)
                if self.signed_in and path != "/signin" and new != self.cookie:
                    self._signed_out()
                self.cookie = new
            match = CSRF_COOKIE.match(header)
            if match:
                self.csrf_cookie = match.group(1)
        if response.getheader("Connection", "").lower() == "close":
            self._close()
        self.tally.count(started, response.status)
        return response.status, text

    def _signed_out(self) -> None:
        """The site deleted or replaced a signed-in shopper's cookie: they are signed out."""
        self.signed_in = False
        if not self.lost_sign_in:
            self.lost_sign_in = True
            with self.tally.lock:
                self.tally.users_signed_out += 1

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # -- the shopping -------------------------------------------------------
    def new_cart(self) -> None:
        if self.signed_in:
            self.clear_cart()  # a signed-in shopper keeps the cookie
            return
        self.cookie, self.token, self.confirmed, self.maybe, self.adds = None, None, {}, {}, 0
        self.csrf_cookie = None
        with self.tally.lock:
            self.tally.carts += 1

    def clear_cart(self) -> None:
        """Remove every confirmed line; what the site did not confirm stays counted as such."""
        for product in list(self.confirmed):
            form = urlencode({"csrf_token": self.token or "", "product": product})
            status, _ = self._request("POST", "/cart/remove", form)
            if status == 303:
                del self.confirmed[product]
            else:
                return  # try again later (a 503 during an outage)
        self.adds = 0
        with self.tally.lock:
            self.tally.carts += 1

    def sign_in(self) -> bool:
        """Sign in through the form; True when the next page says so."""
        assert self.account is not None
        name, password = self.account
        status, page = self._request("GET", "/signin")
        match = TOKEN.search(page) if status == 200 else None
        if match is None:
            return False
        form = urlencode({"csrf_token": match.group(1), "username": name, "password": password})
        status, _ = self._request("POST", "/signin", form)
        if status != 303:
            return False
        status, page = self._request("GET", "/")
        found = SIGNED_IN_AS.search(page)
        self.signed_in = found is not None and found.group(1) == name
        match = TOKEN.search(page)
        self.token = match.group(1) if match else None
        return self.signed_in

    def step(self) -> None:
        """One add and one read-back (or the home page, to get a form's CSRF token)."""
        if self.account is not None and not self.signed_in and not self.lost_sign_in:
            self.sign_in()
            return
        if self.token is None or self.adds >= ADDS_PER_CART:
            if self.adds >= ADDS_PER_CART:
                self.new_cart()
            status, page = self._request("GET", "/")
            match = TOKEN.search(page) if status == 200 else None
            self.token = match.group(1) if match else None
            return
        product = self.random.choice(list(PRODUCTS))
        form = urlencode({"csrf_token": self.token, "product": product, "quantity": "1"})
        status, _ = self._request("POST", "/cart/add", form)
        self.adds += 1
        if status == 303:
            self.confirmed[product] = self.confirmed.get(product, 0) + 1
            with self.tally.lock:
                self.tally.confirmed_adds += 1
        elif status == 0 or status >= 500:
            self.maybe[product] = self.maybe.get(product, 0) + 1
        self.read_back()

    def read_back(self) -> bool:
        """Read the cart and compare it with what the site confirmed; False when lost."""
        status, page = self._request("GET", "/cart")
        if status != 200:
            return True
        if UNAVAILABLE in page:
            # Served without its session for now: the cart is not shown, nor lost.
            with self.tally.lock:
                self.tally.unavailable_pages += 1
            return True
        if self.signed_in and SIGNED_IN_AS.search(page) is None:
            self._signed_out()
        seen = {pid: int(qty) for pid, qty in LINE.findall(page)}
        match = TOKEN.search(page)
        if match:
            self.token = match.group(1)
        missing = {p: q - seen.get(p, 0) for p, q in self.confirmed.items() if seen.get(p, 0) < q}
        if missing:
            with self.tally.lock:
                self.tally.carts_lost += 1
                self.tally.items_lost += sum(missing.values())
                if len(self.tally.lost_examples) < 5:
                    self.tally.lost_examples.append(
                        f"confirmed {self.confirmed}, read {seen} ({time.strftime('%X')})"
                    )
            self.new_cart()
            return False
        extra = sum(
            max(0, q - self.confirmed.get(p, 0) - self.maybe.get(p, 0)) for p, q in seen.items()
        )
        if extra:
            with self.tally.lock:
                self.tally.phantom_items += extra
        # An add whose answer was lost but which shows up now has been told, too.
        self.confirmed, self.maybe = seen, {}
        return True


class Crowd:
    """``clients`` shoppers in threads, until ``stop()`` or ``max_requests`` requests."""

    def __init__(
        self,
        port: int,
        clients: int,
        tally: Tally,
        max_requests: int | None = None,
        accounts: list[tuple[str, str]] | None = None,
    ):
        self.tally = tally
        self.max_requests = max_requests
        self.shoppers = [
            Shopper(port, tally, seed, accounts[seed] if accounts else None)
            for seed in range(clients)
        ]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(s,), daemon=True) for s in self.shoppers
        ]

    def _loop(self, shopper: Shopper) -> None:
        shopper.new_cart()
        while not self._stop.is_set():
            if self.max_requests is not None and self.tally.requests >= self.max_requests:
                return
            shopper.step()

    def start(self) -> Crowd:
        for thread in self._threads:
            thread.start()
        return self

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float = 2 * REQUEST_TIMEOUT) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def final_check(self) -> None:
        """Every shopper reads its cart once more: a loss found only now counts too."""
        for shopper in self.shoppers:
            if shopper.confirmed or shopper.signed_in:
                shopper.read_back()
            shopper._close()

    @property
    def signed_in(self) -> int:
        return sum(shopper.signed_in for shopper in self.shoppers)
