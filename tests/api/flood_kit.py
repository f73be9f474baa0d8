"""The two client processes of the authentication flood test (tests/api/test_auth_flood.py).

Run as separate processes so that neither competes with the server (a thread of the pytest
process) for its interpreter lock, as real clients would not:

    python -m tests.api.flood_kit flood BASE_URL SECONDS CONNECTIONS SOURCE_ADDRESS PLAN.json
    python -m tests.api.flood_kit probe BASE_URL SECONDS PLAN.json

``flood`` keeps CONNECTIONS keep-alive connections (from SOURCE_ADDRESS, a loopback address of
its own) busy with requests carrying wrong HTTP Basic credentials, each sent as soon as the
previous answer arrived, cycling over the plan's credentials and paths; it prints the count of
each status. ``probe`` meanwhile times, one at a time, a POST /ocsp of a real request for an
issued certificate (answered from the responder's memory), a POST /ocsp with a nonce (signed
live: the thread pool and the HSM) and a GET /healthz (a sync route: the thread pool), and
prints every latency in milliseconds, checking each answer.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def _request(path: str, host: str, authorization: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n"
            "Connection: keep-alive\r\n\r\n").encode("latin-1")


async def _read_status(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    await reader.readexactly(length)
    return status, close


async def _flood(base: str, seconds: float, connections: int, source: str,
                 plan: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = [_request(path, url.netloc, "Basic " + base64.b64encode(
        cred.encode("utf-8")).decode("ascii"))
        for path in plan["paths"] for cred in plan["credentials"]]
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    async def worker(index: int) -> None:
        i = index
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(host, port,
                                                               local_addr=(source, 0))
            except OSError as exc:
                errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)
                continue
            try:
                while time.monotonic() < deadline:
                    writer.write(requests[i % len(requests)])
                    i += connections
                    status, close = await _read_status(reader)
                    statuses[status] += 1
                    if close:
                        break
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] += 1
            finally:
                writer.close()

    await asyncio.gather(*(worker(i) for i in range(connections)))
    return {"statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": dict(errors), "requests": sum(statuses.values())}


def _nonce_request(plan: dict[str, Any]) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    cert = x509.load_der_x509_certificate(bytes.fromhex(plan["certificate"]))
    issuer = x509.load_der_x509_certificate(bytes.fromhex(plan["issuer"]))
    return (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
            .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False).build()
            .public_bytes(serialization.Encoding.DER))


def _check_ocsp(body: bytes) -> None:
    from cryptography.x509 import ocsp

    answer = ocsp.load_der_ocsp_response(body)
    if answer.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL or \
            answer.certificate_status is not ocsp.OCSPCertStatus.GOOD:
        raise SystemExit(f"unexpected OCSP answer {answer.response_status}")


def _probe(base: str, seconds: float, plan: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=30)
    plain = bytes.fromhex(plan["ocsp_request"])
    ocsp_headers = {"Content-Type": "application/ocsp-request"}
    timings: dict[str, list[float]] = {"ocsp": [], "ocsp_nonce": [], "healthz": []}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for kind in timings:
            body = _nonce_request(plan) if kind == "ocsp_nonce" else plain
            began = time.perf_counter()
            if kind == "healthz":
                conn.request("GET", "/healthz")
            else:
                conn.request("POST", "/ocsp", body=body, headers=ocsp_headers)
            response = conn.getresponse()
            payload = response.read()
            timings[kind].append((time.perf_counter() - began) * 1000)
            if response.status != 200:
                raise SystemExit(f"{kind}: HTTP {response.status} {payload[:200]!r}")
            if kind == "healthz":
                assert json.loads(payload) == {"status": "ok"}
            else:
                _check_ocsp(payload)
            time.sleep(0.005)
    conn.close()
    return timings


def main(argv: list[str]) -> None:
    mode, base, seconds = argv[0], argv[1], float(argv[2])
    if mode == "flood":
        connections, source = int(argv[3]), argv[4]
        plan = json.loads(Path(argv[5]).read_text())
        result = asyncio.run(_flood(base, seconds, connections, source, plan))
    elif mode == "probe":
        result = _probe(base, seconds, json.loads(Path(argv[3]).read_text()))
    else:
        raise SystemExit(f"unknown mode {mode}")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
