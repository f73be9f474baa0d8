"""The response cache: responses signed ahead of time, kept in this process's memory and stored in
the database so that every worker and every restart shares them.

One key (:class:`~jpki.revocation.ocsp.ports.ResponseKey`) at both levels, and one freshness
rule: a response is served from its thisUpdate until its nextUpdate or its half-life, whichever
comes first (:meth:`ResponseCache.serve_until`) — at half-life it is signed again, so a client
never gets a response close to expiry (RFC 5019 §6.2 leaves the refresh to the responder). The
presign job uses the same rule to find what to sign (:meth:`ResponseCache.fresh_from`).

Reading the memory level (:meth:`ResponseCache.fresh`) is the hot path of every answer given
from a response signed before: a dictionary lookup and one comparison, no lock (a dictionary
lookup is atomic under the GIL; writers hold the lock among themselves).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from jpki.ports import Clock
from jpki.revocation.ocsp.ports import OcspStore, ResponseKey, SignedResponse


class CachedResponse:
    """A response as served: its DER, its times, the instant it stops being served, and its
    HTTP entity tag. Immutable by convention; the HTTP layer relies on identity to tell a
    response from the one that replaced it (api.ocsp_http)."""

    __slots__ = ("der", "etag", "next_update", "serve_until", "this_update")

    def __init__(self, der: bytes, this_update: datetime, next_update: datetime,
                 serve_until: datetime) -> None:
        self.der = der
        self.this_update = this_update
        self.next_update = next_update
        self.serve_until = serve_until
        self.etag = '"' + hashlib.sha256(der).hexdigest()[:32] + '"'

    def __repr__(self) -> str:
        return f"CachedResponse(etag={self.etag}, this_update={self.this_update.isoformat()})"


class ResponseCache:
    def __init__(self, store: OcspStore, clock: Clock, validity: timedelta,
                 size: int = 200_000) -> None:
        self._store = store
        self._clock = clock
        self._half_life = validity / 2
        self._size = size
        self._memory: OrderedDict[ResponseKey, CachedResponse] = OrderedDict()
        self._lock = threading.Lock()  # writers of _memory

    # --- the freshness rule -----------------------------------------------------------------

    def serve_until(self, this_update: datetime, next_update: datetime) -> datetime:
        return min(next_update, this_update + self._half_life)

    def fresh_from(self, now: datetime) -> datetime:
        """The oldest thisUpdate still served at ``now``."""
        return now - self._half_life

    def _entry(self, der: bytes, this_update: datetime, next_update: datetime) -> CachedResponse:
        return CachedResponse(der, this_update, next_update,
                              self.serve_until(this_update, next_update))

    # --- memory -------------------------------------------------------------------------------

    def fresh(self, key: ResponseKey) -> CachedResponse | None:
        """The response kept in memory under ``key`` while it may be served, else None."""
        entry = self._memory.get(key)
        if entry is None or self._clock.now() >= entry.serve_until:
            return None
        return entry

    def kept(self, key: ResponseKey) -> CachedResponse | None:
        """The response kept in memory under ``key``, fresh or not."""
        return self._memory.get(key)

    def forget(self, keys: Iterable[ResponseKey]) -> None:
        """Drop these from memory (the database keeps its copies)."""
        with self._lock:
            for key in keys:
                self._memory.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()

    def __len__(self) -> int:
        return len(self._memory)

    def _remember(self, entries: Iterable[tuple[ResponseKey, CachedResponse]]) -> None:
        with self._lock:
            for key, entry in entries:
                self._memory[key] = entry
                self._memory.move_to_end(key)
            while len(self._memory) > self._size:
                self._memory.popitem(last=False)

    # --- both levels --------------------------------------------------------------------------

    def load(self, key: ResponseKey) -> CachedResponse | None:
        """The database copy under ``key`` — signed by another worker or before a restart — if
        it may be served, now kept in memory too; else None."""
        stored = self._store.stored(key)
        if stored is None:
            return None
        entry = self._entry(stored.der, stored.this_update, stored.next_update)
        if self._clock.now() >= entry.serve_until:
            return None
        self._remember([(key, entry)])
        return entry

    def keep(self, signed: Sequence[tuple[ResponseKey, SignedResponse]]) -> list[CachedResponse]:
        """Keep these responses in memory and store them, in one transaction; the entries, in
        order."""
        entries = [(key, self._entry(*response)) for key, response in signed]
        self._remember(entries)
        self._store.store(signed)
        return [entry for _, entry in entries]

    def delete(self, keys: Sequence[ResponseKey]) -> None:
        """Delete these from the database — in one statement, so that from then on no process
        loads them — and then from memory."""
        self._store.delete(keys)
        self.forget(keys)
