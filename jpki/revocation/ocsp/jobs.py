"""The OCSP responder's jobs: keeping what it serves in step with the status-change feed, signing
ahead of time, and checking what is stored.

**The refresh** (:class:`StatusRefresh`), fed by the status-change feed
(:class:`jpki.ports.StatusChangeFeed`; jpki.change_feed says how it is read). Every serving
process runs it every :data:`~jpki.change_feed.POLL_SECONDS` (:func:`follow_status_changes`,
which the app starts, architecture §5.5): each stored or kept response of a changed certificate is
compared with the store; one that still says what the store says stays — so N workers re-sign a
change once, not N times, and re-reading a change costs no signature — and one that contradicts
it is deleted, from the database first so that no process loads it again, and re-signed. The
first run of a process (:func:`reconcile_at_start`, before the first request), one after the
clock moved back and one every ``reconcile_seconds`` reconcile every change newer than the
oldest response that may still be served (the responses' own production times, not the clock of
the new process): a response stored before a restart is never served against a change recorded
while no process was refreshing — killed between acknowledging a revocation and re-signing, or
stopped while `jpki cert revoke` ran. Until that first reconciliation has run, no stored response
is served (:attr:`StatusRefresh.started`). A failed run leaves the window where it was: the next
one covers the gap.

**Signing ahead** (:class:`Presigner`, `jpki ocsp presign`): a response for every unexpired
certificate that has none the cache would serve, by chunks.

**Checking what is stored** (:class:`StoredResponseCheck`, `jpki ocsp verify`): every stored
response against the store — status, CertID, signature — and, when asked, re-signing what is
wrong.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp as c_ocsp

from jpki.change_feed import LOOKBACK, POLL_SECONDS, RECONCILE_SECONDS, ChangeWindow
from jpki.model import StatusChange, StatusRow, StoredOcspResponse
from jpki.ports import Clock, StatusChangeFeed
from jpki.revocation.ocsp.cache import ResponseCache
from jpki.revocation.ocsp.issuers import IssuerRegistry
from jpki.revocation.ocsp.ports import HashName, OcspStore, ResponseKey
from jpki.revocation.ocsp.requests import HASHES, hash_name_of
from jpki.revocation.ocsp.signer import ResponseSigner, SigningJob
from jpki.revocation.ocsp.statuses import UNKNOWN, contradiction, expected, status_of

log = logging.getLogger("jpki.ocsp")
T = TypeVar("T")
InThread = Callable[[Callable[[], T]], Awaitable[T]]


def _hash_name(name: str) -> HashName | None:
    for known in HASHES:
        if name == known:
            return known
    return None


@dataclass(frozen=True)
class Signing:
    """What every job that signs needs: the issuers, the signer and the cache the signed
    responses go to."""

    issuers: IssuerRegistry
    signer: ResponseSigner
    cache: ResponseCache

    def sign_and_keep(self, jobs: Sequence[SigningJob], now: datetime,
                      pool: ThreadPoolExecutor | None = None) -> int:
        """Sign one response per job at ``now``, keep them (memory and database); how many."""
        if not jobs:
            return 0
        if pool is None:
            with ThreadPoolExecutor(max_workers=min(4, len(jobs))) as own:
                responses = self.signer.sign_each(jobs, now, own)
        else:
            responses = self.signer.sign_each(jobs, now, pool)
        self.cache.keep([(ResponseKey(issuer.generation_id, q.hash_algorithm, q.serial), r)
                         for (q, issuer, _), r in zip(jobs, responses, strict=True)])
        return len(responses)

    def resign(self, wrong: Sequence[tuple[StoredOcspResponse, StatusRow | None]],
               now: datetime) -> int:
        """Sign again, from the rows given (read after ``now`` was taken: see
        :meth:`ResponseSigner.sign`), the responses these stored ones should have been. One that
        would now say unknown is left to be signed live on request, as any unknown is."""
        jobs: list[SigningJob] = []
        for stored, row in wrong:
            issuer = self.issuers.of_generation(stored.ca_generation_id)
            status = expected(row, stored.ca_generation_id, now)
            algorithm = _hash_name(stored.hash_algorithm)
            if issuer is None or issuer.responder is None or status is UNKNOWN \
                    or algorithm is None:
                continue
            jobs.append((issuer.question(algorithm, int(stored.serial, 16)), issuer, status))
        return self.sign_and_keep(jobs, now)


# --- the refresh, fed by the status-change feed ---------------------------------------------


class StatusRefresh:
    """Brings stored and kept responses in line with the status changes (module docstring).
    One run at a time."""

    def __init__(self, feed: StatusChangeFeed, store: OcspStore, signing: Signing,
                 clock: Clock, *, reconcile_seconds: float = RECONCILE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._feed = feed
        self._store = store
        self._signing = signing
        self._cache = signing.cache
        self._clock = clock
        self._reconcile_seconds = reconcile_seconds
        self._monotonic = monotonic
        # Where this process is in the feed, and when it last reconciled everything servable.
        self._window = ChangeWindow()
        self._reconciled_at: float | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        """Whether a run has completed: until then no stored response may be served."""
        return self._window.mark is not None

    def run(self) -> int:
        """One poll of the feed (a reconciliation when due); how many responses it re-signed."""
        with self._lock:
            began = self._monotonic()
            now = self._clock.now()
            since = self._window.since(now)
            full = since is None or self._reconciled_at is None \
                or began - self._reconciled_at >= self._reconcile_seconds
            if full:
                oldest = self._store.oldest_servable(now)
                if oldest is None:
                    # Nothing stored may be served, nor anything kept (it was stored too).
                    self._cache.clear()
                    since = now - LOOKBACK if since is None else since
                else:
                    since = oldest - LOOKBACK if since is None \
                        else min(since, oldest - LOOKBACK)
            changes = self._feed.changes_since(since)
            stored = self._store.stored_for([c.row.serial for c in changes]) if changes else []
            resigned = self._correct(changes, stored, now)
            self._window.advance(now)
            if full:
                self._reconciled_at = began
            return resigned

    def lag_seconds(self) -> float | None:
        """How old a status change may be and still not be reflected in what this process
        serves: the time since its last complete poll began (None before the first). Grows
        without bound while polls fail — what an operator alerts on."""
        mark = self._window.mark
        return None if mark is None else max(0.0, (self._clock.now() - mark).total_seconds())

    def _correct(self, changes: Sequence[StatusChange], stored: Sequence[StoredOcspResponse],
                 now: datetime) -> int:
        """Forget kept responses that contradict these changes; delete and re-sign the stored
        ones that do."""
        if not changes:
            return 0
        rows = {c.row.serial: c.row for c in changes}
        contradicted = []
        for row in rows.values():
            status = status_of(row, now)
            for algorithm in HASHES:
                key = ResponseKey(row.ca_generation_id, algorithm, int(row.serial, 16))
                kept = self._cache.kept(key)
                if kept is not None and contradiction(kept.der, status):
                    contradicted.append(key)
        self._cache.forget(contradicted)
        wrong = [s for s in stored
                 if contradiction(s.der, expected(rows.get(s.serial), s.ca_generation_id, now))]
        if not wrong:
            return 0
        # Deleted first, in one statement: from here on no process loads them, and a request
        # in the meantime is signed from the store as it is now.
        self._cache.delete([ResponseKey.of(s) for s in wrong])
        return self._signing.resign([(s, rows.get(s.serial)) for s in wrong], now)


async def reconcile_at_start(refresh: Callable[[], object], in_thread: InThread[object]) -> None:
    """The first refresh of a serving process, before its first request: responses stored
    before it started are reconciled with the changes recorded meanwhile. Should it fail (the
    database is down), the responder reconciles before it serves a stored response, or answers
    internalError."""
    try:
        await in_thread(refresh)
    except Exception as exc:  # keep starting; report the type only
        log.error("OCSP reconciliation at start failed: %s", type(exc).__name__)


async def follow_status_changes(refresh: Callable[[], object], in_thread: InThread[object], *,
                                every: float = POLL_SECONDS) -> None:
    """Run ``refresh`` on a thread every ``every`` seconds until cancelled: the "within one
    second" promised for status changes (architecture §5.5), with room for re-signing."""
    while True:
        await asyncio.sleep(every)
        try:
            await in_thread(refresh)
        except Exception as exc:  # keep serving; report the type only
            log.error("OCSP refresh failed: %s", type(exc).__name__)


# --- signing ahead ----------------------------------------------------------------------------


class Presigner:
    """Signs ahead of time a response for every unexpired certificate that has none the cache
    would serve (`jpki ocsp presign`; RFC 5019 clients use SHA-1 CertIDs)."""

    def __init__(self, store: OcspStore, signing: Signing, clock: Clock) -> None:
        self._store = store
        self._signing = signing
        self._clock = clock

    def backlog(self, algorithm: str = "sha1", *, limit: int = 1_000_000,
                sample_rows: int | None = None) -> int:
        """How many :meth:`run` would sign now, counted up to ``limit`` (estimated from a
        sample of ``sample_rows`` on a much larger store, if given)."""
        now = self._clock.now()
        return self._store.count_missing(algorithm, self._signing.cache.fresh_from(now), now,
                                         limit, sample_rows)

    def run(self, algorithm: str = "sha1", *, limit: int | None = None, workers: int = 4,
            batch: int = 500) -> int:
        """Sign what is missing; how many were signed.

        By chunks of ``batch``: the chunk's statuses in one read, the signatures on ``workers``
        threads, the responses stored in one transaction — where one response at a time cost two
        units of work and a commit each, and ran at a seventh of the HSM's rate
        (docs/performance.md)."""
        name = _hash_name(algorithm)
        if name is None:
            raise ValueError(f"no CertID hash algorithm {algorithm!r}")
        issuers = self._signing.issuers
        issuers.reload()  # a batch job: a rollover or a responder renewal may have come since
        signed = 0
        # Keyset paging: each chunk starts after the last certificate of the one before, so
        # one run reads the certificates once. Restarting from the first row every chunk read
        # the whole signed prefix again each time: quadratic in the backlog (docs/scale.md).
        after = 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            while limit is None or signed < limit:
                now = self._clock.now()  # before the statuses are read (ResponseSigner.sign)
                take = batch if limit is None else min(batch, limit - signed)
                fresh_from = self._signing.cache.fresh_from(now)
                found = self._store.missing(name, fresh_from, now, take, after)
                if not found:
                    break  # nothing left
                after = found[-1][0]
                todo = []
                for _, gid, serial in found:
                    issuer = issuers.of_generation(gid)
                    if issuer is not None and issuer.responder is not None:
                        todo.append((issuer, serial))
                if not todo:
                    continue  # only certificates of issuers without a responder: page on
                rows = {r.serial: r for r in
                        self._store.status_rows([serial for _, serial in todo])}
                jobs: list[SigningJob] = [
                    (issuer.question(name, int(serial, 16)), issuer, status_of(rows[serial], now))
                    for issuer, serial in todo if serial in rows]
                if not jobs:
                    continue
                signed += self._signing.sign_and_keep(jobs, now, pool)
        return signed


# --- checking what is stored ------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFinding:
    serial: str
    hash_algorithm: str
    ca_generation_id: int
    why: str


@dataclass
class StoredCheck:
    """What :class:`StoredResponseCheck` found: responses checked (unexpired), expired ones
    skipped, those that contradict the store or are not ours (the first ``report`` of them in
    ``findings``), and how many were re-signed."""

    checked: int = 0
    expired: int = 0
    contradicted: int = 0
    resigned: int = 0
    findings: list[StoredFinding] = field(default_factory=list)


class StoredResponseCheck:
    """`jpki ocsp verify`: every stored response against the store."""

    def __init__(self, store: OcspStore, signing: Signing, clock: Clock) -> None:
        self._store = store
        self._signing = signing
        self._clock = clock

    def run(self, *, repair: bool = True, page: int = 1000, report: int = 100) -> StoredCheck:
        """Check every stored response — the status it gives (good, revoked with the same time
        and reason, nextUpdate not past a scheduled revocation), its CertID, and its signature
        by a responder certificate of its CA generation — and, with ``repair``, delete and
        re-sign each that fails. Expired responses are counted and skipped: nothing serves
        them. Streams the table by pages (bounded memory)."""
        self._signing.issuers.reload()
        check = StoredCheck()
        after: StoredOcspResponse | None = None
        while True:
            now = self._clock.now()  # before the page's statuses are read (ResponseSigner.sign)
            stored = self._store.stored_after(after, page)
            if not stored:
                break
            rows = {r.serial: r for r in
                    self._store.status_rows(sorted({s.serial for s in stored}))}
            after = stored[-1]
            wrong = []
            for s in stored:
                if s.next_update <= now:
                    check.expired += 1
                    continue
                check.checked += 1
                row = rows.get(s.serial)
                why = contradiction(s.der, expected(row, s.ca_generation_id, now)) \
                    or self._not_ours(s)
                if why:
                    check.contradicted += 1
                    if len(check.findings) < report:
                        check.findings.append(StoredFinding(s.serial, s.hash_algorithm,
                                                            s.ca_generation_id, why))
                    wrong.append((s, row))
            if repair and wrong:
                self._signing.cache.delete([ResponseKey.of(s) for s, _ in wrong])
                check.resigned += self._signing.resign(wrong, now)
        return check

    def _not_ours(self, stored: StoredOcspResponse) -> str | None:
        """Why ``stored`` is not a response its CA generation's responder signed for its
        certificate, or None."""
        issuer = self._signing.issuers.of_generation(stored.ca_generation_id)
        try:
            response = c_ocsp.load_der_ocsp_response(stored.der)
            single = next(iter(response.responses))
            if issuer is None or single.serial_number != int(stored.serial, 16) \
                    or hash_name_of(single.hash_algorithm) != stored.hash_algorithm \
                    or single.issuer_key_hash != issuer.key_hashes.get(stored.hash_algorithm) \
                    or single.issuer_name_hash != issuer.name_hashes.get(stored.hash_algorithm):
                return "its CertID names another certificate or issuer"
            embedded = [c.public_bytes(serialization.Encoding.DER)
                        for c in response.certificates]
            signer = next((der for der in embedded if der in issuer.responder_certificates),
                          None)
            if signer is None:
                return "not signed by a responder certificate of its CA generation"
            key = x509.load_der_x509_certificate(signer).public_key()
            if not isinstance(key, rsa.RSAPublicKey) \
                    or response.signature_hash_algorithm is None:
                return "not signed by a responder certificate of its CA generation"
            key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(),
                       response.signature_hash_algorithm)
        except InvalidSignature:
            return "its signature does not verify"
        except (ValueError, StopIteration):
            return "not a single-certificate OCSP response"
        return None
