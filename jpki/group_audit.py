"""Group commit for audit records that describe no state change of their own.

Relying-party calls mostly read: a status lookup, a standing consent's latest basic 4
information, a refusal. Each must still leave an audit record in the hash chain **before** its
answer leaves (jpki.audit). Written one transaction per call, those records queue behind each
other on the chain's head row — and on SQLite behind its single writer and an fsync per commit —
so the calls would run at the rate of durable commits, one at a time.

Instead, concurrent calls share a transaction (leader/follower group commit, as databases do for
their logs): a caller queues its record and, if no write is in flight, becomes the leader — it
takes everything queued, runs the records' checks, chains them onto the locked head
(jpki.audit chains and MACs each record as usual) and commits; the callers whose records were in
that batch return only then. The batch is a :class:`jpki.ports.AuditBatch`: in the service, a
plain transaction on a connection of the store's own (jpki.store.audit_writer — a batch cost
about 1 ms of CPU through a unit of work, a third of that there); without one, a unit of work.
Records that arrive during the commit form the next batch, whose first caller is woken to lead
it. Nothing is acknowledged before it is durable, and a failed commit fails every call of its
batch.

A record may carry a ``check`` run inside the batch's transaction before it is staged; a check
that raises refuses that call alone, and one that returns a mapping gives the record its payload
— for a call whose disclosure is decided by what the check reads there (the latest basic 4
information under a standing consent, read with the consent locked, so that a withdrawal
committed in between still refuses the call).

**Callers without a thread to lend.** :meth:`GroupAudit.record` blocks its caller, who may lead
a batch. A caller that must not block — the HTTP layer's event loop, which answers a status or
basic 4 call from memory and only waits for the audit record — uses :meth:`GroupAudit.submit`
instead: the record is queued the same way and ``done`` is called once its batch has committed
(or failed). Such records are led by the group's own writer thread, so a call costs no thread
hop of its own: one thread serves a whole batch.

**Gathering.** Each batch costs a transaction and a durable commit whatever its size, and in a
steady stream of calls the writer, free again, would start the next batch with the one or two
records that arrived meanwhile. So, while batches follow each other closely (the last ended
less than :data:`BUSY_SECONDS` ago), the writer waits up to :data:`GATHER_SECONDS` for as many
records as the last batch held before it starts — PostgreSQL's ``commit_delay`` for the same
reason. A lone caller never waits (its batch of one is as big as the last).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from jpki.audit import AuditLog, JsonValue, Staged, canonical_payload
from jpki.correlation import current_request_id
from jpki.errors import JpkiError
from jpki.model import AuditRecord
from jpki.ports import (
    AuditBatch,
    AuditBatchFactory,
    DisclosureReads,
    GroupAuditUnitOfWork,
    GroupAuditUnitOfWorkFactory,
    StandingConsentReads,
    SuccessorReads,
)

log = logging.getLogger("jpki.audit")

Check = Callable[[DisclosureReads], Mapping[str, JsonValue] | None]


Done = Callable[[BaseException | None], None]


@dataclass(eq=False)
class _Entry:
    actor: str
    action: str
    subject: str
    body: str  # the canonical payload (jpki.audit.canonical_payload)
    check: Check | None
    # Called once committed (None) or failed, for a caller that does not wait (submit); a
    # caller that waits (record) has none and may be handed the lead.
    notify: Done | None = None
    # The caller's request (jpki.correlation): the leader stages everyone's records in its
    # own thread, where the current request is its own.
    request_id: str | None = field(default_factory=current_request_id)
    # Set when a caller waiting in record() may go on (its record committed, or it leads);
    # None for a submitted record, which nobody waits on.
    done: threading.Event | None = None
    lead: bool = False
    error: BaseException | None = None

    def finish(self) -> None:
        if self.notify is None:
            assert self.done is not None
            self.done.set()
            return
        try:
            self.notify(self.error)
        except Exception:  # the caller's callback: never the batch's failure
            log.exception("an audit record's completion callback failed")


# Gathering (module docstring): how long the writer waits for a batch to fill, and how recent
# the last batch must be for it to wait at all.
GATHER_SECONDS = 0.001
BUSY_SECONDS = 0.01


class _UnitOfWorkBatch:
    """An :class:`AuditBatch` in a unit of work: what the group commit runs in when the store
    gives it no connection of its own (``GroupAudit(batches=None)``)."""

    def __init__(self, uow: GroupAuditUnitOfWork) -> None:
        self._uow = uow

    @property
    def consents(self) -> StandingConsentReads:
        return self._uow.consents

    @property
    def certificates(self) -> SuccessorReads:
        return self._uow.certificates

    def head(self) -> tuple[int, str]:
        return self._uow.audit.head(for_update=True)

    def append(self, records: Sequence[AuditRecord]) -> None:
        self._uow.audit.append_many(records)
        self._uow.audit.set_head(records[-1].seq, records[-1].mac)

    def commit(self) -> None:
        self._uow.commit()


class GroupAudit:
    """``batches``: the store's transactions for the group commit on a connection of its own
    (jpki.store.audit_writer: plain statements, no unit of work); without it, each batch runs
    in a unit of work of ``uow_factory``."""

    def __init__(self, uow_factory: GroupAuditUnitOfWorkFactory, audit: AuditLog,
                 max_batch: int = 512, gather_seconds: float = GATHER_SECONDS,
                 batches: AuditBatchFactory | None = None) -> None:
        self._uow = uow_factory
        self._batches = batches or self._unit_of_work_batch
        self._audit = audit
        self._max_batch = max_batch
        self._gather_seconds = gather_seconds
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a record was submitted
        self._pending: list[_Entry] = []
        self._busy = False
        # Leads the batches whose first record nobody waits for (submit); made on first use.
        self._writer: ThreadPoolExecutor | None = None
        self._last_size = 0  # records in the writer's last batch
        self._want = 0  # while the writer gathers: the records it waits for
        self._last_end = -BUSY_SECONDS  # when it ended (monotonic)

    def record(self, *, actor: str, action: str, subject: str,
               payload: Mapping[str, JsonValue] | None = None,
               check: Check | None = None) -> None:
        """Append one record to the chain; return once it is committed (or raise)."""
        # Personal-data keys are refused here, in the caller.
        entry = _Entry(actor, action, subject, canonical_payload(payload or {}), check,
                       done=threading.Event())
        with self._lock:
            self._pending.append(entry)
            if not self._busy:
                self._busy = entry.lead = True
        if not entry.lead:
            assert entry.done is not None
            entry.done.wait()
            if not entry.lead:  # committed (or failed) in a batch someone else led
                if entry.error is not None:
                    raise entry.error
                return
        self._lead()
        if entry.error is not None:
            raise entry.error

    def submit(self, *, actor: str, action: str, subject: str, done: Done,
               payload: Mapping[str, JsonValue] | None = None,
               check: Check | None = None) -> None:
        """Queue one record and return at once; ``done(None)`` once it is committed, or
        ``done(error)`` — called on the writer's thread, never the caller's. Personal-data keys
        are refused here, in the caller, as by :meth:`record`."""
        entry = _Entry(actor, action, subject, canonical_payload(payload or {}), check,
                       notify=done)
        with self._lock:
            self._pending.append(entry)
            if self._busy:
                # A gathering writer is woken once, when its batch is full, not per record.
                if self._want and len(self._pending) >= self._want:
                    self._arrived.notify()
                return  # the leader in charge takes it with the next batch
            self._busy = True
        self._start_writer()

    def close(self) -> None:
        """Stop the writer thread once it has led what is queued."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)

    @contextmanager
    def _unit_of_work_batch(self) -> Iterator[AuditBatch]:
        with self._uow() as uow:
            yield _UnitOfWorkBatch(uow)

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="audit-writer")
            writer = self._writer
        writer.submit(self._write)

    def _write(self) -> None:
        # The writer leads batch after batch while nobody waiting is next in line.
        while True:
            self._gather()
            size = len(self._pending)
            again = self._lead(from_writer=True)
            self._last_size, self._last_end = min(size, self._max_batch), time.monotonic()
            if not again:
                return

    def _gather(self) -> None:
        """Wait for the batch to fill while batches follow each other (module docstring)."""
        if self._gather_seconds <= 0 or time.monotonic() - self._last_end > BUSY_SECONDS:
            return
        deadline = time.monotonic() + self._gather_seconds
        with self._lock:
            self._want = self._last_size
            try:
                while len(self._pending) < self._last_size:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self._arrived.wait(left)
            finally:
                self._want = 0

    def _lead(self, *, from_writer: bool = False) -> bool:
        """Lead one batch; True when the writer thread should lead the next one too."""
        with self._lock:
            batch = self._pending[:self._max_batch]
            del self._pending[:self._max_batch]
        records: list[AuditRecord] = []
        try:
            with self._batches() as tx:
                staged: list[Staged] = []
                for entry in batch:
                    body = entry.body
                    if entry.check is not None:
                        try:
                            made = entry.check(tx)
                            if made is not None:
                                # What record() does with a given payload: personal-data keys
                                # refuse this call, not the batch.
                                body = canonical_payload(made)
                        except (JpkiError, ValueError) as exc:
                            entry.error = exc
                            continue
                    staged.append(self._audit.staged(
                        actor=entry.actor, action=entry.action, subject=entry.subject,
                        body=body, request_id=entry.request_id))
                if staged:
                    # The head is locked last, after what the checks locked: the order every
                    # writer of the chain takes its locks in (jpki.audit).
                    seq, prev = tx.head()
                    records = self._audit.chained(seq, prev, staged)
                    tx.append(records)
                tx.commit()
        except BaseException as exc:
            records = []
            for entry in batch:
                entry.error = entry.error or exc
        finally:
            if records:  # committed
                self._audit.observed(records)
            again = start_writer = False
            with self._lock:
                if self._pending:
                    successor = self._pending[0]
                    if successor.notify is None:  # a caller waiting in record(): it leads
                        successor.lead = True
                        assert successor.done is not None
                        successor.done.set()
                    elif from_writer:
                        again = True
                    else:
                        start_writer = True
                else:
                    self._busy = False
            for entry in batch:  # a waiting leader is batch[0]; the rest wait for this
                entry.finish()
            if start_writer:
                self._start_writer()
        return again
