"""Throttling of failed authentications, per client id and per source address.

Each key (a client id, or an address) has a budget of failures: ``failures`` at once, refilled
at ``failures`` per ``window`` seconds (a token bucket). A failed check spends one; while a key's
budget is spent, every request naming it is refused with 429 and ``Retry-After`` *before*
anything is read or verified — what bounds the work, the audit records and the guesses a caller
without credentials can cause. Successful checks spend nothing, and reset nothing either (a
caller holding one valid secret must not be able to refill its address's budget with it).

Memory is bounded: at most ``max_keys`` keys per kind. When full, keys whose budget has come back
whole are forgotten first (they carry no information), else the older half.

Addresses are what the ASGI server reports as the peer (``scope["client"]``). Behind a reverse
proxy that is the proxy, so every caller would share one budget: the proxy must then add the
caller's address to ``X-Forwarded-For`` and uvicorn be told to trust that proxy and only it
(``FORWARDED_ALLOW_IPS``; README, Configuration). An IPv6 address counts by its /64, the
smallest block one host is given: a caller choosing among the 2^64 addresses of its own network
still draws on one budget.

Like the relying parties' token buckets (jpki.rate_limits), the budgets live in the serving
process: with several workers each keeps its own.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from jpki.errors import AuthThrottled

log = logging.getLogger("jpki.auth")


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


class FailureBudgets:
    """One budget of failures per key (see the module documentation)."""

    def __init__(self, failures: int, window_seconds: float, max_keys: int = 65_536,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or window_seconds <= 0 or max_keys < 1:
            raise ValueError("a failure budget needs failures >= 1, a window and room for keys")
        self.burst = float(failures)
        self.rate = failures / window_seconds
        self.window = window_seconds
        self.max_keys = max_keys
        self._now = monotonic
        # key → (failures left, when counted, when last reported as spent)
        self._budgets: dict[str, tuple[float, float, float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._budgets)

    def _left(self, key: str, now: float) -> float:
        entry = self._budgets.get(key)
        if entry is None:
            return self.burst
        left, at, _ = entry
        return min(self.burst, left + (now - at) * self.rate)

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None when it may now."""
        now = self._now()
        with self._lock:
            left = self._left(key, now)
        if left >= 1.0:
            return None
        return max(1, math.ceil((1.0 - left) / self.rate))

    def spend(self, key: str) -> bool:
        """Count one failure of ``key``. True when that spent its budget and this was not
        reported within the last window (so that a log line says so once per episode)."""
        now = self._now()
        with self._lock:
            left = max(0.0, self._left(key, now) - 1.0)
            entry = self._budgets.get(key)
            if entry is None and len(self._budgets) >= self.max_keys:
                self._evict(now)
            reported = entry[2] if entry is not None else -math.inf
            report = left < 1.0 and now - reported >= self.window
            self._budgets[key] = (left, now, now if report else reported)
        return report

    def _evict(self, now: float) -> None:
        whole = [k for k, (left, at, _) in self._budgets.items()
                 if left + (now - at) * self.rate >= self.burst]
        for k in whole or list(self._budgets)[: max(1, len(self._budgets) // 2)]:
            del self._budgets[k]


@dataclass
class AuthThrottle:
    """The two budgets an authentication is checked against: its client id's and its
    address's; and how long a refusal is held before it is sent."""

    by_client: FailureBudgets
    by_address: FailureBudgets
    # A refused caller waits this long for its 429 (a tarpit). A flood is a closed loop — each
    # client sends again as soon as it is answered — so answering at once would let a few dozen
    # connections keep the event loop busy with refusals alone, and everything else (OCSP,
    # /healthz) queue behind them; held for a second, 48 connections send 48 requests a second.
    refusal_delay: float = 1.0

    def check(self, address: str | None, client_id: str | None) -> None:
        """Raise :class:`AuthThrottled` when either budget is spent."""
        waits = [self.by_address.retry_after(address_key(address))]
        if client_id is not None:
            waits.append(self.by_client.retry_after(client_id))
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            raise AuthThrottled("too many failed authentications; retry later",
                                retry_after=wait)

    def failed(self, address: str | None, client_id: str | None) -> None:
        """Count a failed check against the address and, when it had the form of one, the
        client id. The log says when a budget is spent (once per episode, not per refusal)."""
        key = address_key(address)
        if self.by_address.spend(key):
            log.warning("authentication failures from %s exceed the budget: throttled", key)
        if client_id is not None and self.by_client.spend(client_id):
            log.warning("authentication failures for client %s exceed the budget: throttled",
                        client_id)
