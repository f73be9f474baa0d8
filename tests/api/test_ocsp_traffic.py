"""Each process's OCSP tally goes to the database by minute (api.ocsp_traffic): what the endpoint
answered is taken once, and a write the database refused is kept for the next one."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import anyio

from api import ocsp_traffic
from api.metrics import MeteredOcsp
from jpki.telemetry import OCSP_BUCKETS

AT = datetime(2026, 11, 27, 1, 2, 33, tzinfo=UTC)
MINUTE = AT.replace(second=0)
# An OCSPResponse with responseStatus malformedRequest (RFC 6960 §4.2.1).
MALFORMED = b"\x30\x03\x0a\x01\x01"


async def _endpoint(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": MALFORMED})


def _answer(metered: MeteredOcsp, times: int) -> None:
    async def sink(message: Any) -> None:
        return None

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def run() -> None:
        for _ in range(times):
            await metered({"type": "http"}, receive, sink)

    anyio.run(run)


class Store:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.added: list[Any] = []

    def add(self, tally: Any) -> None:
        if self.fail:
            raise OSError("the database is gone")
        self.added.append(tally)


def test_a_refused_write_is_kept_and_added_to_the_next() -> None:
    metered = MeteredOcsp(_endpoint, now=lambda: AT)
    app = SimpleNamespace(ocsp_endpoint=metered)
    store = Store(fail=True)
    services: Any = SimpleNamespace(ocsp_traffic=store)
    _answer(metered, 3)
    anyio.run(ocsp_traffic.write, app, services)
    assert store.added == []
    _answer(metered, 2)
    store.fail = False
    anyio.run(ocsp_traffic.write, app, services)
    ((key, (buckets, seconds)),) = store.added[0].items()
    assert key == (MINUTE, "malformedRequest")
    assert sum(buckets) == 5 and len(buckets) == len(OCSP_BUCKETS) + 1 and seconds > 0
    anyio.run(ocsp_traffic.write, app, services)  # nothing new: nothing written
    assert len(store.added) == 1
