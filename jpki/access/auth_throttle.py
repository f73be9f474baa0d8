"""Throttling of failed authentications, per client id and per source address.

Each key (a client id, or an address) has a budget of failures: ``failures`` at once, refilled
at ``failures`` per ``window`` seconds (a token bucket). A failed check spends one; while a key's
budget is spent, every request naming it is refused with 429 and ``Retry-After`` *before*
anything is read or verified — what bounds the work, the audit records and the guesses a caller
without credentials can cause. Successful checks spend nothing, and reset nothing either (a
caller holding one valid secret must not be able to refill its address's budget with it).

**Where the budgets live.** In the database (jpki.store.limits), shared by every worker of every
node: an attacker spreading guesses over the nodes gets one budget, not one per process
(docs/deployment.md, "What must hold across nodes"). Failures are rare next to requests, so each
one is counted there directly — one atomic upsert that refills the key's budget from its last
time on the database's clock, spends one and says whether the key is now blocked and for how
long. The check, which every request with credentials makes before anything else
(api.auth_guard), never asks the database: it reads a cache of the blocked keys, which each
process reads again every :data:`~jpki.change_feed.POLL_SECONDS` while it serves requests (one
index range read) and learns at once from the failures it counts itself. A lockout made on one
node therefore holds on every other within that interval; a process that has not read the
blocked keys for :data:`STALE_SECONDS` (idle, or just started) reads them before it checks a
request.

Requests already past the check when a budget is spent — in flight on this process, or on
another before it has read the block — still fail and are still counted: the budget goes into
debt (down to minus one budget), and the key stays blocked until the refill has paid it back.
So the failures checked over any time are at most the budget, its refill over that time and
the requests that were in flight at its end, however the checks race with the counts.

Memory is bounded: at most ``max_keys`` blocked keys per kind are kept (the longest-blocked
first); the database forgets a key once its budget is whole again (a maintenance job).

Addresses are what the ASGI server reports as the peer (``scope["client"]``). Behind a reverse
proxy that is the proxy, so every caller would share one budget: the proxy must then add the
caller's address to ``X-Forwarded-For`` and uvicorn be told to trust that proxy and only it
(``FORWARDED_ALLOW_IPS``; README, Configuration). An IPv6 address counts by its /64, the
smallest block one host is given: a caller choosing among the 2^64 addresses of its own network
still draws on one budget.

"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from jpki.change_feed import POLL_SECONDS
from jpki.errors import AuthThrottled

log = logging.getLogger("jpki.auth")

# Past this without a read of the blocked keys, a check waits for one (api.auth_guard): a
# process that served nothing for a while may have missed a lockout made elsewhere.
STALE_SECONDS = 1.0


def address_key(host: str | None) -> str:
    """The key an address is counted under: IPv4 as is, IPv6 by its /64 network."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]  # not an IP (a test client, a unix socket): counted as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


@dataclass(frozen=True)
class Counted:
    """A failure as the shared budget counted it."""

    blocked_for: float | None  # seconds the key is refused from now on, or None
    report: bool  # this failure spent the budget, first in its window: the log says so


@dataclass(frozen=True)
class Failure:
    """One failure of (``kind``, ``subject``) against a budget of ``burst`` refilled at
    ``rate`` per second; reported at most once per ``window``."""

    kind: str
    subject: str
    burst: int
    rate: float
    window: float


class FailureLedger(Protocol):
    """The shared budgets (jpki.store.limits.SqlLimits)."""

    def count(self, failures: Sequence[Failure], at: float | None = None) -> list[Counted]:
        """Count each failure, its budget refilled to now — the database's clock, or ``at``
        seconds when given — atomically, all in one transaction."""
        ...

    def blocked(self, limit: int, at: float | None = None) -> list[tuple[str, str, float]]:
        """(kind, subject, seconds left) of every key refused now, the longest first, at most
        ``limit``."""
        ...


class FailureBudgets:
    """One budget of failures per key of one ``kind`` (``"client"``, ``"address"``): counted
    in ``ledger``, refused from a cache of the keys it says are blocked (see the module
    documentation). ``clock`` (seconds) is for tests, as in jpki.rate_limits.TokenBuckets."""

    def __init__(self, ledger: FailureLedger, kind: str, failures: int,
                 window_seconds: float, max_keys: int = 65_536,
                 clock: Callable[[], float] | None = None) -> None:
        if failures < 1 or window_seconds <= 0 or max_keys < 1:
            raise ValueError("a failure budget needs failures >= 1, a window and room for keys")
        self.ledger = ledger
        self.kind = kind
        self.burst = failures
        self.rate = failures / window_seconds
        self.window = window_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._now = clock or time.monotonic
        # key → (refused until, on this process's clock; when that was learnt)
        self._blocked: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._blocked)

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None when it may now (from the cache)."""
        entry = self._blocked.get(key)
        if entry is None:
            return None
        left = entry[0] - self._now()
        if left <= 0:
            return None
        return max(1, math.ceil(left))

    def failure(self, key: str) -> Failure:
        return Failure(self.kind, key, self.burst, self.rate, self.window)

    def spend(self, key: str) -> bool:
        """Count one failure of ``key`` in the shared budget (a database write: not on the
        event loop). True when that spent the budget and no process said so within the last
        window (so that a log line says so once per episode, cluster-wide)."""
        (counted,) = self.ledger.count([self.failure(key)], self.at())
        return self.learn(key, counted)

    def at(self) -> float | None:
        """The time the ledger is to count at: None for the database's clock."""
        return self.clock() if self.clock is not None else None

    def learn(self, key: str, counted: Counted) -> bool:
        """What counting a failure of ``key`` said, into the cache; whether to report it."""
        if counted.blocked_for is not None:
            now = self._now()
            with self._lock:
                if key not in self._blocked and len(self._blocked) >= self.max_keys:
                    self._evict(now)
                self._blocked[key] = (now + counted.blocked_for, now)
        return counted.report

    def replace(self, blocked: dict[str, float], began: float) -> None:
        """The cache becomes ``blocked`` (key → seconds left, as read at ``began``), keeping
        what a failure counted here learnt after the read began."""
        with self._lock:
            fresh = {key: (began + left, began)
                     for key, left in list(blocked.items())[: self.max_keys]}
            for key, (until, learnt) in self._blocked.items():
                if learnt >= began and until > fresh.get(key, (0.0, 0.0))[0]:
                    fresh[key] = (until, learnt)
            self._blocked = fresh

    def _evict(self, now: float) -> None:
        lapsed = [k for k, (until, _) in self._blocked.items() if until <= now]
        for k in lapsed or sorted(self._blocked, key=lambda k: self._blocked[k][0])[
                : max(1, len(self._blocked) // 2)]:
            del self._blocked[k]


@dataclass
class AuthThrottle:
    """The two budgets an authentication is checked against: its client id's and its
    address's (one ledger); how long a refusal is held before it is sent; and the cache of
    blocked keys, read again every :data:`POLL_SECONDS`."""

    by_client: FailureBudgets
    by_address: FailureBudgets
    # A refused caller waits this long for its 429 (a tarpit). A flood is a closed loop — each
    # client sends again as soon as it is answered — so answering at once would let a few dozen
    # connections keep the event loop busy with refusals alone, and everything else (OCSP,
    # /healthz) queue behind them; held for a second, 48 connections send 48 requests a second.
    refusal_delay: float = 1.0
    _read_at: float = field(default=-math.inf, init=False)  # when the last read began
    _reading: threading.Lock = field(default_factory=threading.Lock, init=False)

    def check(self, address: str | None, client_id: str | None) -> None:
        """Raise :class:`AuthThrottled` when either budget is spent (from the cache)."""
        waits = [self.by_address.retry_after(address_key(address))]
        if client_id is not None:
            waits.append(self.by_client.retry_after(client_id))
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            raise AuthThrottled("too many failed authentications; retry later",
                                retry_after=wait)

    def failed(self, address: str | None, client_id: str | None) -> None:
        """Count a failed check against the address and, when it had the form of one, the
        client id (database writes: not on the event loop). The log says when a budget is
        spent (once per episode, not per refusal)."""
        key = address_key(address)
        failures = [self.by_address.failure(key)]
        if client_id is not None:
            failures.append(self.by_client.failure(client_id))
        counted = self.by_address.ledger.count(failures, self.by_address.at())
        if self.by_address.learn(key, counted[0]):
            log.warning("authentication failures from %s exceed the budget: throttled", key)
        if client_id is not None and self.by_client.learn(client_id, counted[1]):
            log.warning("authentication failures for client %s exceed the budget: throttled",
                        client_id)

    # --- the cache of blocked keys ---------------------------------------------------------

    def _clock(self) -> float:
        return self.by_client._now()

    def stale(self) -> bool:
        """No read of the blocked keys began within :data:`STALE_SECONDS`: the cache may miss
        a lockout another process made, and must be read before a check is trusted."""
        return self._clock() - self._read_at >= STALE_SECONDS

    def claim_refresh(self) -> bool:
        """Claim the next read when it is due and none is running, without blocking (for the
        event loop, which then runs :meth:`run_claimed_refresh` on a thread)."""
        return self._clock() - self._read_at >= POLL_SECONDS and \
            self._reading.acquire(blocking=False)

    def run_claimed_refresh(self) -> None:
        """The read :meth:`claim_refresh` claimed (errors logged)."""
        try:
            self._refresh_logged()
        finally:
            self._reading.release()

    def release_claim(self) -> None:
        """Give up a claimed read that could not be started."""
        self._reading.release()

    def refresh(self) -> None:
        """Read the blocked keys now (on a thread). Raises when the store cannot be read."""
        with self._reading:
            self._refresh()

    def refresh_if_due(self) -> None:
        """Read the blocked keys when due (for a caller on a thread; errors logged)."""
        if self.claim_refresh():
            self.run_claimed_refresh()

    def _refresh_logged(self) -> None:
        try:
            self._refresh()
        except Exception as exc:  # checked against the cache meanwhile; the type only
            log.warning("the failure budgets could not be read: %s", type(exc).__name__)

    def _refresh(self) -> None:
        began = self._clock()
        self._read_at = began  # a failed read is not retried by every request at once
        limit = self.by_client.max_keys + self.by_address.max_keys
        at = self.by_client.clock() if self.by_client.clock is not None else None
        rows = self.by_client.ledger.blocked(limit, at)
        for budgets in (self.by_client, self.by_address):
            budgets.replace({subject: left for kind, subject, left in rows
                             if kind == budgets.kind}, began)
