"""The HTTP/1.1 protocol `jpki serve` runs: uvicorn's httptools protocol with the limits it lacks.

Uvicorn's httptools protocol (the fast one, which the OCSP responder's throughput depends on)
has no limit on the size of a request head — httptools buffers a header value however long it
grows (8 MB accepted, 241 MiB resident for 16 of them) — and no timer until a first response:
a connection that sends nothing, or a head a byte at a time, is kept for ever (500 idle
connections were never closed). Its h11 protocol has a size limit
(``h11_max_incomplete_event_size``) but no timer either, and is several times slower. So this
subclass adds, per connection:

* a head size limit: more than ``max_header_bytes`` of request line and headers is refused with
  431 (RFC 6585 §5) and the connection closed — counted on the bytes as they arrive, so no more
  than that and one read (at most 256 KiB) is ever buffered;
* a read timeout: a request head must be complete ``read_timeout`` seconds after the connection
  opened or its first byte arrived, and a body may pause no longer than that (nginx's
  client_header_timeout and client_body_timeout); then 408 (RFC 9110 §15.5.9) if anything of a
  request had come, and the connection is closed;
* a connection limit: beyond ``max_connections`` open connections, a new one is answered 503 and
  closed at once, before it can hold any memory.

Between requests uvicorn's own keep-alive timeout applies (``--keep-alive-timeout``). TLS, and
the first line of defence, belong to a proxy in front (README, "In production").
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 16 * 1024
    read_timeout: float = 10.0
    max_connections: int = 1000


class _HeadTooLarge(Exception):
    pass


def _problem(status: int, reason: str, code: str, title: str) -> bytes:
    body = json.dumps({"type": f"urn:jpki:problem:{code}", "title": title, "status": status,
                       "code": code}).encode()
    return b"".join([f"HTTP/1.1 {status} {reason}\r\n".encode(),
                     b"content-type: application/problem+json\r\n",
                     f"content-length: {len(body)}\r\n".encode(),
                     b"connection: close\r\n\r\n", body])


TOO_LARGE = _problem(431, "Request Header Fields Too Large", "request.header_too_large",
                     "The request head is too large")
TIMED_OUT = _problem(408, "Request Timeout", "request.timeout",
                     "The request did not arrive in time")
BUSY = _problem(503, "Service Unavailable", "unavailable.connections",
                "Too many open connections")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """See the module's documentation. Uvicorn makes one per connection; ``limits`` comes
    through ``functools.partial`` (api.cli serve), which pickles for worker processes."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None,
                 limits: HttpLimits | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or HttpLimits()
        self._in_head = True  # what comes next from the client is (the rest of) a request head
        self._in_body = False
        self._head_bytes = 0  # of the current head, as received
        self._head_too_large = False
        self._read_timer: asyncio.TimerHandle | None = None

    # --- connections -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.write(BUSY)
            transport.close()
            return
        self._arm_read_timer()  # a connection that never sends anything is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        super().connection_lost(exc)

    # --- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._read_timer is None:  # the first byte of a request after a keep-alive wait
                self._arm_read_timer()
        elif self._in_body:
            self._arm_read_timer()  # a body may pause, but not for longer than the timeout
        super().data_received(data)
        if self._in_head and self._head_bytes > self.limits.max_header_bytes and \
                not self.transport.is_closing():
            self._head_too_large = True
            self.send_400_response("")

    def on_headers_complete(self) -> None:
        # Exactly, now that httptools has parsed them (the count above also holds any body
        # bytes that came in the same read).
        size = len(self.url)
        body = False
        for name, value in self.headers:
            size += len(name) + len(value) + 4
            body = body or name == b"transfer-encoding" or (
                name == b"content-length" and value.strip() not in (b"0", b""))
        if size > self.limits.max_header_bytes:
            self._head_too_large = True
            raise _HeadTooLarge  # httptools stops; uvicorn answers through send_400_response
        self._in_head, self._in_body, self._head_bytes = False, True, 0
        if body:  # the body's own timer; without one, on_message_complete comes next
            self._arm_read_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._in_body = True, False
        self._cancel_read_timer()  # until the next request's first byte (or keep-alive's end)
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        self._cancel_read_timer()
        self.transport.write(TOO_LARGE)
        self.transport.close()

    # --- the read timer --------------------------------------------------------------------

    def _arm_read_timer(self) -> None:
        self._cancel_read_timer()
        self._read_timer = self.loop.call_later(self.limits.read_timeout, self._read_timed_out)

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused or (self.cycle is not None and not self.cycle.response_complete
                                     and not self._in_body):
            # We stopped reading (the app has a body to consume), or a response is on its way:
            # the client is not the one keeping us waiting.
            self._arm_read_timer()
            return
        answered = self.cycle is not None and self._in_body and self.cycle.response_started
        if (self._in_body or self._head_bytes) and not answered:  # never into a response
            self.transport.write(TIMED_OUT)
        self.transport.close()

