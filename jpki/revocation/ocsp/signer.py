"""Signing OCSP responses: build the ResponseData, lint it, sign it in the HSM, verify the
signature, assemble the OCSPResponse — the order every signed thing here follows (architecture
§10.1).

A response is signed by the delegated responder certificate of the issuing CA generation (RFC
6960 §4.2.2.2), whose key lives in the HSM; the certificate is included so that clients can
verify it, and the ResponderID is its key hash (RFC 6960 §4.2.2.3, as RFC 5019 §2.2.3 prefers).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from datetime import datetime, timedelta
from functools import partial

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509

from jpki.authority.lint import Finding, require_clean
from jpki.der import SEQUENCE, header
from jpki.ports import KeyStore
from jpki.revocation.ocsp.issuers import IssuerEntry
from jpki.revocation.ocsp.ports import SignedResponse
from jpki.revocation.ocsp.requests import MAX_CERTS_PER_REQUEST, CertQuestion
from jpki.revocation.ocsp.statuses import Good, OcspStatus, Revoked
from jpki.signing import sign_verified

# One certificate's question, the issuer it names, and what the answer must say.
SigningJob = tuple[CertQuestion, IssuerEntry, OcspStatus]


class NoResponder(LookupError):
    """The CA generation has no responder certificate yet: nothing can be signed for it."""


def lint_response(issuer: IssuerEntry, answers: Sequence[tuple[CertQuestion, OcspStatus]],
                  this_update: datetime, next_update: datetime) -> list[Finding]:
    """The checks a response passes before the responder key is used (each rule cites its
    clause; ``e_`` = error, as the certificate lints of jpki.authority.lint)."""
    out: list[Finding] = []
    if not 1 <= len(answers) <= MAX_CERTS_PER_REQUEST:
        out.append(Finding("e_ocsp_single_count",
                           f"RFC 6960 §4.2.1: 1 to {MAX_CERTS_PER_REQUEST} SingleResponses"))
    if next_update <= this_update:
        out.append(Finding("e_ocsp_next_update",
                           "RFC 5019 §2.2.4: nextUpdate present and later than thisUpdate"))
    for question, status in answers:
        if not issuer.names(question):
            out.append(Finding("e_ocsp_cert_id_issuer",
                               "RFC 6960 §4.2.2.2: the responder answers for its own CA only"))
        if isinstance(status, Revoked) and status.at > this_update:
            out.append(Finding("e_ocsp_revoked_ahead",
                               "RFC 6960 §2.2: revoked only from the revocation time"))
        if isinstance(status, Good) and status.revocation_scheduled_at is not None \
                and next_update > status.revocation_scheduled_at:
            out.append(Finding("e_ocsp_good_past_revocation",
                               "architecture §5.5: good no later than a scheduled revocation"))
    return out


def _responses(singles: list[dict[str, object]]) -> asn1_ocsp.Responses:
    """The SEQUENCE OF SingleResponse. Each single is encoded alone and the list loaded from
    their concatenation: asn1crypto re-encodes a SequenceOf whole on every element it appends
    from native values, which made a 32-certificate response cost 100 ms (quadratic)."""
    body = b"".join(asn1_ocsp.SingleResponse(s).dump() for s in singles)
    return asn1_ocsp.Responses.load(header(SEQUENCE, len(body)) + body)


def _cert_status(status: OcspStatus) -> asn1_ocsp.CertStatus:
    match status:
        case Good():
            return asn1_ocsp.CertStatus({"good": asn1_core.Null()})
        case Revoked():
            info: dict[str, object] = {"revocation_time": status.at}
            if status.wire_reason is not None:
                info["revocation_reason"] = int(status.wire_reason)
            return asn1_ocsp.CertStatus({"revoked": info})
        case _:
            return asn1_ocsp.CertStatus({"unknown": asn1_core.Null()})


class ResponseSigner:
    def __init__(self, keys: KeyStore, validity: timedelta) -> None:
        self._keys = keys
        self.validity = validity

    def sign(self, issuer: IssuerEntry, answers: Sequence[tuple[CertQuestion, OcspStatus]],
             now: datetime, nonce: bytes | None = None) -> SignedResponse:
        """One response to ``answers``, all of ``issuer``, produced at ``now``.

        ``now`` (thisUpdate, producedAt) must be taken *before* the statuses were read, so that
        a change recorded after the read is never older than the response: the refresh job
        re-signs whatever is not younger than a change (jpki.revocation.ocsp.jobs). A
        scheduled revocation caps nextUpdate at its instant (architecture §5.5)."""
        responder = issuer.responder
        if responder is None:
            raise NoResponder(f"CA generation {issuer.generation_id} has no responder")
        next_update = now + self.validity
        for _, status in answers:
            if isinstance(status, Good) and status.revocation_scheduled_at is not None:
                next_update = min(next_update, status.revocation_scheduled_at)
        require_clean(lint_response(issuer, answers, now, next_update), "OCSP response")
        singles: list[dict[str, object]] = [
            {"cert_id": {"hash_algorithm": {"algorithm": q.hash_algorithm},
                         "issuer_name_hash": q.issuer_name_hash,
                         "issuer_key_hash": q.issuer_key_hash, "serial_number": q.serial},
             "cert_status": _cert_status(status), "this_update": now,
             "next_update": next_update}
            for q, status in answers]
        response_data: dict[str, object] = {
            "responder_id": asn1_ocsp.ResponderId({"by_key": responder.key_hash}),
            "produced_at": now,
            "responses": _responses(singles),
        }
        if nonce is not None:  # RFC 8954 §2.1: echoed
            response_data["response_extensions"] = [{
                "extn_id": "nonce", "critical": False,
                "extn_value": asn1_core.OctetString(nonce)}]
        tbs = asn1_ocsp.ResponseData(response_data)
        signature = sign_verified(tbs.dump(), self._keys.rsa_key(responder.key_label),
                                  responder.public_key)
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
        return SignedResponse(der, now, next_update)

    def sign_each(self, jobs: Sequence[SigningJob], now: datetime,
                  pool: Executor) -> list[SignedResponse]:
        """One single-certificate response per job, signed on ``pool``'s threads (the HSM
        session pool signs in parallel, python-pkcs11 releasing the GIL)."""
        return list(pool.map(partial(self._sign_job, now), jobs))

    def _sign_job(self, now: datetime, job: SigningJob) -> SignedResponse:
        question, issuer, status = job
        return self.sign(issuer, [(question, status)], now)
