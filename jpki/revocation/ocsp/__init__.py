"""The OCSP responder (RFC 6960, RFC 5019, RFC 8954; architecture §5.3, §5.5).

- :mod:`~jpki.revocation.ocsp.requests` parses requests and holds the unsigned error answers;
- :mod:`~jpki.revocation.ocsp.issuers` finds the CA generation a CertID names, and its responder;
- :mod:`~jpki.revocation.ocsp.statuses` says what a response must say (typed statuses) and
  whether a signed one still says it;
- :mod:`~jpki.revocation.ocsp.signer` builds, lints, signs and verifies responses;
- :mod:`~jpki.revocation.ocsp.cache` keeps responses signed ahead of time, in memory and in the
  database, under one key and one freshness rule;
- :mod:`~jpki.revocation.ocsp.jobs` keeps them in step with the status-change feed, signs ahead
  of time and checks what is stored;
- :mod:`~jpki.revocation.ocsp.responder` answers a request from all of these;
- :mod:`~jpki.revocation.ocsp.ports` is what the responder needs of the store.

The HTTP side is api.ocsp_http; the app starts the jobs (api.app).
"""

from jpki.revocation.ocsp.cache import CachedResponse, ResponseCache
from jpki.revocation.ocsp.jobs import StoredCheck, StoredFinding
from jpki.revocation.ocsp.ports import OcspStore, ResponseKey, SignedResponse
from jpki.revocation.ocsp.requests import (
    INTERNAL_ERROR,
    MALFORMED,
    MAX_CERTS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    TRY_LATER,
    UNAUTHORIZED,
    MalformedOcspRequest,
    parse_request,
)
from jpki.revocation.ocsp.responder import Answer, OcspResponder
from jpki.revocation.ocsp.statuses import GOOD, UNKNOWN, Good, OcspStatus, Revoked, Unknown

__all__ = [
    "GOOD",
    "INTERNAL_ERROR",
    "MALFORMED",
    "MAX_CERTS_PER_REQUEST",
    "MAX_REQUEST_BYTES",
    "TRY_LATER",
    "UNAUTHORIZED",
    "UNKNOWN",
    "Answer",
    "CachedResponse",
    "Good",
    "MalformedOcspRequest",
    "OcspResponder",
    "OcspStatus",
    "OcspStore",
    "ResponseCache",
    "ResponseKey",
    "Revoked",
    "SignedResponse",
    "StoredCheck",
    "StoredFinding",
    "Unknown",
    "parse_request",
]
