"""OCSP over HTTP (RFC 6960 Appendix A, RFC 5019 §5): a bare ASGI handler for ``/ocsp``.

It runs in front of FastAPI's routing (see :class:`api.app.JpkiApp`) because an OCSP responder is
judged by how close it gets to serving static bytes: routing, dependency injection and response
models would cost two thirds of the throughput (docs/components.md). The hot path — a request seen
before, for a certificate whose pre-signed response is fresh — is two dictionary lookups in the
event loop; everything else (parsing a new request, a database read, an HSM signature) runs in
the thread pool.

The hot path is keyed on the request *as received* (the POST body, or the raw GET path), so a
repeated GET is not URL-decoded and base64-decoded again, and it sends headers prepared for that
response (its max-age recomputed at most once a second). It
serves only the very response object the responder's cache holds and calls fresh
(``ResponseCache.fresh``: one dictionary lookup and one comparison): a refresh after a status
change or a re-signing replaces that object, and the next request takes the full path
(docs/performance.md, OCSP, +13 %).

- ``POST /ocsp`` with ``application/ocsp-request``; ``GET /ocsp/{base64 DER}`` (URL-encoded).
  Each path takes its one method: any other is answered 405 with ``Allow`` naming it
  (RFC 9110 §15.5.6), as the OpenAPI document (api.openapi) describes them.
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

from jpki.revocation.ocsp import (
    MALFORMED,
    MAX_REQUEST_BYTES,
    CachedResponse,
    OcspResponder,
    ResponseKey,
)

if TYPE_CHECKING:
    from collections.abc import Callable

OCSP_RESPONSE = b"application/ocsp-response"
MAX_GET_PATH = 4 * MAX_REQUEST_BYTES // 3 + 64
REQUEST_MEMO_SIZE = 100_000


Problem = tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]


def _problem(status: int, code: str, title: str,
             headers: tuple[tuple[bytes, bytes], ...] = ()) -> Problem:
    return status, json.dumps({"type": f"urn:jpki:problem:{code}", "title": title,
                               "status": status, "code": code}).encode(), headers


POST_ONLY = _problem(405, "request.method_not_allowed", "/ocsp takes POST; GET is /ocsp/{request}",
                     ((b"allow", b"POST"),))
GET_ONLY = _problem(405, "request.method_not_allowed", "/ocsp/{request} takes GET; POST is /ocsp",
                    ((b"allow", b"GET"),))
TOO_LARGE = _problem(413, "request.too_large", "OCSP requests are limited in size")
URI_TOO_LONG = _problem(414, "request.uri_too_long", "The GET request is too long")
WRONG_TYPE = _problem(415, "request.unsupported_media_type",
                      "POST bodies must be application/ocsp-request")


class _Prepared:
    """What a repeated request is answered with: the cached response it was answered from,
    and the HTTP messages for it.

    Up to two of these per hot certificate (GET and POST) live as long as the process, so they
    hold as few garbage-collected containers as possible: CPython untracks tuples and dicts of
    bytes and strings, and a full collection then walks only this object itself. (With the
    response-start message kept here, 10^5 entries made each full collection take ~200 ms, a
    p99 spike while the memo fills.)"""

    __slots__ = ("_cache_control", "_headers", "_next_update", "_second", "body", "cached",
                 "key")

    def __init__(self, key: ResponseKey, cached: CachedResponse) -> None:
        self.key = key
        self.cached = cached
        self.body = {"type": "http.response.body", "body": cached.der}
        self._next_update = cached.next_update.timestamp()
        self._headers = (
            (b"content-type", OCSP_RESPONSE),
            (b"content-length", str(len(cached.der)).encode()),
            (b"etag", cached.etag.encode()),
            (b"last-modified", formatdate(cached.this_update.timestamp(), usegmt=True).encode()),
            (b"expires", formatdate(self._next_update, usegmt=True).encode()),
        )
        self._second = -1
        self._cache_control = b""

    def start(self) -> dict[str, object]:
        """The response-start message; max-age up to nextUpdate (RFC 5019 §6.2), counted from
        the end of the current second so that reusing it within that second never overstates."""
        second = int(time.time())
        if second != self._second:
            max_age = max(0, int(self._next_update) - second - 1)
            self._cache_control = b"public, max-age=%d, no-transform, must-revalidate" % max_age
            self._second = second
        return {"type": "http.response.start", "status": 200,
                "headers": [*self._headers, (b"cache-control", self._cache_control)]}


class OcspEndpoint:
    def __init__(self, responder: Callable[[], OcspResponder]) -> None:
        self._responder = responder
        # The request as received (raw GET path, POST body) → how it was answered, for
        # requests answered from the responder's cache before (single certificate, no nonce).
        self._get_memo: dict[bytes, _Prepared] = {}
        self._post_memo: dict[bytes, _Prepared] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        at_root = scope["path"] == "/ocsp"
        if method != ("POST" if at_root else "GET"):
            await _send_problem(send, POST_ONLY if at_root else GET_ONLY)
            return
        if method == "GET":
            raw = scope.get("raw_path") or scope["path"].encode()
            if len(raw) > MAX_GET_PATH:
                await _send_problem(send, URI_TOO_LONG)
                return
            if await self._replay(self._get_memo, raw, send):
                return
            encoded = unquote_to_bytes(raw.split(b"?", 1)[0][len(b"/ocsp/"):])
            try:
                der = base64.b64decode(encoded + b"=" * (-len(encoded) % 4), validate=True)
            except (binascii.Error, ValueError):
                await _send_uncached(send, MALFORMED)
                return
        else:  # POST
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
            if await self._replay(self._post_memo, der, send):
                return
        answer = await run_in_threadpool(self._responder().respond, der)
        if answer.cached is None or answer.key is None:
            await _send_uncached(send, answer.der)
            return
        prepared = _Prepared(answer.key, answer.cached)
        memo = self._get_memo if method == "GET" else self._post_memo
        if len(memo) >= REQUEST_MEMO_SIZE:
            memo.clear()
        memo[raw if method == "GET" else der] = prepared
        await send(prepared.start())
        await send(prepared.body)

    async def _replay(self, memo: dict[bytes, _Prepared], received: bytes, send: Send) -> bool:
        """Answer a request seen before from the response it got, if the responder still holds
        that very response and calls it fresh; else False (the full path answers)."""
        prepared = memo.get(received)
        if prepared is None or self._responder().cache.fresh(prepared.key) is not prepared.cached:
            return False
        await send(prepared.start())
        await send(prepared.body)
        return True


async def _send_uncached(send: Send, der: bytes) -> None:
    """An answer no cache may keep: an error status, or one signed live for a nonce."""
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", OCSP_RESPONSE), (b"content-length", str(len(der)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": der})


async def _send_problem(send: Send, problem: Problem) -> None:
    status, body, headers = problem
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
