"""Answering an OCSP request (RFC 6960, with the RFC 5019 lightweight profile and RFC 8954 nonces).

1. Parse (jpki.revocation.ocsp.requests); what cannot be parsed is ``malformedRequest``.
2. Find the issuer of every CertID (jpki.revocation.ocsp.issuers); one we do not answer for, or
   one whose generation has no responder certificate, is ``unauthorized``. A request naming
   several issuers is ``malformedRequest``: one response is signed by one responder.
3. A single certificate without a nonce is answered from the response cache
   (jpki.revocation.ocsp.cache): memory, then the database copy — the latter only once this
   process has reconciled the stored responses with the status changes (jobs.StatusRefresh) —
   and on a miss signed now, under the in-flight cap, and cached. A serial we never issued is
   answered ``unknown`` and never cached: it may be issued a moment later.
4. A nonce, or several certificates, is answered by a live signature with the nonce echoed —
   while fewer than ``max_live_signatures`` are in flight; beyond that a single certificate
   gets the cached response without the nonce, which RFC 8954 §2.1 allows, and anything else
   ``tryLater``: never an error storm, never an unbounded queue in front of the HSM.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from jpki.change_feed import RECONCILE_SECONDS
from jpki.errors import InternalError
from jpki.ports import Clock, KeyStore, StatusChangeFeed
from jpki.revocation.ocsp.cache import CachedResponse, ResponseCache
from jpki.revocation.ocsp.issuers import RESPONDERS_RELOAD_SECONDS, IssuerEntry, IssuerRegistry
from jpki.revocation.ocsp.jobs import (
    Presigner,
    Signing,
    StatusRefresh,
    StoredCheck,
    StoredResponseCheck,
)
from jpki.revocation.ocsp.ports import OcspStore, ResponseKey
from jpki.revocation.ocsp.requests import (
    INTERNAL_ERROR,
    MALFORMED,
    TRY_LATER,
    UNAUTHORIZED,
    CertQuestion,
    MalformedOcspRequest,
    ParsedRequest,
    parse_request,
)
from jpki.revocation.ocsp.signer import ResponseSigner
from jpki.revocation.ocsp.statuses import UNKNOWN, OcspStatus, expected

log = logging.getLogger("jpki.ocsp")


@dataclass(frozen=True)
class Answer:
    """The DER OCSPResponse to send. ``cached`` and ``key`` are set when it is a response of the
    cache that HTTP caches may keep too (a single certificate, no nonce): the HTTP layer answers
    the same request bytes from ``cache.fresh(key)`` next time (api.ocsp_http)."""

    der: bytes
    cached: CachedResponse | None = None
    key: ResponseKey | None = None


class OcspResponder:
    """The responder of one process: its issuers, its cache, its signer, and its jobs."""

    def __init__(self, store: OcspStore, feed: StatusChangeFeed, keys: KeyStore, clock: Clock,
                 *, validity: timedelta = timedelta(hours=1), max_live_signatures: int = 8,
                 cache_size: int = 200_000, reconcile_seconds: float = RECONCILE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self.validity = validity
        self.issuers = IssuerRegistry(store, monotonic)
        self.cache = ResponseCache(store, clock, validity, cache_size)
        self.signer = ResponseSigner(keys, validity)
        signing = Signing(self.issuers, self.signer, self.cache)
        self.refresher = StatusRefresh(feed, store, signing, clock,
                                       reconcile_seconds=reconcile_seconds, monotonic=monotonic)
        self.presigner = Presigner(store, signing, clock)
        self.checker = StoredResponseCheck(store, signing, clock)
        self._live = threading.BoundedSemaphore(max_live_signatures)

    # --- answering ------------------------------------------------------------------------

    def respond(self, der: bytes) -> Answer:
        """Answer one OCSP request (DER); never raises for bad input."""
        try:
            request = parse_request(der)
        except MalformedOcspRequest:
            return Answer(MALFORMED)
        try:
            return self.answer(request)
        except MalformedOcspRequest:
            return Answer(MALFORMED)
        except InternalError as exc:
            # A response that failed its lints or whose signature did not verify: a fault of
            # ours, never of the request — said once per answer, by its code only.
            log.error("OCSP response not signed: %s", exc.code)
            return Answer(INTERNAL_ERROR)
        except Exception:  # the database or the HSM unreachable: counted by the metrics
            return Answer(INTERNAL_ERROR)

    def answer(self, request: ParsedRequest) -> Answer:
        entries: list[tuple[CertQuestion, IssuerEntry]] = []
        for q in request.questions:
            issuer = self.issuers.for_question(q)
            if issuer is None or issuer.responder is None:
                return Answer(UNAUTHORIZED)
            entries.append((q, issuer))
        questions = [q for q, _ in entries]
        issuer = entries[0][1]
        if any(other.generation_id != issuer.generation_id for _, other in entries):
            raise MalformedOcspRequest("one issuer per request")
        single = ResponseKey(issuer.generation_id, questions[0].hash_algorithm,
                             questions[0].serial) if len(questions) == 1 else None
        if single is not None and request.nonce is None:
            return self._cacheable(single, questions[0], issuer)
        # A nonce, or several certificates: a live signature under the in-flight cap.
        if not self._live.acquire(blocking=False):
            hit = self._served(single) if single is not None else None
            if hit is not None:
                return Answer(hit.der)  # RFC 8954 §2.1: the nonce may be ignored
            return Answer(TRY_LATER)
        try:
            now = self._clock.now()  # before the statuses are read (ResponseSigner.sign)
            statuses = self._statuses(questions, issuer, now)
            answers = list(zip(questions, statuses, strict=True))
            return Answer(self.signer.sign(issuer, answers, now, request.nonce).der)
        finally:
            self._live.release()

    def _cacheable(self, key: ResponseKey, q: CertQuestion, issuer: IssuerEntry) -> Answer:
        hit = self._served(key)
        if hit is not None:
            return Answer(hit.der, hit, key)
        if not self._live.acquire(blocking=False):
            return Answer(TRY_LATER)
        try:
            now = self._clock.now()
            (status,) = self._statuses([q], issuer, now)
            signed = self.signer.sign(issuer, [(q, status)], now)
        finally:
            self._live.release()
        if status is UNKNOWN:
            return Answer(signed.der)  # never cached: a serial unknown now may be issued soon
        (cached,) = self.cache.keep([(key, signed)])
        return Answer(cached.der, cached, key)

    def _served(self, key: ResponseKey) -> CachedResponse | None:
        """The response the cache would serve: kept in memory, or stored — the stored copy only
        once this process has reconciled what is stored with the status changes."""
        hit = self.cache.fresh(key)
        if hit is not None:
            return hit
        if not self.refresher.started:
            self.refresher.run()
        return self.cache.load(key)

    def _statuses(self, questions: Sequence[CertQuestion], issuer: IssuerEntry,
                  now: datetime) -> list[OcspStatus]:
        """What each certificate's status is at ``now``, read in one statement."""
        rows = {r.serial: r for r in
                self._store.status_rows([format(q.serial, "x") for q in questions])}
        return [expected(rows.get(format(q.serial, "x")), issuer.generation_id, now)
                for q in questions]

    # --- the jobs, for the app and the CLI ------------------------------------------------

    def reload(self) -> None:
        """Re-read CA generations and their responder certificates (after a rollover or a
        responder renewal)."""
        self.issuers.reload()

    def refresh(self) -> int:
        """One poll of the status-change feed (jobs.StatusRefresh): how many responses it
        re-signed. The app runs it at start and every POLL_SECONDS (jobs.follow_status_changes).
        Once a minute it also re-reads the responder certificates, which the maintenance job
        renews in whichever process holds the lease (issuers.RESPONDERS_RELOAD_SECONDS)."""
        self.issuers.reload_if_older(RESPONDERS_RELOAD_SECONDS)
        return self.refresher.run()

    def feed_lag_seconds(self) -> float | None:
        return self.refresher.lag_seconds()

    def presign_missing(self, algorithm: str = "sha1", *, limit: int | None = None,
                        workers: int = 4, batch: int = 500) -> int:
        return self.presigner.run(algorithm, limit=limit, workers=workers, batch=batch)

    def presign_backlog(self, algorithm: str = "sha1", *, limit: int = 1_000_000,
                        sample_rows: int | None = None) -> int:
        return self.presigner.backlog(algorithm, limit=limit, sample_rows=sample_rows)

    def verify_stored(self, *, repair: bool = True, page: int = 1000,
                      report: int = 100) -> StoredCheck:
        return self.checker.run(repair=repair, page=page, report=report)
