"""What counting and timing OCSP requests costs (api.metrics.MeteredOcsp), per request, against
the same endpoint unmetered and against a histogram observation per request, in one run.

    .venv/bin/python -m bench.ocsp_metering [--requests 200000] [--rounds 5] [--json]

The endpoint is a stand-in for the responder's hot path as api.ocsp_http runs it for a repeated
request (two ``send`` calls with prepared messages, a DER body of a typical response's size), so
what is measured is the metering alone. Each variant runs ``--rounds`` times, interleaved; the
best round of each is reported (the machine is shared: the best is the least disturbed). Then the
same in prometheus-client's multiprocess mode (``jpki serve --workers N``), in a child process
(the mode is chosen when prometheus-client is imported).

Reading: at the bench.ocsp hot-path rate of ~19k responses/s on one core (~52 µs a response),
each microsecond here is ~2 % of throughput. Results go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from starlette.types import Message, Receive, Scope, Send

_BODY = bytes([0x30, 0x82, 0x06, 0x00, 0x0A, 0x01, 0x00]) + b"\0" * 1536
_START: Message = {"type": "http.response.start", "status": 200, "headers": []}
_MESSAGE: Message = {"type": "http.response.body", "body": _BODY}


async def _endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    await send(_START)
    await send(_MESSAGE)


async def _sink(message: Message) -> None:
    return None


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


def measure(requests: int, rounds: int) -> dict[str, float]:
    from time import perf_counter

    from api.metrics import OCSP_REQUESTS, MeteredOcsp, ocsp_outcome

    child = OCSP_REQUESTS.labels("successful")

    async def observed_each(scope: Scope, receive: Receive, send: Send) -> None:
        """The straightforward alternative: the same wrapper, one observe per request."""
        started = perf_counter()
        outcome, status = "error", 200

        async def observed(message: Message) -> None:
            nonlocal outcome, status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif outcome == "error":
                outcome = ocsp_outcome(status, message.get("body", b""))
            await send(message)

        try:
            await _endpoint(scope, receive, observed)
        finally:
            child.observe(perf_counter() - started)

    variants: dict[str, Any] = {"unmetered": _endpoint, "metered (tally)": MeteredOcsp(_endpoint),
                                "observe per request": observed_each}
    scope: Scope = {"type": "http", "method": "GET", "path": "/ocsp/x"}
    best: dict[str, float] = {}

    async def run() -> None:
        for _ in range(rounds):
            for name, app in variants.items():
                started = time.perf_counter()
                for _ in range(requests):
                    await app(scope, _receive, _sink)
                per_request = (time.perf_counter() - started) / requests * 1e6
                best[name] = min(best.get(name, float("inf")), per_request)

    asyncio.run(run())
    return {name: round(us, 2) for name, us in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.stdout.write(json.dumps(measure(args.requests, args.rounds)) + "\n")
        return
    results = {"one process": measure(args.requests, args.rounds)}
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
        out = subprocess.run([sys.executable, "-m", "bench.ocsp_metering", "--child",
                              "--requests", str(args.requests), "--rounds", str(args.rounds)],
                             env=env, capture_output=True, text=True, check=True, timeout=3600)
        results["multiprocess mode"] = json.loads(out.stdout)
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        return
    for mode, figures in results.items():
        base = figures["unmetered"]
        line = ", ".join(f"{name} {us:.2f} µs (+{us - base:.2f})" for name, us in figures.items())
        sys.stdout.write(f"{mode}: {line}\n")


if __name__ == "__main__":
    main()
