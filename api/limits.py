"""A pure-ASGI guard that refuses request bodies over a size limit before the app reads them."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


def _problem(limit: int) -> bytes:
    return json.dumps({"type": "urn:jpki:problem:request.too_large",
                       "title": "The request is too large", "status": 413,
                       "code": "request.too_large",
                       "detail": f"request bodies are limited to {limit} bytes"}).encode()


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        started = False  # the app has begun its response
        refusing = False  # the limit was crossed before any response: the answer is 413
        refused = False  # our 413 has been sent

        async def guarded_receive() -> Message:
            nonlocal received, refusing
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refusing = refusing or not started
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, refused
            if refusing:
                # The app may have turned BodyTooLarge into an error of its own (FastAPI answers
                # 400 "error parsing the body" for any exception raised while it reads): a body
                # over the limit is answered 413 whatever the app made of it.
                if not refused:
                    refused = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except BodyTooLarge:
            if not started and not refused:
                refused = True
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = _problem(self.max_bytes)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/problem+json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
