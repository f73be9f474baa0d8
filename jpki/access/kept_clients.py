"""API client credentials kept in memory, in step with the store by a change feed.

Every authenticated request needs the client's row — its stored secret hashes, the previous
secret's deadline, its status, role and scopes — and, for a relying-party client, its relying
party's standing (status, its platform operator's status, declared purposes). Read from the
database on every call, that read and the thread it needs cost more than the rest of a bare
authenticated call (docs/performance.md, relying parties). So each server process keeps them
(:class:`KeptClients`), the way the status rows of POST /v1/status are kept
(jpki.relying_parties.status_lookup.StatusRows), and a **change feed** keeps them in step:

- every change of a client's secret, status, role or scopes stamps ``api_clients.changed_at``,
  and every change of a relying party's status stamps ``relying_parties.updated_at``, in the
  transaction of the change (jpki.access.clients, jpki.relying_parties.service; an UPDATE that
  forgets gets
  the wall clock from the schema, jpki.store.tables). Both are indexed;
- "what changed since *t*" is one statement (``clients.changes_since``), polled at most every
  :data:`REFRESH_SECONDS`; a kept client it names is dropped, and so is every client of a
  relying party it names, or of a service provider whose platform operator it names. The next
  call reads the row again;
- each poll reads from the start of the previous completed poll minus the feed's look-back
  (jpki.change_feed: a change is stamped before its transaction commits); a poll that fails
  leaves that window where it was, so the next one covers the gap; the first poll, and a poll
  that finds the clock moved back, forget everything kept and start the window over.

**What this changes** (the trade-off, accepted and documented in README): a suspension, a
rotation or a deadline made by **this** process takes effect at once (the change drops what
it changed when it commits, :meth:`KeptClients.forget`); made by **another** process (another
worker, or the operator CLI), it takes effect at the next poll — kept credentials are only
used while the last completed poll began less than :data:`MAX_STALE_SECONDS` ago, else the row
is read — so **a suspension is in every answer within a second**, the promise OCSP and the
status lookups make for revocations, where before it was in every answer at once. A secret
that matches nothing kept is checked against the row read again, so a secret just rotated
anywhere works at once everywhere; an old secret past its deadline fails by the clock, kept or
not (jpki.access.clients).

A read racing a change must not be kept after the poll that reported the change: as in
StatusRows, each poll and each local change numbers itself and remembers what it reported,
and a read keeps nothing that a later report names (the next call reads again). Nothing kept is
secret: stored hashes are HMACs under a key that never leaves the HSM (jpki.access.client_secrets).
At most :data:`KEPT_SIZE` clients are kept; the oldest quarter goes first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice

from jpki.change_feed import LOOKBACK, POLL_SECONDS, ChangeWindow
from jpki.model import ClientCredentials
from jpki.ports import Clock, UnitOfWorkFactory

log = logging.getLogger("jpki.auth")

# The pace of the status-change feed's readers (jpki.change_feed), and the same promise: a
# change is in every answer within a second.
REFRESH_SECONDS = POLL_SECONDS
MAX_STALE_SECONDS = 1.0
KEPT_SIZE = 65_536
_REPORTS_REMEMBERED = 64  # a read older than this many reports keeps nothing


class KeptClients:
    """client id → :class:`ClientCredentials` as last read, for the clients seen recently
    (module docstring)."""

    def __init__(self, read_uow: UnitOfWorkFactory, clock: Clock, *, size: int = KEPT_SIZE,
                 refresh_seconds: float = REFRESH_SECONDS,
                 max_stale_seconds: float = MAX_STALE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._read_uow = read_uow
        self._clock = clock
        self._size = size
        self._refresh = refresh_seconds
        self._max_stale = max(max_stale_seconds, refresh_seconds)
        self._monotonic = monotonic
        self._kept: dict[str, ClientCredentials] = {}
        self._lock = threading.Lock()  # _kept (writes), _epoch, _floor, _reports
        self._polling = threading.Lock()  # one poll at a time; may be released by another thread
        self._window = ChangeWindow(LOOKBACK)
        self._polled_at: float | None = None  # when the last completed poll began (monotonic)
        self._epoch = 0  # reports so far: completed polls and local changes
        self._floor = 0  # reads begun before this report keep nothing (everything was forgotten)
        # (report number, client ids, relying-party ids) of the recent reports
        self._reports: deque[tuple[int, frozenset[str], frozenset[str]]] = \
            deque(maxlen=_REPORTS_REMEMBERED)

    def __len__(self) -> int:
        return len(self._kept)

    # --- reading --------------------------------------------------------------------------

    def fresh(self) -> bool:
        """Whether the last completed poll began recently enough to answer from memory."""
        polled = self._polled_at
        return polled is not None and self._monotonic() - polled < self._max_stale

    def get(self, client_id: str) -> ClientCredentials | None:
        """The kept credentials, while fresh; None when not kept or not fresh (read them)."""
        if not self.fresh():
            return None
        return self._kept.get(client_id)

    def read(self, client_id: str) -> ClientCredentials | None:
        """The credentials read from the store now, kept unless a change reported since the
        read began names them."""
        epoch = self._epoch  # before the read (see _keep)
        with self._read_uow() as uow:
            found = uow.clients.credentials(client_id)
        if found is not None:
            self._keep(found, epoch)
        return found

    def _keep(self, found: ClientCredentials, epoch: int) -> None:
        standing = found.standing
        parties = {p for p in (found.relying_party_id, standing and standing.relying_party,
                               standing and standing.parent) if p}
        with self._lock:
            if epoch < self._floor or self._epoch - epoch > len(self._reports):
                return  # everything was forgotten since, or too many reports to tell
            for number, clients, changed in self._reports:
                if number > epoch and (found.client_id in clients or parties & changed):
                    return
            if found.client_id not in self._kept and len(self._kept) >= self._size:
                for client_id in list(islice(self._kept, max(1, len(self._kept) // 4))):
                    del self._kept[client_id]
            self._kept[found.client_id] = found

    # --- keeping in step ----------------------------------------------------------------

    def due(self) -> bool:
        polled = self._polled_at
        return polled is None or self._monotonic() - polled >= self._refresh

    def refresh(self) -> None:
        """Poll when due (the calls' own path): waits for a poll in progress only when what is
        kept is too old to use; a failed poll is logged and leaves the rows unused until one
        succeeds (:meth:`get` then answers None and the caller reads the row)."""
        if not self.due():
            return
        if not self._polling.acquire(blocking=False):
            if self.fresh():
                return  # another thread is polling; what is kept will do meanwhile
            self._polling.acquire()
        try:
            if self.due():
                self._poll_logged()
        finally:
            self._polling.release()

    def claim_poll(self) -> bool:
        """Claim the next poll when it is due and none is running, without blocking (for the
        event loop, which then runs :meth:`run_claimed_poll` on a thread)."""
        return self.due() and self._polling.acquire(blocking=False)

    def run_claimed_poll(self) -> None:
        """The poll :meth:`claim_poll` claimed (errors logged, as in :meth:`refresh`)."""
        try:
            if self.due():
                self._poll_logged()
        finally:
            self._polling.release()

    def release_claim(self) -> None:
        """Give up a claimed poll that could not be started."""
        self._polling.release()

    def poll(self) -> int:
        """Drop what changed since the last poll (and the look-back before it); returns how
        many clients and relying parties the feed reported. Raises when the store cannot be
        read, leaving the window where it was."""
        with self._polling:
            return self._poll()

    def _poll_logged(self) -> None:
        try:
            self._poll()
        except Exception as exc:  # the next call polls again; the type only (no data)
            log.warning("the client change feed could not be read: %s", type(exc).__name__)

    def _poll(self) -> int:
        began = self._monotonic()
        now = self._clock.now()
        since = self._window.since(now)
        start_over = since is None  # the first poll, or the clock moved back
        with self._read_uow() as uow:
            changes = uow.clients.changes_since(now - LOOKBACK if since is None else since)
        clients, parties = changes.clients, changes.relying_parties
        with self._lock:
            self._epoch += 1
            if start_over:
                self._kept.clear()
                self._floor = self._epoch
            else:
                self._drop(clients, parties)
            self._reports.append((self._epoch, clients, parties))
            self._window.advance(now)
            self._polled_at = began
        return len(clients) + len(parties)

    def forget(self, *, clients: Iterable[str] = (),
               relying_parties: Iterable[str] = ()) -> None:
        """A change this process committed: drop what it changed at once, and keep nothing
        read before it."""
        client_ids, parties = frozenset(clients), frozenset(relying_parties)
        with self._lock:
            self._epoch += 1
            self._drop(client_ids, parties)
            self._reports.append((self._epoch, client_ids, parties))

    def _drop(self, clients: frozenset[str], parties: frozenset[str]) -> None:
        # Under self._lock.
        for client_id in clients:
            self._kept.pop(client_id, None)
        if parties:
            for client_id, kept in list(self._kept.items()):
                standing = kept.standing
                if kept.relying_party_id in parties or (standing is not None and (
                        standing.relying_party in parties or standing.parent in parties)):
                    del self._kept[client_id]
