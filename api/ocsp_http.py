"""OCSP over HTTP (RFC 6960 Appendix A, RFC 5019 §5): a bare ASGI handler for ``/ocsp``.

It runs in front of FastAPI's routing (see :class:`api.app.JpkiApp`) because an OCSP responder is
judged by how close it gets to serving static bytes: routing, dependency injection and response
models would cost two thirds of the throughput (components.md). The hot path — a request seen
before, for a certificate whose pre-signed response is fresh — is two dictionary lookups in the
event loop; everything else (parsing a new request, a database read, an HSM signature) runs in
the thread pool.

- ``POST /ocsp`` with ``application/ocsp-request``; ``GET /ocsp/{base64 DER}`` (URL-encoded).
- Successful responses: ``application/ocsp-response`` with ``Cache-Control: max-age`` up to
  nextUpdate, ``Last-Modified``, ``Expires`` and ``ETag`` (RFC 5019 §6.2) — except responses to
  nonce requests, which are ``no-store``.
- OCSP-level errors (malformedRequest, unauthorized, tryLater) are OCSP responses with HTTP 200,
  as RFC 6960 prescribes; HTTP-level refusals are 4xx problem+json: 405, 413, 414, 415.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from email.utils import formatdate
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from jpki.ocsp import MALFORMED, MAX_REQUEST_BYTES, CachedResponse, OcspResponder

if TYPE_CHECKING:
    from collections.abc import Callable

OCSP_RESPONSE = b"application/ocsp-response"
MAX_GET_PATH = 4 * MAX_REQUEST_BYTES // 3 + 64
REQUEST_MEMO_SIZE = 100_000


def _problem(status: int, code: str, title: str) -> tuple[int, bytes]:
    return status, json.dumps({"type": f"urn:jpki:problem:{code}", "title": title,
                               "status": status, "code": code}).encode()


NOT_ALLOWED = _problem(405, "request.method_not_allowed", "OCSP takes GET or POST")
TOO_LARGE = _problem(413, "request.too_large", "OCSP requests are limited in size")
URI_TOO_LONG = _problem(414, "request.uri_too_long", "The GET request is too long")
WRONG_TYPE = _problem(415, "request.unsupported_media_type",
                      "POST bodies must be application/ocsp-request")


class OcspEndpoint:
    def __init__(self, responder: Callable[[], OcspResponder]) -> None:
        self._responder = responder
        # request DER → cache key, for requests answered from the cache before (no nonce).
        self._memo: dict[bytes, tuple[int, str, int]] = {}
        self._headers: dict[str, list[tuple[bytes, bytes]]] = {}  # by ETag (content hash)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "GET":
            raw = scope.get("raw_path") or scope["path"].encode()
            if len(raw) > MAX_GET_PATH:
                await _send_problem(send, URI_TOO_LONG)
                return
            encoded = unquote_to_bytes(raw.split(b"?", 1)[0][len(b"/ocsp/"):])
            try:
                der = base64.b64decode(encoded + b"=" * (-len(encoded) % 4), validate=True)
            except (binascii.Error, ValueError):
                await self._send_ocsp(send, MALFORMED, None)
                return
        elif method == "POST":
            content_type = b""
            for name, value in scope["headers"]:
                if name == b"content-type":
                    content_type = value.split(b";", 1)[0].strip().lower()
                elif name == b"content-length" and (not value.isdigit()
                                                     or int(value) > MAX_REQUEST_BYTES):
                    await _send_problem(send, TOO_LARGE)
                    return
            if content_type != b"application/ocsp-request":
                await _send_problem(send, WRONG_TYPE)
                return
            body = bytearray()
            while True:
                message = await receive()
                body += message.get("body", b"")
                if len(body) > MAX_REQUEST_BYTES:
                    await _send_problem(send, TOO_LARGE)
                    return
                if not message.get("more_body", False):
                    break
            der = bytes(body)
        else:
            await _send_problem(send, NOT_ALLOWED)
            return
        responder = self._responder()
        key = self._memo.get(der)
        if key is not None:
            hit = responder.cached(key)
            if hit is not None:
                await self._send_ocsp(send, hit.der, hit)
                return
        answer, answered_key = await run_in_threadpool(responder.respond_keyed, der)
        if answer.cached is not None and answered_key is not None:
            if len(self._memo) >= REQUEST_MEMO_SIZE:
                self._memo.clear()
            self._memo[der] = answered_key
        await self._send_ocsp(send, answer.der, answer.cached)

    async def _send_ocsp(self, send: Send, der: bytes, cached: CachedResponse | None) -> None:
        headers = [(b"content-type", OCSP_RESPONSE), (b"content-length", str(len(der)).encode())]
        if cached is None:
            headers.append((b"cache-control", b"no-store"))
        else:
            static = self._headers.get(cached.etag)
            if static is None or len(self._headers) > 4 * REQUEST_MEMO_SIZE:
                if len(self._headers) > 4 * REQUEST_MEMO_SIZE:
                    self._headers.clear()
                static = [
                    (b"etag", cached.etag.encode()),
                    (b"last-modified", formatdate(cached.this_update.timestamp(),
                                                  usegmt=True).encode()),
                    (b"expires", formatdate(cached.next_update.timestamp(),
                                            usegmt=True).encode()),
                ]
                self._headers[cached.etag] = static
            max_age = max(0, int(cached.next_update.timestamp() - time.time()))
            headers += static
            headers.append((b"cache-control",
                            b"public, max-age=%d, no-transform, must-revalidate" % max_age))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": der})


async def _send_problem(send: Send, problem: tuple[int, bytes]) -> None:
    status, body = problem
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
