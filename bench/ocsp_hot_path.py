"""The OCSP hot path in-process, in CPU time: api.ocsp_http.OcspEndpoint answering a repeated GET
from its request memo and the responder's in-memory cache, against an ASGI callable that sends the
same two messages, in one run.

    .venv/bin/python -m bench.ocsp_hot_path [--requests 200000] [--rounds 7] [--json]

No sockets, no uvicorn: what is measured is the Python of the hit path — the memo lookup, the
cache's freshness check (``ResponseCache.fresh``: a dictionary lookup and one comparison), the
prepared headers — which bench.ocsp measures through HTTP on a machine whose noise (other
processes, wrk) is often larger than the path itself. CPU time of this process (``process_time``),
best and median of ``--rounds`` interleaved rounds: on a shared machine the CPU time of a fixed
loop moves far less than the wall time.

For an A/B against a revision from before the OCSP package (jpki/revocation/ocsp.py, one module),
run this file with that revision first on the path — ``PYTHONPATH=<other checkout> python
<this checkout>/bench/ocsp_hot_path.py`` — and it measures that revision's responder
(``OcspResponder.cached`` in place of ``ResponseCache.fresh``). Results go to
docs/performance.md; no test asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

DER = bytes(range(256)) * 6  # a response of about the size jpki signs (1,500 bytes)
RAW = b"/ocsp/MFMwUTBPME0wSzAJBgUrDgMCGgUABBQ" + b"A" * 60
SERIAL = 0x1234567890ABCDEF1234567890ABCDEF


def _responder() -> tuple[Any, Any, Any, str]:
    """(responder as the endpoint sees it, cache key, cached response, which code) with one
    fresh response kept in memory."""
    from jpki.ports import SystemClock

    clock = SystemClock()
    now = clock.now()
    validity = timedelta(hours=1)
    try:
        from jpki.revocation.ocsp import ResponseCache, ResponseKey
    except ImportError:  # a revision before the package: its one-module responder
        from jpki.revocation.ocsp import CachedResponse, OcspResponder  # type: ignore[attr-defined]

        old = OcspResponder.__new__(OcspResponder)
        old._cache = collections.OrderedDict()
        old._clock = clock
        old.validity = validity
        old_key = (1, "sha1", SERIAL)
        old_entry = CachedResponse(der=DER, this_update=now, next_update=now + validity)
        old._cache[old_key] = old_entry
        return old, old_key, old_entry, "one module (OcspResponder.cached)"

    class _Responder:  # what api.ocsp_http reads of the responder on its hot path
        def __init__(self, cache: ResponseCache) -> None:
            self.cache = cache

    # The store is never reached: ``fresh`` reads memory only.
    cache = ResponseCache(store=None, clock=clock, validity=validity)  # type: ignore[arg-type]
    key = ResponseKey(1, "sha1", SERIAL)
    entry = cache._entry(DER, now, now + validity)
    cache._remember([(key, entry)])
    return _Responder(cache), key, entry, "package (ResponseCache.fresh)"


def measure(requests: int, rounds: int) -> dict[str, Any]:
    from api.ocsp_http import OcspEndpoint, _Prepared

    responder, key, entry, which = _responder()
    endpoint = OcspEndpoint(lambda: responder)
    endpoint._get_memo[RAW] = _Prepared(key, entry)
    prepared = endpoint._get_memo[RAW]
    scope = {"type": "http", "method": "GET", "path": RAW.decode(), "raw_path": RAW,
             "headers": []}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def bare(scope: Any, receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        """The floor: the same two messages, nothing looked up."""
        await send(prepared.start())
        await send(prepared.body)

    async def loop(app: Any, n: int) -> None:
        for _ in range(n):
            await app(scope, receive, send)
            sent.clear()

    async def run() -> dict[str, list[float]]:
        await endpoint(scope, receive, send)
        if len(sent) != 2 or sent[1]["body"] != DER:
            raise SystemExit("the endpoint did not answer from its memo")
        sent.clear()
        cpu: dict[str, list[float]] = {"jpki": [], "bare": []}
        for _ in range(rounds):
            for name, app in (("jpki", endpoint), ("bare", bare)):
                began = time.process_time()
                await loop(app, requests)
                cpu[name].append((time.process_time() - began) / requests * 1e6)
        return cpu

    cpu = asyncio.run(run())
    return {"code": which, "requests_per_round": requests, "rounds": rounds,
            "jpki_us_best": round(min(cpu["jpki"]), 3),
            "jpki_us_median": round(statistics.median(cpu["jpki"]), 3),
            "bare_us_best": round(min(cpu["bare"]), 3),
            "bare_us_median": round(statistics.median(cpu["bare"]), 3),
            "hit_path_us_best": round(min(cpu["jpki"]) - min(cpu["bare"]), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ocsp_hot_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.requests, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['code']}: a repeated GET costs {result['jpki_us_best']:.2f} µs of CPU "
              f"(median {result['jpki_us_median']:.2f}), the two messages alone "
              f"{result['bare_us_best']:.2f} (median {result['bare_us_median']:.2f}): the hit "
              f"path {result['hit_path_us_best']:.2f} µs; {args.rounds} rounds of "
              f"{args.requests:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
