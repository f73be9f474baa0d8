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
which the server polls several times a second: changed certificates are re-signed at once, so the
new status is served within a second. A revocation scheduled for the future (emigration) caps the
nextUpdate of the "good" response at that instant.

Responses are signed by the delegated responder certificate of the issuing CA generation (RFC 6960
§4.2.2.2), whose key lives in the HSM; the certificate is included so clients can verify it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509 import ocsp as c_ocsp

from jpki.ca import CaService
from jpki.der import SEQUENCE, header
from jpki.model import CaGeneration, CertStatus, RevocationReason
from jpki.ports import Clock, KeyStore, UnitOfWorkFactory
from jpki.recipe import Recipe

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


class OcspResponder:
    def __init__(self, uow_factory: UnitOfWorkFactory, keys: KeyStore, clock: Clock,
                 recipe: Recipe, cas: CaService, *, validity: timedelta = timedelta(hours=1),
                 max_live_signatures: int = 8, cache_size: int = 200_000,
                 read_uow: UnitOfWorkFactory | None = None) -> None:
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
        self._watermark: datetime | None = None
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
        """The database copy, signed by another worker or before a restart."""
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
        """Bring cached responses up to date with status changes recorded since the last call;
        returns how many were re-signed. The server calls this several times a second.

        A response that another worker already re-signed after the change is just loaded; only
        responses older than the change are signed again, so N workers do not sign N times.
        """
        now = self._clock.now()
        # Re-read the last second too: a change recorded in the same second as the previous
        # poll must not slip through (re-reading is harmless, see above).
        mark = (self._watermark or now) - timedelta(seconds=1)
        self._watermark = now
        with self._read_uow() as uow:
            changed = {c.serial: c for c in uow.certificates.status_changed_since(mark)}
            if not changed:
                return 0
            cached = uow.ocsp.entries_for(list(changed))
        refreshed = 0
        for gid, algorithm, serial_hex, this_update in cached:
            cert = changed[serial_hex]
            key = (gid, algorithm, int(serial_hex, 16))
            changed_at = max(t for t in (cert.revocation_recorded_at, cert.hold_released_at)
                             if t is not None)
            if this_update > changed_at:
                # Signed after the change (by another worker): serve that one. Timestamps have
                # whole seconds, so a response from the same second is signed again.
                with self._lock:
                    self._cache.pop(key, None)
                continue
            issuer = self._issuer_of_generation(gid)
            if issuer is None:
                continue
            q = CertQuestion(algorithm, issuer.name_hashes[algorithm],
                             issuer.key_hashes[algorithm], key[2])
            # The row read above, after ``now`` was taken: no second read (see _sign).
            status = _status_of(cert, now) if cert.ca_generation_id == gid else UNKNOWN_STATUS
            response, _ = self._sign([(q, issuer)], None, now=now, statuses_read=[status])
            self._store(key, response)
            refreshed += 1
        return refreshed

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
