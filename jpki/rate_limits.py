"""Rate limits: one token bucket per key (a relying party, or the source address of requests
made without credentials), shared by every process of every node through the database.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a call takes one
token or is refused with the seconds until the next token (HTTP 429 with ``Retry-After``).

**Where the bucket lives.** In one row of the database (jpki.store.limits), so that every
worker of every node draws on the same tokens: a relying party spreading its calls over the
nodes gets one limit, not one per process (docs/deployment.md, "What must hold across nodes").
Asking the database on every call would put a round trip on the relying parties' fast path
(api.rp_fast), so a process *leases a block* of tokens at a time — one atomic statement that
refills the row from its last time on the database's clock, takes up to a block and says how
many it took — and spends them from memory, asking again only when the block is spent (what
large API gateways do with a central limiter: a quota lease per instance).

**What that costs in exactness** (documented in docs/deployment.md, tested in
tests/jpki/test_shared_limits.py). Tokens a process has leased and not yet spent are gone from
the row, so over any interval the calls admitted cluster-wide are at most what one exact bucket
would admit *plus the blocks held at the start of the interval*: at most ``processes × block``
more. The other way, a process holding part of a block can make another process be refused
while the row is empty though fewer than ``burst`` calls were made: again at most the blocks
held. A process killed with a block loses what it had not spent — at most one block per process:
the row already counted it, so the limit is never exceeded for it, the caller just has fewer.

A block is kept until it is spent, however long that takes: dropping what is left after a while
would make a caller that spreads a modest rate over many processes lose most of each block, and
be refused far below its limit. Keeping it costs nothing in the bound above.

**The block**: ``rate × LEASE_SECONDS`` tokens (what the rate gives in that time), at most a
quarter of the burst and at most :data:`MAX_BLOCK`, at least one. With the defaults (20 per
second, burst 40) that is 5: a relying party at its full rate costs each process four leases a
second, one statement each.

**Refusals are remembered.** When the row is empty, the lease says how long until it holds a
token again; until then the process refuses from memory, without asking. So a caller flooding
over its limit costs the database one statement per key and process per refill, not one per
call.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from jpki.errors import Category, RetryLater

LEASE_SECONDS = 0.25  # a block is what the rate gives in this long
MAX_BLOCK = 1000
_MAX_KEYS = 100_000  # a bound on memory; spent and expired blocks are the ones dropped first
_STRIPES = 64  # leases of different keys run at once; of one key, one at a time


class RateLimited(RetryLater):
    code = "rp.rate_limited"
    category = Category.RATE_LIMITED
    title = "Too many requests"


class TooManyRequests(RateLimited):
    """Requests without credentials, from one source, over its rate."""

    code = "request.rate_limited"


class LeaseNeeded(Exception):
    """This process's block for the key is spent: the next token needs a lease from the
    database (:meth:`TokenBuckets.take`), which the caller runs where it may wait — on a
    thread, not the event loop."""


@dataclass(frozen=True)
class Lease:
    granted: int  # tokens taken from the shared bucket for this process (0: none left)
    wait: float  # when none: seconds until the shared bucket holds one token again


class TokenLedger(Protocol):
    """The shared buckets (jpki.store.limits.SqlLimits)."""

    def lease(self, scope: str, subject: str, want: int, rate: float, burst: int,
              at: float | None = None) -> Lease:
        """Refill the bucket (``scope``, ``subject``) to now — the database's clock, or ``at``
        seconds when given — and take up to ``want`` tokens, atomically."""
        ...


def block_size(rate: float, burst: int) -> int:
    """The tokens a process leases at once (see the module documentation)."""
    return max(1, min(MAX_BLOCK, int(rate * LEASE_SECONDS), burst // 4))


class TokenBuckets:
    """The buckets of one ``scope`` (``"rp"``, ``"anonymous"``) as one process sees them: the
    block it holds per key, leased from ``ledger``.

    ``clock`` (seconds) is for tests: it then times the blocks here *and* stands for the
    database's clock in the ledger. Without it, blocks are timed by ``time.monotonic`` and the
    shared bucket by the database."""

    def __init__(self, ledger: TokenLedger, scope: str, rate: float, burst: int, *,
                 error: type[RateLimited] = RateLimited, block: int | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.ledger = ledger
        self.scope = scope
        self.rate = rate
        self.burst = burst
        self.block = min(burst, block if block is not None else block_size(rate, burst))
        if self.block < 1:
            raise ValueError("a block is at least one token")
        self._error = error
        self._clock = clock
        self._now = clock or time.monotonic
        # key → [tokens left of the block, refused from memory until]
        self._held: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]

    def __len__(self) -> int:
        return len(self._held)

    def _refusal(self, wait: float) -> RateLimited:
        return self._error(f"at most {self.rate:g} calls per second (burst {self.burst:g}); "
                           "retry later", retry_after=max(1, math.ceil(wait)))

    def try_take(self, key: str) -> bool:
        """Take a token of this process's block for ``key``: True. False when the block is
        spent (a lease is needed: :meth:`take`). Raises :class:`RateLimited` while
        the shared bucket, when last asked, said it was empty. Never touches the database."""
        now = self._now()
        with self._lock:
            held = self._held.get(key)
            if held is None:
                return False
            if held[1] > now:
                raise self._refusal(held[1] - now)
            if held[0] >= 1.0:
                held[0] -= 1.0
                return True
            return False

    def take(self, key: str) -> None:
        """Take one token for ``key`` or raise :class:`RateLimited`, leasing a block from the
        database when this process's is spent (so: not on the event loop)."""
        if self.try_take(key):
            return
        with self._stripes[hash(key) % _STRIPES]:
            if self.try_take(key):  # another thread leased while this one waited
                return
            lease = self.ledger.lease(self.scope, key, self.block, self.rate, self.burst,
                                      self._clock() if self._clock is not None else None)
            now = self._now()
            with self._lock:
                if key not in self._held and len(self._held) >= _MAX_KEYS:
                    self._evict(now)
                if lease.granted < 1:
                    self._held[key] = [0.0, now + lease.wait]
                    raise self._refusal(lease.wait)
                self._held[key] = [lease.granted - 1.0, now]

    def admit(self, key: str, *, lease: bool = True) -> None:
        """:meth:`take` when ``lease``; else :meth:`try_take`, raising :class:`LeaseNeeded`
        instead of asking the database."""
        if lease:
            self.take(key)
        elif not self.try_take(key):
            raise LeaseNeeded

    def _evict(self, now: float) -> None:
        # Spent blocks first (they hold nothing); else half, whose tokens are lost: refusals
        # only, never an excess.
        idle = [k for k, (tokens, refused) in self._held.items()
                if refused <= now and tokens < 1.0]
        for k in idle or list(self._held)[: len(self._held) // 2]:
            del self._held[k]
