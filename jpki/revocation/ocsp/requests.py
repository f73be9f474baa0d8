"""Parsing OCSP requests (RFC 6960 §4.1), and the unsigned answers to what cannot be answered.

Single-certificate requests (RFC 5019) go through cryptography's Rust parser (~2 µs); anything it
refuses is parsed again with asn1crypto, which also takes several certificates per request and
critical extensions we must refuse; what neither accepts is ``malformedRequest``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp as c_ocsp

from jpki.revocation.ocsp.ports import HashName

MAX_REQUEST_BYTES = 4096  # RFC 5019 §5: GET requests up to 255 bytes; POSTs stay small
# RFC 6960 §4.1.1 allows a list of CertIDs; each is answered (and a nonce'd request signed
# live), so one request may not ask for the whole store.
MAX_CERTS_PER_REQUEST = 32
HASHES: dict[HashName, Callable[[bytes], hashlib._Hash]] = {
    "sha1": hashlib.sha1, "sha256": hashlib.sha256}
_C_HASHES: dict[type[hashes.HashAlgorithm], HashName] = {
    hashes.SHA1: "sha1", hashes.SHA256: "sha256"}


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
    """One CertID of a request: the certificate asked about."""

    hash_algorithm: HashName
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int


@dataclass(frozen=True)
class ParsedRequest:
    questions: tuple[CertQuestion, ...]
    nonce: bytes | None


def hash_name_of(algorithm: hashes.HashAlgorithm | None) -> HashName | None:
    """Our name of a CertID hash algorithm as cryptography gives it, or None if we take none."""
    return _C_HASHES.get(type(algorithm)) if algorithm is not None else None


def parse_request(der: bytes) -> ParsedRequest:
    """The questions and nonce of a DER OCSPRequest; :class:`MalformedOcspRequest` otherwise."""
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
            questions.append(CertQuestion(cast(HashName, algorithm),
                                          cert_id["issuer_name_hash"].native,
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
