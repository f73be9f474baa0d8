"""Rate limits: one token bucket per key (a relying party, or the source address of requests
made without credentials), kept in memory.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a call takes one
token or is refused with the seconds until the next token (HTTP 429 with ``Retry-After``).

The buckets live in the serving process: with ``jpki serve --workers N`` each worker keeps its own,
so the effective limit is up to N times the configured one. That is the price of keeping the
database off the hot path; a shared limiter (PostgreSQL, or a proxy in front) would be the way to
an exact cluster-wide limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from jpki.errors import Category, RetryLater

_MAX_KEYS = 100_000  # a bound on memory; full buckets are the ones dropped first


class RateLimited(RetryLater):
    code = "rp.rate_limited"
    category = Category.RATE_LIMITED
    title = "Too many requests"


class TooManyRequests(RateLimited):
    """Requests without credentials, from one source, over its rate."""

    code = "request.rate_limited"


class TokenBuckets:
    def __init__(self, rate: float, burst: int,
                 monotonic: Callable[[], float] = time.monotonic,
                 error: type[RateLimited] = RateLimited) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = float(burst)
        self._now = monotonic
        self._error = error
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Take one token for ``key`` or raise :class:`RateLimited`."""
        now = self._now()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise self._error(f"at most {self.rate:g} calls per second (burst "
                                  f"{self.burst:g}); retry later",
                                  retry_after=max(1, math.ceil(wait)))
            if len(self._buckets) >= _MAX_KEYS and key not in self._buckets:
                self._evict(now)
            self._buckets[key] = (tokens - 1.0, now)

    def _evict(self, now: float) -> None:
        full = [k for k, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.rate >= self.burst]
        for k in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[k]
