"""The OCSP responder (RFC 6960, with the RFC 5019 lightweight profile and RFC 8954 nonces).

How a request is answered:

1. Parse. Single-certificate requests (RFC 5019) go through cryptography's Rust parser (~2 µs);
   anything it refuses is parsed again with asn1crypto, which also takes several certificates
   per request; what neither accepts is ``malformedRequest``.
2. Find the issuer: the CertID's issuerNameHash/issuerKeyHash (SHA-1 or SHA-256) against every
   CA generation; no match is ``unauthorized`` (RFC 6960 §2.3: not a CA we answer for).
3. Answer from the cache of responses **signed ahead of time** (a response per certificate,
   CertID hash algorithm and status), valid ``validity`` and re-signed at half-life; a miss is
   signed now and cached. The cache is kept per process and mirrored in the database so every
   worker and restart shares it.
4. A request carrying a nonce gets a fresh response with the nonce echoed, signed live — but
   only while fewer than ``max_live_signatures`` such signatures are in flight; beyond that it
   gets the cached response without nonce, which RFC 8954 §2.1 allows, and never an error storm.

Status changes (revocation, hold, release) reach the cache through :meth:`OcspResponder.refresh`,
which the server polls several times a second (the status-change feed, jpki.change_feed): every
stored or kept response of a changed certificate is compared with the store, and one that
contradicts it is deleted — so no process loads it again — and re-signed, so the new status is
served within a second. The first poll of a process, and one every
:data:`~jpki.change_feed.RECONCILE_SECONDS`, reconcile every change newer than the oldest response
that may still be served (the responses' own production times, not the clock of the new
process): a response stored before a restart is never served against a change recorded while
no process was refreshing — killed between acknowledging a revocation and re-signing, or stopped
while `jpki cert revoke` ran. Until that first reconciliation has run, no stored response is
served. A revocation scheduled for the future (emigration) caps the nextUpdate of the "good"
response at that instant. ``jpki ocsp verify`` (:meth:`OcspResponder.verify_stored`) checks every
stored response — status, CertID, signature — against the store and re-signs what is wrong.

Responses are signed by the delegated responder certificate of the issuing CA generation (RFC 6960
§4.2.2.2), whose key lives in the HSM; the certificate is included so clients can verify it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp as c_ocsp

from jpki.authority.ca import CaService
from jpki.authority.recipe import Recipe
from jpki.change_feed import LOOKBACK, RECONCILE_SECONDS, ChangeWindow
from jpki.der import SEQUENCE, header
from jpki.model import (
    CaGeneration,
    CertStatus,
    RevocationReason,
    StatusChange,
    StatusRow,
    StoredOcspResponse,
)
from jpki.ports import Clock, KeyStore, UnitOfWorkFactory

RELOAD_SECONDS = 5.0
MAX_REQUEST_BYTES = 4096  # RFC 5019 §5: GET requests up to 255 bytes; POSTs stay small
# RFC 6960 §4.1.1 allows a list of CertIDs; each is answered (and a nonce'd request signed
# live), so one request may not ask for the whole store.
MAX_CERTS_PER_REQUEST = 32
HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}


def _status_only(status: str) -> bytes:
    der: bytes = asn1_ocsp.OCSPResponse({"response_status": status}).dump()
    return der


# RFC 6960 §4.2.1: unsigned error responses.
MALFORMED = _status_only("malformed_request")
INTERNAL_ERROR = _status_only("internal_error")
TRY_LATER = _status_only("try_later")
UNAUTHORIZED = _status_only("unauthorized")


class MalformedOcspRequest(ValueError):
    pass


@dataclass(frozen=True)
class CertQuestion:
    hash_algorithm: str  # "sha1" | "sha256"
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int


@dataclass(frozen=True)
class ParsedRequest:
    questions: tuple[CertQuestion, ...]
    nonce: bytes | None


_C_HASHES = {hashes.SHA1: "sha1", hashes.SHA256: "sha256"}


def parse_request(der: bytes) -> ParsedRequest:
    if not der or len(der) > MAX_REQUEST_BYTES:
        raise MalformedOcspRequest("empty or oversized request")
    try:
        req = c_ocsp.load_der_ocsp_request(der)
        name = _C_HASHES.get(type(req.hash_algorithm))
        if name is None:
            raise MalformedOcspRequest("unsupported CertID hash algorithm")
        nonce = None
        with contextlib.suppress(x509.ExtensionNotFound):
            nonce = req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        return ParsedRequest((CertQuestion(name, req.issuer_name_hash, req.issuer_key_hash,
                                           req.serial_number),), nonce)
    except MalformedOcspRequest:
        raise
    except Exception:
        return _parse_general(der)


def _parse_general(der: bytes) -> ParsedRequest:
    try:
        req = asn1_ocsp.OCSPRequest.load(der, strict=True)
        tbs = req["tbs_request"]
        questions = []
        for item in tbs["request_list"]:
            cert_id = item["req_cert"]
            algorithm = cert_id["hash_algorithm"]["algorithm"].native
            if algorithm not in HASHES:
                raise MalformedOcspRequest("unsupported CertID hash algorithm")
            questions.append(CertQuestion(algorithm, cert_id["issuer_name_hash"].native,
                                          cert_id["issuer_key_hash"].native,
                                          cert_id["serial_number"].native))
        nonce = None
        for ext in tbs["request_extensions"] or []:
            if ext["extn_id"].native == "nonce":
                nonce = ext["extn_value"].parsed.native
            elif ext["critical"].native:
                raise MalformedOcspRequest("unsupported critical request extension")
        if not questions or len(questions) > MAX_CERTS_PER_REQUEST:
            raise MalformedOcspRequest(f"1 to {MAX_CERTS_PER_REQUEST} certificates per request")
        return ParsedRequest(tuple(questions), nonce)
    except MalformedOcspRequest:
        raise
    except Exception as exc:
        raise MalformedOcspRequest("not a DER OCSPRequest") from exc


@dataclass(frozen=True)
class ResponderIdentity:
    generation_id: int
    key_label: str
    certificate_der: bytes
    key_hash: bytes  # SHA-1 of the responder's subjectPublicKey: ResponderID byKey


@dataclass(frozen=True)
class IssuerEntry:
    generation: CaGeneration
    name_hashes: dict[str, bytes]
    key_hashes: dict[str, bytes]


def _issuer_entry(gen: CaGeneration) -> IssuerEntry:
    cert = asn1_x509.Certificate.load(gen.certificate_der)
    name = cert.subject.dump()
    key = bytes(cert.public_key["public_key"].contents[1:])  # BIT STRING minus unused-bits
    return IssuerEntry(gen, {a: h(name).digest() for a, h in HASHES.items()},
                       {a: h(key).digest() for a, h in HASHES.items()})


@dataclass
class CachedResponse:
    der: bytes
    this_update: datetime
    next_update: datetime
    etag: str = field(default="")

    def __post_init__(self) -> None:
        if not self.etag:
            self.etag = '"' + hashlib.sha256(self.der).hexdigest()[:32] + '"'


CacheKey = tuple[int, str, int]  # (generation id, hash algorithm, serial)


@dataclass(frozen=True)
class Answer:
    der: bytes
    cached: CachedResponse | None  # set when the answer may be cached by HTTP caches


@dataclass(frozen=True)
class StoredFinding:
    serial: str
    hash_algorithm: str
    ca_generation_id: int
    why: str


@dataclass
class StoredCheck:
    """What :meth:`OcspResponder.verify_stored` found: responses checked (unexpired), expired
    ones skipped, those that contradict the store or are not ours (the first ``report`` of
    them in ``findings``), and how many were re-signed."""

    checked: int = 0
    expired: int = 0
    contradicted: int = 0
    resigned: int = 0
    findings: list[StoredFinding] = field(default_factory=list)


class OcspResponder:
    def __init__(self, uow_factory: UnitOfWorkFactory, keys: KeyStore, clock: Clock,
                 recipe: Recipe, cas: CaService, *, validity: timedelta = timedelta(hours=1),
                 max_live_signatures: int = 8, cache_size: int = 200_000,
                 read_uow: UnitOfWorkFactory | None = None,
                 reconcile_seconds: float = RECONCILE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._uow = uow_factory
        # Everything but storing a signed response only reads. On SQLite a read-only unit of
        # work neither takes the writer's lock nor queues behind it (jpki.store.engine), so the
        # refresh poll and cache misses never wait on issuance or on each other.
        self._read_uow = read_uow or uow_factory
        self._keys = keys
        self._clock = clock
        self._recipe = recipe
        self._cas = cas
        self.validity = validity
        self._cache: OrderedDict[CacheKey, CachedResponse] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._live = threading.BoundedSemaphore(max_live_signatures)
        self._issuers: list[IssuerEntry] = []
        self._responders: dict[int, ResponderIdentity] = {}
        # The status-change feed (jpki.change_feed): where this process's polls are, when it
        # last reconciled everything servable, and one poll at a time.
        self._window = ChangeWindow()
        self._reconcile_seconds = reconcile_seconds
        self._reconciled_at: float | None = None
        self._monotonic = monotonic
        self._refresh_lock = threading.Lock()
        self.reload()

    # --- issuers and responder certificates -------------------------------------------

    def reload(self) -> None:
        """Re-read CA generations and their newest responder certificates (after a rollover or
        a responder renewal)."""
        with self._read_uow() as uow:
            gens = list(uow.cas.generations())
            responders = {}
            for gen in gens:
                latest = list(uow.cas.responders(gen.id or 0))
                if latest:
                    r = max(latest, key=lambda x: x.not_after)
                    spki = asn1_x509.Certificate.load(r.certificate_der).public_key
                    responders[gen.id or 0] = ResponderIdentity(
                        gen.id or 0, r.key_label, r.certificate_der,
                        hashlib.sha1(bytes(spki["public_key"].contents[1:])).digest())  # noqa: S324
        self._issuers = [_issuer_entry(g) for g in gens]
        self._responders = responders
        self._reloaded = time.monotonic()

    def issuer_for(self, q: CertQuestion) -> IssuerEntry | None:
        for entry in self._issuers:
            if (entry.name_hashes[q.hash_algorithm] == q.issuer_name_hash
                    and entry.key_hashes[q.hash_algorithm] == q.issuer_key_hash):
                return entry
        # Perhaps a generation created since (a rollover by the CLI): look again, at most
        # every few seconds so that requests for foreign issuers cannot hammer the database.
        if not self._issuers or time.monotonic() - self._reloaded > RELOAD_SECONDS:
            self.reload()
            return next((e for e in self._issuers
                         if e.name_hashes[q.hash_algorithm] == q.issuer_name_hash
                         and e.key_hashes[q.hash_algorithm] == q.issuer_key_hash), None)
        return None

    def _issuer_of_generation(self, generation_id: int) -> IssuerEntry | None:
        return next((e for e in self._issuers if e.generation.id == generation_id), None)

    # --- answering ----------------------------------------------------------------------

    def cached(self, key: CacheKey) -> CachedResponse | None:
        """The in-memory fast path: a fresh pre-signed response, or None."""
        entry = self._cache.get(key)
        if entry is None:
            return None
        now = self._clock.now()
        if now >= entry.next_update or now - entry.this_update >= self.validity / 2:
            return None  # stale (or due for re-signing at half-life)
        return entry

    def respond(self, der: bytes) -> Answer:
        """Answer one OCSP request (DER); never raises for bad input."""
        return self.respond_keyed(der)[0]

    def respond_keyed(self, der: bytes) -> tuple[Answer, CacheKey | None]:
        """The answer, and the cache key of a single-certificate request without nonce (so
        the HTTP layer can answer the same request bytes from :meth:`cached` next time)."""
        try:
            request = parse_request(der)
        except MalformedOcspRequest:
            return Answer(MALFORMED, None), None
        try:
            answer = self.answer(request)
        except Exception:
            return Answer(INTERNAL_ERROR, None), None
        key = None
        if answer.cached is not None and request.nonce is None and len(request.questions) == 1:
            q = request.questions[0]
            issuer = self.issuer_for(q)
            if issuer is not None:
                key = (issuer.generation.id or 0, q.hash_algorithm, q.serial)
        return answer, key

    def answer(self, request: ParsedRequest) -> Answer:
        entries = []
        for q in request.questions:
            issuer = self.issuer_for(q)
            if issuer is None or (issuer.generation.id or 0) not in self._responders:
                return Answer(UNAUTHORIZED, None)
            entries.append((q, issuer))
        if len(entries) == 1 and request.nonce is None:
            q, issuer = entries[0]
            key = (issuer.generation.id or 0, q.hash_algorithm, q.serial)
            hit = self.cached(key) or self._load(key)
            if hit is not None:
                return Answer(hit.der, hit)
            if not self._live.acquire(blocking=False):
                return Answer(TRY_LATER, None)
            try:
                fresh, statuses = self._sign([(q, issuer)], None)
            finally:
                self._live.release()
            if statuses == ["unknown"]:
                # Never cached: a serial unknown now may be issued a moment later.
                return Answer(fresh.der, None)
            self._store(key, fresh)
            return Answer(fresh.der, fresh)
        # A nonce, or several certificates: a live signature under the in-flight cap.
        if not self._live.acquire(blocking=False):
            if len(entries) == 1:
                q, issuer = entries[0]
                key = (issuer.generation.id or 0, q.hash_algorithm, q.serial)
                hit = self.cached(key) or self._load(key)
                if hit is not None:
                    return Answer(hit.der, hit)  # RFC 8954 §2.1: the nonce may be ignored
            return Answer(TRY_LATER, None)
        try:
            return Answer(self._sign(entries, request.nonce)[0].der, None)
        finally:
            self._live.release()

    def _statuses(self, asked: Sequence[tuple[int, int]], now: datetime) -> list[_Status]:
        """(good|revoked|unknown, revocation time, reason, scheduled revocation time) for each
        (serial, generation id), read in one statement."""
        with self._read_uow() as uow:
            rows = {r.serial: r for r in
                    uow.certificates.status_rows([format(serial, "x") for serial, _ in asked])}
        out: list[_Status] = []
        for serial, generation_id in asked:
            row = rows.get(format(serial, "x"))
            out.append(_status_of(row, now) if row is not None
                       and row.ca_generation_id == generation_id else UNKNOWN_STATUS)
        return out

    def _sign(self, entries: Sequence[tuple[CertQuestion, IssuerEntry]],
              nonce: bytes | None, *, now: datetime | None = None,
              statuses_read: Sequence[_Status] | None = None,
              ) -> tuple[CachedResponse, list[str]]:
        """Sign one response for ``entries``. ``now`` (thisUpdate) must be taken *before* the
        statuses are read — given, or read here — so that a change recorded after the read is
        never older than the response (refresh() re-signs what is not younger than a change)."""
        now = now or self._clock.now()
        generation_id = entries[0][1].generation.id or 0
        responder = self._responders[generation_id]
        next_update = now + self.validity
        singles = []
        statuses = []
        if any((issuer.generation.id or 0) != generation_id for _, issuer in entries):
            raise MalformedOcspRequest("one issuer per request")
        if statuses_read is None:
            statuses_read = self._statuses([(q.serial, generation_id) for q, _ in entries], now)
        for (q, _), (status, revoked_at, reason, scheduled) in zip(entries, statuses_read,
                                                                   strict=True):
            statuses.append(status)
            if scheduled is not None:
                next_update = min(next_update, scheduled)
            singles.append(_single_response(q, status, revoked_at, reason, now,
                                            now + self.validity))
        for s in singles:
            s["next_update"] = next_update
        response_data: dict[str, object] = {
            "responder_id": asn1_ocsp.ResponderId({"by_key": responder.key_hash}),
            "produced_at": now,
            "responses": _responses(singles),
        }
        if nonce is not None:
            response_data["response_extensions"] = [{
                "extn_id": "nonce", "critical": False,
                "extn_value": asn1_core.OctetString(nonce)}]
        tbs = asn1_ocsp.ResponseData(response_data)
        tbs_der = tbs.dump()
        key = self._keys.rsa_key(responder.key_label)
        signature = key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA256())
        basic = asn1_ocsp.BasicOCSPResponse({
            "tbs_response_data": tbs,
            "signature_algorithm": asn1_algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}),
            "signature": signature,
            "certs": [asn1_x509.Certificate.load(responder.certificate_der)],
        })
        der = asn1_ocsp.OCSPResponse({
            "response_status": "successful",
            "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
        }).dump()
        return CachedResponse(der=der, this_update=now, next_update=next_update), statuses

    # --- the cache ------------------------------------------------------------------------

    def _store(self, key: CacheKey, response: CachedResponse) -> None:
        self._store_many([(key, response)])

    def _load(self, key: CacheKey) -> CachedResponse | None:
        """The database copy, signed by another worker or before a restart — served only once
        this process has reconciled the stored responses with the status changes (refresh)."""
        if self._window.mark is None:
            self.refresh()
        with self._read_uow() as uow:
            row = uow.ocsp.get(key[0], key[1], format(key[2], "x"))
        if row is None:
            return None
        der, this_update, next_update = row
        response = CachedResponse(der=der, this_update=this_update, next_update=next_update)
        now = self._clock.now()
        if now >= next_update or now - this_update >= self.validity / 2:
            return None
        with self._lock:
            self._cache[key] = response
        return response

    def refresh(self) -> int:
        """Bring stored and kept responses in line with the status changes recorded since the
        last poll (re-reading :data:`~jpki.change_feed.LOOKBACK` before it); returns how many
        responses were re-signed. The server calls this several times a second.

        The first call of a process, one after the clock moved back, and one every
        ``reconcile_seconds`` read every change newer than the oldest response that may still be
        served (jpki.change_feed). Each stored or kept response of a changed certificate is
        compared with the store: one that says what the store says stays — so N workers re-sign
        a change once, not N times, and re-reading a change costs no signature — and one that
        contradicts it is dropped, deleted from the database and re-signed. A failed poll
        leaves the window where it was: the next one covers the gap.
        """
        with self._refresh_lock:
            started = self._monotonic()
            now = self._clock.now()
            since = self._window.since(now)
            full = since is None or self._reconciled_at is None \
                or started - self._reconciled_at >= self._reconcile_seconds
            with self._read_uow() as uow:
                if full:
                    oldest = uow.ocsp.oldest_servable(now)
                    if oldest is None:
                        # Nothing stored may be served: only what this process keeps.
                        with self._lock:
                            self._cache.clear()
                        since = now - LOOKBACK if since is None else since
                    else:
                        since = oldest - LOOKBACK if since is None \
                            else min(since, oldest - LOOKBACK)
                assert since is not None
                changes = list(uow.certificates.status_changes_since(since))
                stored = uow.ocsp.entries_for([c.row.serial for c in changes]) if changes \
                    else []
            resigned = self._correct(changes, stored, now)
            self._window.advance(now)
            if full:
                self._reconciled_at = started
            return resigned

    def feed_lag_seconds(self) -> float | None:
        """How old a status change may be and still not be reflected in what this process
        serves: the time since its last complete poll began (None before the first). Grows
        without bound while polls fail — what an operator alerts on."""
        mark = self._window.mark
        return None if mark is None else max(0.0, (self._clock.now() - mark).total_seconds())

    def presign_backlog(self, algorithm: str = "sha1", *, limit: int = 1_000_000) -> int:
        """How many unexpired certificates have no response signed in the last half-validity
        (what ``presign_missing`` would sign), counted up to ``limit``."""
        now = self._clock.now()
        with self._read_uow() as uow:
            return uow.ocsp.count_missing(algorithm, now - self.validity / 2, now, limit)

    def _correct(self, changes: Sequence[StatusChange], stored: Sequence[StoredOcspResponse],
                 now: datetime) -> int:
        """Drop kept responses that contradict these changes; delete and re-sign the stored
        ones that do."""
        if not changes:
            return 0
        rows = {c.row.serial: c.row for c in changes}
        with self._lock:
            for row in rows.values():
                for algorithm in HASHES:
                    key = (row.ca_generation_id, algorithm, int(row.serial, 16))
                    kept = self._cache.get(key)
                    if kept is not None and _contradiction(kept.der, _status_of(row, now)):
                        del self._cache[key]
        wrong = [s for s in stored
                 if _contradiction(s.der, _expected(rows.get(s.serial), s.ca_generation_id, now))]
        if not wrong:
            return 0
        # Deleted first, in one statement: from here on no process loads them, and a request
        # in the meantime is signed from the store as it is now.
        with self._uow() as uow:
            uow.ocsp.delete([(s.ca_generation_id, s.hash_algorithm, s.serial) for s in wrong])
            uow.commit()
        with self._lock:
            for s in wrong:
                self._cache.pop((s.ca_generation_id, s.hash_algorithm, int(s.serial, 16)), None)
        return self._resign([(s, rows.get(s.serial)) for s in wrong], now)

    def _resign(self, wrong: Sequence[tuple[StoredOcspResponse, StatusRow | None]],
                now: datetime) -> int:
        """Sign again, from the rows given (read after ``now`` was taken: see _sign), the
        responses these stored ones should have been; store them."""
        from concurrent.futures import ThreadPoolExecutor

        jobs = []
        for s, row in wrong:
            issuer = self._issuer_of_generation(s.ca_generation_id)
            expected = _expected(row, s.ca_generation_id, now)
            if issuer is None or s.ca_generation_id not in self._responders \
                    or expected is UNKNOWN_STATUS:
                continue  # nothing to serve for it ahead of time: a request signs it live
            q = CertQuestion(s.hash_algorithm, issuer.name_hashes[s.hash_algorithm],
                             issuer.key_hashes[s.hash_algorithm], int(s.serial, 16))
            jobs.append((q, issuer, expected))
        if not jobs:
            return 0
        with ThreadPoolExecutor(max_workers=min(4, len(jobs))) as pool:
            responses = list(pool.map(partial(self._sign_one, now), jobs))
        self._store_many([((issuer.generation.id or 0, q.hash_algorithm, q.serial), response)
                          for (q, issuer, _), response in zip(jobs, responses, strict=True)])
        return len(responses)

    def verify_stored(self, *, repair: bool = True, page: int = 1000,
                      report: int = 100) -> StoredCheck:
        """Check every stored response against the store — the status it gives (good, revoked
        with the same time and reason, nextUpdate not past a scheduled revocation), its CertID,
        and its signature by a responder certificate of its CA generation — and, with
        ``repair``, delete and re-sign each that fails. Expired responses are counted and
        skipped: nothing serves them. Streams the table by pages (bounded memory)."""
        self.reload()
        check = StoredCheck()
        after: tuple[int, str, str] | None = None
        while True:
            now = self._clock.now()  # before the page's statuses are read (see _sign)
            with self._read_uow() as uow:
                stored = uow.ocsp.stored_after(after, page)
                if not stored:
                    break
                rows = {r.serial: r for r in
                        uow.certificates.status_rows(sorted({s.serial for s in stored}))}
                signers = {gid: [r.certificate_der for r in uow.cas.responders(gid)]
                           for gid in {s.ca_generation_id for s in stored}}
            after = (stored[-1].ca_generation_id, stored[-1].hash_algorithm, stored[-1].serial)
            wrong = []
            for s in stored:
                if s.next_update <= now:
                    check.expired += 1
                    continue
                check.checked += 1
                row = rows.get(s.serial)
                why = _contradiction(s.der, _expected(row, s.ca_generation_id, now)) \
                    or self._not_ours(s, signers.get(s.ca_generation_id, []))
                if why:
                    check.contradicted += 1
                    if len(check.findings) < report:
                        check.findings.append(StoredFinding(s.serial, s.hash_algorithm,
                                                            s.ca_generation_id, why))
                    wrong.append((s, row))
            if repair and wrong:
                with self._uow() as uow:
                    uow.ocsp.delete([(s.ca_generation_id, s.hash_algorithm, s.serial)
                                     for s, _ in wrong])
                    uow.commit()
                with self._lock:
                    for s, _ in wrong:
                        self._cache.pop((s.ca_generation_id, s.hash_algorithm,
                                         int(s.serial, 16)), None)
                check.resigned += self._resign(wrong, now)
        return check

    def _not_ours(self, stored: StoredOcspResponse, signers: Sequence[bytes]) -> str | None:
        """Why ``stored`` is not a response this CA generation's responder signed for this
        certificate, or None."""
        issuer = self._issuer_of_generation(stored.ca_generation_id)
        try:
            response = c_ocsp.load_der_ocsp_response(stored.der)
            single = next(iter(response.responses))
            if single.serial_number != int(stored.serial, 16) \
                    or issuer is None or _C_HASHES.get(type(single.hash_algorithm)) \
                    != stored.hash_algorithm \
                    or single.issuer_key_hash != issuer.key_hashes[stored.hash_algorithm] \
                    or single.issuer_name_hash != issuer.name_hashes[stored.hash_algorithm]:
                return "its CertID names another certificate or issuer"
            embedded = [c.public_bytes(serialization.Encoding.DER)
                        for c in response.certificates]
            signer = next((der for der in embedded if der in signers), None)
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

    def presign_missing(self, algorithm: str = "sha1", *, limit: int | None = None,
                        workers: int = 4, batch: int = 500) -> int:
        """Sign ahead of time a response for every unexpired certificate that has none signed
        in the last half-validity (RFC 5019 clients use SHA-1 CertIDs); returns how many.

        By chunks of ``batch``: the chunk's statuses in one read, the signatures on ``workers``
        threads (the HSM session pool signs in parallel, python-pkcs11 releasing the GIL), the
        responses stored in one transaction — where one response at a time cost two units of
        work and a commit each, and ran at a seventh of the HSM's rate (docs/performance.md)."""
        from concurrent.futures import ThreadPoolExecutor

        self.reload()  # a batch job: a rollover or a responder renewal may have come since
        signed = 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            while limit is None or signed < limit:
                now = self._clock.now()  # before the statuses are read (see _sign)
                take = batch if limit is None else min(batch, limit - signed)
                with self._read_uow() as uow:
                    todo = [(gid, serial) for gid, serial in
                            uow.ocsp.missing(algorithm, now - self.validity / 2, now, take)
                            if gid in self._responders]
                    rows = {r.serial: r for r in
                            uow.certificates.status_rows([serial for _, serial in todo])}
                if not todo:
                    break  # nothing left, or only certificates of issuers without a responder
                jobs = []
                for gid, serial_hex in todo:
                    issuer = self._issuer_of_generation(gid)
                    row = rows.get(serial_hex)
                    if issuer is None or row is None:
                        continue
                    q = CertQuestion(algorithm, issuer.name_hashes[algorithm],
                                     issuer.key_hashes[algorithm], int(serial_hex, 16))
                    jobs.append((q, issuer, _status_of(row, now)))
                if not jobs:
                    break
                responses = list(pool.map(partial(self._sign_one, now), jobs))
                self._store_many([((issuer.generation.id or 0, algorithm, q.serial), response)
                                  for (q, issuer, _), response in zip(jobs, responses,
                                                                      strict=True)])
                signed += len(responses)
        return signed

    def _sign_one(self, now: datetime,
                  job: tuple[CertQuestion, IssuerEntry, _Status]) -> CachedResponse:
        q, issuer, status = job
        return self._sign([(q, issuer)], None, now=now, statuses_read=[status])[0]

    def _store_many(self, signed: Sequence[tuple[CacheKey, CachedResponse]]) -> None:
        with self._lock:
            for key, response in signed:
                self._cache[key] = response
                self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        with self._uow() as uow:
            uow.ocsp.put_many([(k[0], k[1], format(k[2], "x"), r.der, r.this_update,
                                r.next_update) for k, r in signed])
            uow.commit()


_Status = tuple[str, datetime | None, RevocationReason | None, datetime | None]
UNKNOWN_STATUS: _Status = ("unknown", None, None, None)


class _HasStatus(Protocol):
    @property
    def status(self) -> CertStatus: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def revocation_reason(self) -> RevocationReason | None: ...


def _status_of(cert: _HasStatus, now: datetime) -> _Status:
    """(good|revoked, revocation time, reason, scheduled revocation time) of a certificate or
    its status row. A revocation may be recorded ahead of its date (Certificate.is_revoked)."""
    if cert.status is CertStatus.ABANDONED or (cert.revoked_at is not None
                                               and cert.revoked_at <= now):
        return "revoked", cert.revoked_at, cert.revocation_reason, None
    scheduled = cert.revoked_at if cert.revoked_at is not None and cert.revoked_at > now \
        else None
    return "good", None, None, scheduled


def _expected(row: StatusRow | None, generation_id: int, now: datetime) -> _Status:
    """What a response for this certificate, asked of the CA generation ``generation_id``,
    must say at ``now``."""
    if row is None or row.ca_generation_id != generation_id:
        return UNKNOWN_STATUS
    return _status_of(row, now)


def _contradiction(der: bytes, expected: _Status) -> str | None:
    """Why the signed response ``der`` would tell a client something other than ``expected``
    (see _status_of), or None when it agrees. A "good" response agrees only if it expires no
    later than a scheduled revocation."""
    status, revoked_at, reason, scheduled = expected
    try:
        response = c_ocsp.load_der_ocsp_response(der)
        if response.response_status is not c_ocsp.OCSPResponseStatus.SUCCESSFUL:
            return "not a successful response"
        single = next(iter(response.responses))
    except (ValueError, StopIteration):
        return "not a single-certificate OCSP response"
    said = single.certificate_status
    if status == "unknown":
        return None if said is c_ocsp.OCSPCertStatus.UNKNOWN else \
            f"says {said.name.lower()}, the store knows no such certificate of this issuer"
    if status == "good":
        if said is not c_ocsp.OCSPCertStatus.GOOD:
            return f"says {said.name.lower()}, the store says good"
        next_update = single.next_update_utc
        if scheduled is not None and (next_update is None or next_update > scheduled):
            return "says good past the scheduled revocation"
        return None
    if said is not c_ocsp.OCSPCertStatus.REVOKED:
        return f"says {said.name.lower()}, the store says revoked"
    if single.revocation_time_utc != revoked_at:
        return "gives another revocation time"
    given = single.revocation_reason.value if single.revocation_reason is not None else None
    wanted = None if reason is None or reason is RevocationReason.UNSPECIFIED else reason.rfc_name
    if given != wanted:
        return "gives another revocation reason"
    return None


def _responses(singles: list[dict[str, object]]) -> asn1_ocsp.Responses:
    """The SEQUENCE OF SingleResponse. Each single is encoded alone and the list loaded from
    their concatenation: asn1crypto re-encodes a SequenceOf whole on every element it appends
    from native values, which made a 32-certificate response cost 100 ms (quadratic)."""
    body = b"".join(asn1_ocsp.SingleResponse(s).dump() for s in singles)
    return asn1_ocsp.Responses.load(header(SEQUENCE, len(body)) + body)


def _single_response(q: CertQuestion, status: str, revoked_at: datetime | None,
                     reason: RevocationReason | None, this_update: datetime,
                     next_update: datetime) -> dict[str, object]:
    cert_id = {"hash_algorithm": {"algorithm": q.hash_algorithm},
               "issuer_name_hash": q.issuer_name_hash, "issuer_key_hash": q.issuer_key_hash,
               "serial_number": q.serial}
    if status == "good":
        cert_status: object = asn1_ocsp.CertStatus({"good": asn1_core.Null()})
    elif status == "unknown":
        cert_status = asn1_ocsp.CertStatus({"unknown": asn1_core.Null()})
    else:
        info: dict[str, object] = {"revocation_time": revoked_at}
        if reason is not None and reason is not RevocationReason.UNSPECIFIED:
            info["revocation_reason"] = int(reason)
        cert_status = asn1_ocsp.CertStatus({"revoked": info})
    return {"cert_id": cert_id, "cert_status": cert_status, "this_update": this_update,
            "next_update": next_update}
