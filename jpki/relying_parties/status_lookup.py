"""Batch status lookups for relying parties (POST /v1/status, scope ``status``).

Up to :data:`MAX_BATCH` serials per call; for each, the status **OCSP gives** (jpki.revocation.ocsp)
and the
CRLs carry:

- ``revoked`` — revoked or on hold at this instant (reason ``certificateHold`` for a hold), or an
  issuance intent that was abandoned (OCSP answers those as revoked, reason unspecified, from the
  instant they were abandoned; architecture §3);
- ``good`` — anything else we issued, including a certificate whose revocation is scheduled for
  a later instant (an emigrant's departure date) and one whose hold was released; an intent still
  being signed is ``good`` too, as OCSP answers it;
- ``unknown`` — no certificate of ours has this serial.

Besides OCSP's answer each result says what the certificate is — ``form`` (card or mobile) and
``usage`` (sign or auth) — and its notAfter, with ``expired`` for one past it: OCSP keeps
answering ``good`` for an expired, unrevoked certificate (RFC 6960 §2.2 leaves it to the CA) and
the CRLs stop listing revoked ones after expiry, so the relying party checks validity itself.

**Where the statuses come from.** A status is read from the store once and then kept in memory
(:class:`StatusRows`), the way the OCSP responder keeps its signed responses: every status
change (revocation, hold, release, abandonment) writes ``revocation_recorded_at``
(jpki.lifecycle.revocation.set_revocation, release_hold), and the same "changed since" poll that
refreshes OCSP's cache (``status_changes_since``, re-reading a few seconds) corrects the kept
rows. The poll runs on demand, on the calls' own path: a call finding the last poll older than
:data:`REFRESH_SECONDS` polls first (one statement, a few times a second at most); a call that
finds another call polling answers from the rows as they are, only while the last completed
poll is younger than :data:`MAX_STALE_SECONDS`, else it waits for the poll. So a status change
committed at *t* is in every answer given from *t* + 1 s on — the bound of OCSP's own refresh
(jpki.change_feed.POLL_SECONDS, then re-signing) — whether or not a background task runs.
Unknown serials are never kept (a serial unknown now may be issued a moment later): they are
read from the store on every call, with the misses of the call, in one statement in a read-only
unit of work. Nothing kept is personal data (serial, kind, status, notAfter, revocation).

Each call is audited once (count, unknown count and a SHA-256 of the request's serials, never
the list: a batch of 1,000 would swell the chain) before the answer leaves — in a group commit
shared with concurrent calls (jpki.group_audit).

The HTTP layer answers a call whose serials are all kept, while the last poll is within the
stale bound, in its event loop (:meth:`StatusLookup.lookup_from_memory`): the rows from memory,
the audit record submitted to the group commit's writer, the answer sent once it has committed;
a due poll is started on a thread and not waited for. Anything else — a serial not kept, no
recent poll — goes to :meth:`StatusLookup.lookup` on a thread, as before.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Literal, NamedTuple

from jpki.access.authz import Operation
from jpki.audit import JsonValue
from jpki.change_feed import LOOKBACK, POLL_SECONDS
from jpki.errors import InvalidInput, InvalidSerial, TooLarge
from jpki.group_audit import Done, GroupAudit
from jpki.model import CertStatus, StatusRow
from jpki.ports import Clock
from jpki.relying_parties.ports import StatusUnitOfWorkFactory
from jpki.relying_parties.service import RpContext
from jpki.serials import parse_serial

log = logging.getLogger("jpki.rp")

MAX_BATCH = 1000
_CANONICAL = re.compile(r"[1-9a-f][0-9a-f]{0,39}")
# A batch of canonical serials, one per line: what relying parties send, checked with one match
# instead of one per serial (a quarter of a status call's own work in the event loop).
_CANONICAL_LINES = re.compile(r"[1-9a-f][0-9a-f]{0,39}(?:\n[1-9a-f][0-9a-f]{0,39})*")
# The pace and the look-back of the OCSP responder's refresh: both read the status-change feed
# the same way (jpki.change_feed), so that both answer from the same changes.
REFRESH_SECONDS = POLL_SECONDS
# The oldest poll an answer may rest on: a change is in every answer from a second on.
MAX_STALE_SECONDS = 1.0
CACHE_SIZE = 200_000  # rows kept (about 60 MB when full); the oldest quarter goes first
_POLLS_REMEMBERED = 64  # a fill older than this many polls keeps nothing (see StatusRows._keep)


class BatchTooLarge(TooLarge):
    code = "status.batch_too_large"
    title = "Too many serials in one call"


class EmptyBatch(InvalidInput):
    code = "status.batch_empty"
    title = "No serial to look up"


class SerialStatus(NamedTuple):  # a tuple: up to 1,000 of them are made per call
    serial: str
    status: str  # good | revoked | unknown
    reason: str | None  # RFC 5280 CRLReason name, when revoked
    revoked_at: datetime | None
    form: str | None  # card | mobile
    usage: str | None  # sign | auth
    not_after: datetime | None
    expired: bool | None


@dataclass(frozen=True)
class StatusAnswer:
    produced_at: datetime
    results: list[SerialStatus]


def _revoked(row: StatusRow, now: datetime) -> bool:
    """OCSP's rule (jpki.revocation.ocsp.statuses.status_of): abandoned, or revoked at or before
    ``now``."""
    return row.status is CertStatus.ABANDONED or (
        row.revoked_at is not None and row.revoked_at <= now)


def status_for(serial: str, row: StatusRow | None, now: datetime) -> SerialStatus:
    """OCSP's answer for one serial (the rule of jpki.revocation.ocsp.statuses.status_of), plus
    what it is."""
    if row is None:
        return SerialStatus(serial=serial, status="unknown", reason=None, revoked_at=None,
                            form=None, usage=None, not_after=None, expired=None)
    revoked = _revoked(row, now)
    return SerialStatus(
        serial=serial, status="revoked" if revoked else "good",
        reason=row.revocation_reason.rfc_name if revoked and row.revocation_reason is not None
        else None,
        revoked_at=row.revoked_at if revoked else None,
        form="mobile" if row.kind.is_mobile else "card",
        usage="sign" if row.kind.is_signing else "auth",
        not_after=row.not_after, expired=now > row.not_after)


def canonical_serials(serials: list[str]) -> list[str]:
    if not serials:
        raise EmptyBatch("send 1 to 1,000 serials", field="serials")
    if len(serials) > MAX_BATCH:
        raise BatchTooLarge(f"at most {MAX_BATCH} serials per call", limit=MAX_BATCH,
                            received=len(serials))
    try:
        joined = "\n".join(serials)
    except TypeError:  # not all text: each is looked at below
        joined = ""
    # As many lines as serials: no serial holds a line feed of its own.
    if _CANONICAL_LINES.fullmatch(joined) and joined.count("\n") == len(serials) - 1:
        return list(serials)
    out = []
    for index, text in enumerate(serials):
        if isinstance(text, str) and _CANONICAL.fullmatch(text):
            out.append(text)  # already lower-case hex without leading zeros
            continue
        try:
            out.append(parse_serial(text) if isinstance(text, str) else parse_serial(""))
        except InvalidSerial as exc:
            raise InvalidSerial(exc.detail, field="serials", index=index) from exc
    return out


class _Kept:
    """A kept row and its answers. The answer changes only where the row's revocation takes
    effect and at its notAfter, so there are four at most: one per (revoked now, expired now),
    each made once (and then the same object, which the HTTP layer's encoding memo relies on)."""

    __slots__ = ("answers", "row")

    def __init__(self, row: StatusRow) -> None:
        self.row = row
        self.answers: list[SerialStatus | None] = [None, None, None, None]

    def answer(self, now: datetime) -> SerialStatus:
        row = self.row
        index = 2 * _revoked(row, now) + (now > row.not_after)
        found = self.answers[index]
        if found is None:
            found = self.answers[index] = status_for(row.serial, row, now)
        return found


class StatusRows:
    """serial → status row, for serials looked up before, kept in step with the store by the
    poll of the OCSP responder's cache (module docstring).

    A fill (the rows of a call's misses) races with the polls: a row read just before a change
    committed must not be kept after the poll that reported the change has passed. Each poll
    numbers itself and remembers the serials it reported; a fill notes the number before it
    reads and keeps none of the serials reported by a later poll (the next call reads them
    again). A poll that finds the clock moved back forgets every row: its look-back, measured
    on that clock, could miss changes recorded in between.
    """

    def __init__(self, read_uow: StatusUnitOfWorkFactory, clock: Clock, *, size: int = CACHE_SIZE,
                 refresh_seconds: float = REFRESH_SECONDS,
                 max_stale_seconds: float = MAX_STALE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._read_uow = read_uow
        self._clock = clock
        self._size = size
        self._refresh = refresh_seconds
        self._max_stale = max(max_stale_seconds, refresh_seconds)
        self._monotonic = monotonic
        self._kept: dict[str, _Kept] = {}
        self._lock = threading.Lock()  # _kept (writes), _epoch, _floor, _reported, _watermark
        self._polling = threading.Lock()  # one poll at a time
        self._polled_at: float | None = None  # when the last completed poll began (monotonic)
        self._watermark: datetime | None = None  # its clock instant: the next look-back's base
        self._epoch = 0  # completed polls
        self._floor = 0  # fills begun before this poll keep nothing (the clock moved back)
        self._reported: deque[tuple[int, frozenset[str]]] = deque(maxlen=_POLLS_REMEMBERED)

    def __len__(self) -> int:
        return len(self._kept)

    def answers(self, serials: list[str], now: datetime) -> list[SerialStatus]:
        """OCSP's answer at ``now`` for each serial, in order."""
        self._keep_fresh()
        kept = self._kept
        found = [kept.get(s) for s in serials]
        missing = {s for s, k in zip(serials, found, strict=True) if k is None}
        if missing:
            read = self._read(sorted(missing))
            found = [k if k is not None else read.get(s)
                     for s, k in zip(serials, found, strict=True)]
        return [k.answer(now) if k is not None else status_for(s, None, now)
                for s, k in zip(serials, found, strict=True)]

    def from_memory(self, serials: list[str], now: datetime) -> list[SerialStatus] | None:
        """:meth:`answers` from the kept rows alone — never the store — or None when a serial
        is not kept or the last completed poll is older than the stale bound. For a caller that
        must not block (the HTTP layer's event loop); it starts a due poll elsewhere
        (:meth:`claim_poll`)."""
        polled = self._polled_at
        if polled is None or self._monotonic() - polled >= self._max_stale:
            return None
        kept = self._kept
        found = []
        for serial in serials:
            entry = kept.get(serial)
            if entry is None:
                return None
            found.append(entry.answer(now))
        return found

    def claim_poll(self) -> bool:
        """Claim the due poll when none is running, without blocking; the claimant runs it
        (:meth:`run_claimed_poll`) on a thread of its choice."""
        polled = self._polled_at
        due = polled is None or self._monotonic() - polled >= self._refresh
        return due and self._polling.acquire(blocking=False)

    def run_claimed_poll(self) -> None:
        """The poll :meth:`claim_poll` claimed. A failure is logged: the next call polls again,
        and while none succeeds the rows go unused once the stale bound has passed."""
        try:
            self._poll()
        except Exception as exc:  # the type only
            log.warning("the status-change feed could not be read: %s", type(exc).__name__)
        finally:
            self._polling.release()

    def release_claim(self) -> None:
        self._polling.release()

    # --- freshness ------------------------------------------------------------------------

    def _keep_fresh(self) -> None:
        polled = self._polled_at
        if polled is not None and self._monotonic() - polled < self._refresh:
            return
        if not self._polling.acquire(blocking=False):
            # Another call is polling: the rows as they are will do while the last completed
            # poll is recent enough; otherwise wait for this one.
            if polled is not None and self._monotonic() - polled < self._max_stale:
                return
            self._polling.acquire()
        try:
            polled = self._polled_at
            if polled is None or self._monotonic() - polled >= self._refresh:
                self._poll()
        finally:
            self._polling.release()

    def poll(self) -> int:
        """Correct the kept rows with the status changes recorded since the last poll (and
        the second before it); returns how many changed rows were read. The calls poll when
        it is due; this is for whoever wants it sooner (a test, a server task)."""
        with self._polling:
            return self._poll()

    def _poll(self) -> int:
        began = self._monotonic()
        now = self._clock.now()
        watermark = self._watermark
        moved_back = watermark is not None and now < watermark
        mark = (now if watermark is None or moved_back else watermark) - LOOKBACK
        with self._read_uow() as uow:
            changed = {c.row.serial: _Kept(c.row)
                       for c in uow.certificates.status_changes_since(mark)}
        with self._lock:
            self._epoch += 1
            if moved_back:
                self._kept.clear()
                self._floor = self._epoch
            for serial, entry in changed.items():
                if serial in self._kept:
                    self._kept[serial] = entry
            self._reported.append((self._epoch, frozenset(changed)))
            self._watermark = now
            self._polled_at = began
        return len(changed)

    # --- filling --------------------------------------------------------------------------

    def _read(self, serials: list[str]) -> dict[str, _Kept]:
        epoch = self._epoch  # before the read (see _keep)
        with self._read_uow() as uow:
            read = {r.serial: _Kept(r) for r in uow.certificates.status_rows(serials)}
        self._keep(read, epoch)
        return read

    def _keep(self, read: dict[str, _Kept], epoch: int) -> None:
        with self._lock:
            if epoch < self._floor or self._epoch - epoch > len(self._reported):
                return  # the clock moved back, or too many polls passed to tell
            since: set[str] = set()
            for number, serials in self._reported:
                if number > epoch:
                    since |= serials
            if len(self._kept) + len(read) > self._size:
                drop = len(self._kept) // 4 + len(read)
                for serial in list(islice(self._kept, drop)):
                    del self._kept[serial]
            for serial, entry in read.items():
                if serial not in since:
                    self._kept[serial] = entry


class StatusLookup:
    def __init__(self, read_uow: StatusUnitOfWorkFactory, clock: Clock, *, group: GroupAudit,
                 rows: StatusRows | None = None) -> None:
        self._clock = clock
        self._group = group
        self.rows = rows or StatusRows(read_uow, clock)

    def lookup(self, ctx: RpContext[Literal[Operation.RP_STATUS]], purpose: str,
               serials: list[str]) -> StatusAnswer:
        purpose, wanted = self._validated(ctx, purpose, serials)
        now = self._clock.now()
        results = self.rows.answers(wanted, now)
        # The answer leaves only after its audit record has committed.
        self._group.record(actor=ctx.actor, action="rp.status", subject=ctx.rp_id,
                           payload=self._payload(purpose, wanted, results))
        return StatusAnswer(produced_at=now, results=results)

    def lookup_from_memory(self, ctx: RpContext[Literal[Operation.RP_STATUS]], purpose: str,
                           serials: list[str],
                           done: Done) -> StatusAnswer | None:
        """:meth:`lookup` without blocking, for the HTTP layer's event loop: the answer from
        the kept rows alone, with its audit record submitted to the group commit — the answer
        may leave only once ``done(None)`` has been called (``done(error)``: it may not). None
        when the rows need the store (a serial not kept, no recent poll): then nothing was
        submitted, and :meth:`lookup` on a thread does it all. Bad input raises here."""
        purpose, wanted = self._validated(ctx, purpose, serials)
        now = self._clock.now()
        results = self.rows.from_memory(wanted, now)
        if results is None:
            return None
        self._group.submit(actor=ctx.actor, action="rp.status", subject=ctx.rp_id,
                           payload=self._payload(purpose, wanted, results), done=done)
        return StatusAnswer(produced_at=now, results=results)

    @staticmethod
    def _validated(ctx: RpContext[Literal[Operation.RP_STATUS]], purpose: str,
                   serials: list[str]) -> tuple[str, list[str]]:
        ctx.grant.require(Operation.RP_STATUS)
        return ctx.require_purpose(purpose), canonical_serials(serials)

    @staticmethod
    def _payload(purpose: str, wanted: list[str],
                 results: list[SerialStatus]) -> dict[str, JsonValue]:
        digest = hashlib.sha256("\n".join(wanted).encode("ascii")).hexdigest()
        return {"purpose": purpose, "count": len(wanted),
                "unknown": sum(r.status == "unknown" for r in results),
                "serials_sha256": digest}
