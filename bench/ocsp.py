"""OCSP responder throughput over loopback HTTP, against `openssl ocsp` and a bare ASGI app
measured in the same run.

    .venv/bin/python -m bench.ocsp [--certificates 1000000] [--hot 50000] [--seconds 10]
                                   [--repeat 1] [--database sqlite|postgres|both]
                                   [--no-diagnostics] [--wait-quiet SECONDS]
                                   [--json] [--save FILE]

For each database, on a fresh one (SQLite file, or a database created on the local PostgreSQL
server and dropped afterwards), in a private data directory:

1. Setup, not measured: ``jpki init`` (SoftHSM token, key ceremony, schema), ``jpki resident add``
   (one resident owns every certificate: the foreign keys need one), then ``--certificates`` rows
   bulk-inserted into ``certificates`` (sqlite3 ``executemany`` / PostgreSQL ``COPY``): random
   127-bit serials, sign and auth CA alternately, every tenth one revoked with its CRL entry
   (``jpki.lifecycle.crl_entries.crl_entry``), ``der``/``tbs_der`` left NULL (the responder never
   reads
   them). Then ``jpki ocsp presign --limit HOT`` signs SHA-1 CertID responses in the HSM for the
   first ``--hot`` certificates: the *hot set*. Signing all 10^6 would cost 10^6 HSM signatures
   (~10 min on 2 cores) and changes nothing on the measured path, which serves every request of
   the hot set from memory; a CDN- or cache-fronted responder sees a similar hot set.
2. ``jpki serve`` (1 worker, as operators start it) on a loopback port. Every hot request is sent
   once by a Python client (8 keep-alive connections): this fills the responder's caches and the
   HTTP layer's request memo, and **every** response is checked (successful, right CertID and
   serial, good or revoked as loaded, revocation time and reason); a random sample also gets its
   signature and responder certificate chain verified, by POST and by GET, before and after load.
3. Load, measured: ``wrk`` with a Lua script cycling over pre-built requests for the hot set — POST
   (DER body, ``application/ocsp-request``) and GET (``/ocsp/<url-encoded base64>``), SHA-1
   CertIDs, no nonce (RFC 5019 clients) — at 1 connection (``-t1 -c1``) and 8 (``-t2 -c8``),
   ``--seconds`` each. The script replaces ``wrk.resolve``: wrk's own opens and closes a
   connection to the server before the run, which wedges ``openssl ocsp`` at 100 % CPU.
4. Baselines, driven identically and interleaved with the jpki runs:
   (a) ``openssl ocsp -index … -port … -ignore_err -nmin 60``, a fresh process per run, on an
   index.txt of *all* the certificates, signing every response with an in-process RSA-2048 key
   from a PEM file (openssl cannot use the SoftHSM key without a PKCS#11 engine, so it signs
   2-2.5x faster than the HSM could); it speaks HTTP/1.0 and closes after every response, which
   wrk follows by reconnecting. openssl 3.0 answers GET only at ``/<base64>``, so its GET requests
   use that path.
   (b) a bare ASGI callable returning a fixed body of the size of a jpki response, under uvicorn
   with the same worker count, twice: with the options of ``jpki serve`` (``uvicorn.run(app,
   log_level="info")``, hence an access-log line per request) and with ``access_log=False`` —
   the HTTP limit of the machine, which is the baseline of the target.
5. Diagnostics (unless ``--no-diagnostics``), at 8 connections, interleaved: ``jpki serve
   --workers 2`` against the bare app with 2 workers (with and without access log), and the same
   jpki app started like ``jpki serve`` but with ``access_log=False``, 1 and 2 workers: what
   serving without uvicorn's access log would give. Not the headline. They cycle over the first
   5,000 of the hot set: a server with 2 workers has two memory caches to fill, each request
   landing on either, and on SQLite its cache misses are slow (see docs/performance.md).

Every run also reports the CPU used by the server, by wrk and by everything else on the machine
(other jobs on a shared VM, PostgreSQL's backends), and the CPU an idle jpki server uses (its
0.25 s OCSP refresh job, reading the status-change feed).

Targets (docs/performance.md, OCSP): at 8 connections, jpki ≥ 10x the openssl responder and
≥ 0.7x the bare ASGI limit, and p99 < 10 ms in every jpki run, on SQLite and on PostgreSQL.
``--repeat R`` runs every measurement R times (interleaved) and reports medians.
Results go to docs/performance.md; no test asserts a timing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from api.in_process import free_port
from bench.common import (
    BenchError,
    fresh_database,
    jpki_command,
    load_average,
    machine_info,
    postgres_server_version,
    resident_fields,
    run_cli,
)

REPO = Path(__file__).resolve().parents[1]
TARGET_VS_OPENSSL = 10.0
TARGET_VS_BARE = 0.7
TARGET_P99_MS = 10.0
REVOKED_EVERY = 10  # 10 % revoked
SAMPLE = 200  # responses whose signature and chain are verified, per check
DIAG_HOT = 5_000  # the diagnostics cycle over the first 5,000 of the hot set (see warm())
LOADS = [("POST", 1), ("GET", 1), ("POST", 8), ("GET", 8)]
OPENSSL_REASONS = {1: "keyCompromise", 3: "affiliationChanged", 4: "superseded",
                   5: "cessationOfOperation"}
REASON_CODES = list(OPENSSL_REASONS)
CRYPTOGRAPHY_REASONS = {1: x509.ReasonFlags.key_compromise,
                        3: x509.ReasonFlags.affiliation_changed,
                        4: x509.ReasonFlags.superseded,
                        5: x509.ReasonFlags.cessation_of_operation}


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# --- the data set -------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    generation_id: int
    ca: str
    der: bytes
    name_hash: bytes  # SHA-1 of the subject DER (RFC 6960 CertID)
    key_hash: bytes  # SHA-1 of the subjectPublicKey BIT STRING contents

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)


@dataclass(frozen=True)
class Cert:
    serial: int
    generation_id: int
    revoked_at: datetime | None
    reason: int | None


def issuer_of(generation_id: int, ca: str, der: bytes) -> Issuer:
    """CertID hashes computed with `cryptography`, independently of jpki's own code."""
    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        bits = key.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)
    else:
        raise BenchError(f"unexpected CA key type {type(key).__name__}")
    return Issuer(generation_id, ca, der,
                  hashlib.sha1(cert.subject.public_bytes()).digest(),  # noqa: S324
                  hashlib.sha1(bits).digest())  # noqa: S324


def read_issuers(url: str) -> dict[str, Issuer]:
    """The newest generation of each CA (after ``jpki init``: generation 1 of sign and auth)."""
    from sqlalchemy import select

    from jpki.store import create_store_engine
    from jpki.store.tables import ca_generations

    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(ca_generations.c.id, ca_generations.c.ca,
                                       ca_generations.c.certificate_der)
                                .order_by(ca_generations.c.generation)).all()
    finally:
        engine.dispose()
    out: dict[str, Issuer] = {}
    for gid, ca, der in rows:
        name = ca.value if hasattr(ca, "value") else str(ca)
        out[name] = issuer_of(int(gid), name, bytes(der))
    if set(out) != {"sign", "auth"}:
        raise BenchError(f"expected a sign and an auth CA after jpki init, found {sorted(out)}")
    return out


_COLUMNS = ("serial", "kind", "resident_id", "ca_generation_id", "status", "not_before",
            "not_after", "shard", "registry_source", "public_key_sha256", "revoked_at",
            "revocation_reason", "revocation_recorded_at", "crl_entry", "created_at",
            "updated_at")


def _utc_time(at: datetime) -> str:
    return at.strftime("%y%m%d%H%M%SZ")


def _openssl_serial(serial: int) -> str:
    text = format(serial, "X")
    return "0" + text if len(text) % 2 else text


def load_certificates(url: str, resident_id: str, issuers: dict[str, Issuer], count: int,
                      hot: int, index_path: Path, seed: int = 5019) -> list[Cert]:
    """Bulk-insert ``count`` issued certificates (every tenth revoked) and write the equivalent
    openssl index.txt; returns the first ``hot`` (in id order: what ``presign --limit`` signs)."""
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from jpki.lifecycle.crl_entries import crl_entry
    from jpki.model import RevocationReason
    from jpki.store.types import UtcDateTime

    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    not_before = now - timedelta(days=400)
    not_after = now + timedelta(days=4 * 365)
    revoked_times = [now - timedelta(days=1 + d, hours=d % 7) for d in range(30)]
    is_sqlite = url.startswith("sqlite")
    if is_sqlite:
        dialect = sqlite_dialect.dialect()
        bind = UtcDateTime().bind_processor(dialect)
        assert bind is not None

        def stamp(at: datetime) -> Any:
            return bind(at)
    else:
        def stamp(at: datetime) -> Any:
            return at.replace(tzinfo=None)  # timestamp without time zone, UTC (UtcDateTime)

    nb, na = stamp(not_before), stamp(not_after)
    revoked_stamps = [stamp(t) for t in revoked_times]
    expiry = _utc_time(not_after)
    gens = [issuers["sign"], issuers["auth"]]
    kinds = ["card_sign", "card_auth"]
    hot_certs: list[Cert] = []
    seen: set[int] = set()

    def rows(start: int, stop: int, index: Any) -> Iterator[tuple[Any, ...]]:
        lines = []
        for i in range(start, stop):
            serial = rng.getrandbits(126) | (1 << 126)
            while serial in seen:
                serial = rng.getrandbits(126) | (1 << 126)
            seen.add(serial)
            serial_hex = format(serial, "x")
            gen = gens[i % 2]
            revoked = i % REVOKED_EVERY == 0
            if revoked:
                k = (i // REVOKED_EVERY) % len(revoked_times)
                reason = REASON_CODES[(i // REVOKED_EVERY) % len(REASON_CODES)]
                at = revoked_times[k]
                entry = crl_entry(serial_hex, at, RevocationReason(reason))
                yield (serial_hex, kinds[i % 2], resident_id, gen.generation_id, "issued", nb,
                       na, "132217", "juminhyo", f"{i:064x}", revoked_stamps[k], reason,
                       revoked_stamps[k], entry, nb, revoked_stamps[k])
                lines.append(f"R\t{expiry}\t{_utc_time(at)},{OPENSSL_REASONS[reason]}\t"
                             f"{_openssl_serial(serial)}\tunknown\t/CN=bench {i}\n")
                if i < hot:
                    hot_certs.append(Cert(serial, gen.generation_id, at, reason))
            else:
                yield (serial_hex, kinds[i % 2], resident_id, gen.generation_id, "issued", nb,
                       na, "132217", "juminhyo", f"{i:064x}", None, None, None, None, nb, nb)
                lines.append(f"V\t{expiry}\t\t{_openssl_serial(serial)}\tunknown\t"
                             f"/CN=bench {i}\n")
                if i < hot:
                    hot_certs.append(Cert(serial, gen.generation_id, None, None))
        index.write("".join(lines))

    chunk = 50_000
    columns = ", ".join(_COLUMNS)
    with index_path.open("w", encoding="ascii") as index:
        if is_sqlite:
            import sqlite3

            conn = sqlite3.connect(url.removeprefix("sqlite:///"))
            try:
                sql = (f"INSERT INTO certificates ({columns}) "  # noqa: S608
                       f"VALUES ({', '.join('?' * len(_COLUMNS))})")
                for start in range(0, count, chunk):
                    conn.executemany(sql, rows(start, min(count, start + chunk), index))
                conn.commit()
                conn.execute("ANALYZE")
                conn.commit()
            finally:
                conn.close()
        else:
            import psycopg
            from sqlalchemy.engine import make_url

            dsn = make_url(url).set(drivername="postgresql").render_as_string(
                hide_password=False)
            with psycopg.connect(dsn) as conn:
                with conn.cursor() as cur, cur.copy(
                        f"COPY certificates ({columns}) FROM STDIN") as copy:
                    for start in range(0, count, chunk):
                        for row in rows(start, min(count, start + chunk), index):
                            copy.write_row(row)
                conn.commit()
                conn.autocommit = True
                conn.execute("VACUUM ANALYZE certificates")
    (index_path.parent / (index_path.name + ".attr")).write_text("unique_subject = no\n")
    return hot_certs


# --- requests -----------------------------------------------------------------------------


def ocsp_request(cert: Cert, issuer: Issuer) -> bytes:
    """An RFC 5019 request: one SHA-1 CertID, no nonce."""
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        issuer.name_hash, issuer.key_hash, cert.serial, hashes.SHA1())  # noqa: S303
    return builder.build().public_bytes(serialization.Encoding.DER)


def http_request(method: str, der: bytes, get_prefix: str) -> bytes:
    if method == "POST":
        return (b"POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/ocsp-request\r\n"
                b"Content-Length: %d\r\n\r\n" % len(der)) + der
    path = get_prefix + quote(base64.b64encode(der).decode("ascii"), safe="")
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode("ascii")


def write_requests(path: Path, requests: list[bytes]) -> None:
    """``<length>\\n<bytes>`` records: what the Lua script splits."""
    with path.open("wb") as fh:
        for raw in requests:
            fh.write(b"%d\n" % len(raw))
            fh.write(raw)


LUA = r"""-- Written by bench/ocsp.py: cycle over pre-built HTTP requests.
local file = "@FILE@"

-- wrk's default resolver opens and closes a connection to each address before the run; a
-- connection closed without a request wedges `openssl ocsp` at 100 % CPU. Take the addresses
-- as they are.
wrk.resolve = function(host, service)
   wrk.addrs = wrk.lookup(host, service)
end

local threads = 0
function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

function init(args)
   local f = assert(io.open(file, "rb"))
   local data = f:read("*a")
   f:close()
   reqs = {}
   local pos = 1
   while pos <= #data do
      local nl = string.find(data, "\n", pos, true)
      local len = tonumber(string.sub(data, pos, nl - 1))
      reqs[#reqs + 1] = string.sub(data, nl + 1, nl + len)
      pos = nl + len + 1
   end
   n = #reqs
   i = ((tid or 0) * 7919) % n
end

function request()
   i = i % n + 1
   return reqs[i]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, "connect": %.0f, ' ..
      '"read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f, "p50_us": %.0f, ' ..
      '"p90_us": %.0f, "p99_us": %.0f, "max_us": %.0f, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
"""


def write_lua(path: Path, requests_file: Path) -> None:
    path.write_text(LUA.replace("@FILE@", str(requests_file)))


# --- a small HTTP client (warm-up and correctness checks) ---------------------------------


def _read_response(sock: socket.socket, buf: bytes) -> tuple[int, bytes, bool, bytes]:
    """(status, body, server closes, rest of the buffer)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("connection closed before a response")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    version, status = lines[0].split(b" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    connection = headers.get(b"connection", b"")
    closes = connection == b"close" or (version == b"HTTP/1.0" and connection != b"keep-alive")
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError("connection closed in a response body")
            buf += chunk
        return int(status), buf[:length], closes, buf[length:]
    while True:  # no length: the body ends with the connection
        chunk = sock.recv(65536)
        if not chunk:
            return int(status), buf, True, b""
        buf += chunk


def exchange(port: int, requests: list[bytes], connections: int = 8) -> list[tuple[int, bytes]]:
    """Send every request once (keep-alive where the server allows it); (status, body) each."""
    results: list[tuple[int, bytes] | None] = [None] * len(requests)
    failures: list[BaseException] = []

    def worker(first: int) -> None:
        sock: socket.socket | None = None
        buf = b""
        try:
            for index in range(first, len(requests), connections):
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
                    buf = b""
                sock.sendall(requests[index])
                status, body, closes, buf = _read_response(sock, buf)
                results[index] = (status, body)
                if closes:
                    sock.close()
                    sock = None
        except BaseException as exc:
            failures.append(exc)
        finally:
            if sock is not None:
                sock.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True)
               for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise BenchError(f"HTTP client failed: {failures[0]!r}")
    return [r for r in results if r is not None]


def check_response(body: bytes, cert: Cert, issuer: Issuer, *, verify: bool,
                   chain: bool) -> str | None:
    """None when ``body`` is a successful OCSP response with the right status for ``cert``."""
    try:
        resp = ocsp.load_der_ocsp_response(body)
    except ValueError:
        return "not a DER OCSPResponse"
    if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return f"responseStatus {resp.response_status.name}"
    if resp.serial_number != cert.serial:
        return "wrong serial"
    if (resp.issuer_name_hash, resp.issuer_key_hash) != (issuer.name_hash, issuer.key_hash) \
            or not isinstance(resp.hash_algorithm, hashes.SHA1):
        return "wrong CertID"
    now = datetime.now(UTC)
    if not resp.this_update_utc <= now + timedelta(seconds=5) or \
            (resp.next_update_utc is not None and resp.next_update_utc <= now):
        return "not current"
    if cert.revoked_at is None:
        if resp.certificate_status is not ocsp.OCSPCertStatus.GOOD:
            return f"{resp.certificate_status.name} instead of GOOD"
    else:
        if resp.certificate_status is not ocsp.OCSPCertStatus.REVOKED:
            return f"{resp.certificate_status.name} instead of REVOKED"
        if resp.revocation_time_utc != cert.revoked_at:
            return "wrong revocation time"
        if resp.revocation_reason is not CRYPTOGRAPHY_REASONS[cert.reason or 0]:
            return f"wrong reason {resp.revocation_reason}"
    return signature_fault(resp, issuer, chain=chain) if verify else None


def signature_fault(resp: ocsp.OCSPResponse, issuer: Issuer, *, chain: bool) -> str | None:
    """None when the response's signature verifies with the responder certificate it carries
    and, with ``chain``, that certificate was issued by ``issuer``; else what is wrong."""
    if not resp.certificates:
        return "no responder certificate"
    responder = resp.certificates[0]
    try:
        key = responder.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        assert resp.signature_hash_algorithm is not None
        key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(),
                   resp.signature_hash_algorithm)
        if chain:
            responder.verify_directly_issued_by(issuer.certificate)
    except Exception as exc:
        return f"signature or chain does not verify ({type(exc).__name__})"
    return None


def check_all(port: int, requests: list[bytes], certs: list[Cert],
              issuers: dict[int, Issuer], *, verify: bool, chain: bool,
              connections: int = 8) -> int:
    """Send, check every response; raise on the first wrong one. Returns how many were checked."""
    answers = exchange(port, requests, connections)
    if len(answers) != len(requests):
        raise BenchError("responses missing")
    for (status, body), cert in zip(answers, certs, strict=True):
        problem = f"HTTP {status}" if status != 200 else check_response(
            body, cert, issuers[cert.generation_id], verify=verify, chain=chain)
        if problem is not None:
            raise BenchError(f"wrong OCSP response for serial {cert.serial:x}: {problem}")
    return len(answers)


# --- processes ----------------------------------------------------------------------------


def listening(port: int) -> bool:
    """Whether something listens on ``port``, read from /proc (connecting would wedge openssl)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@contextlib.contextmanager
def started(name: str, cmd: list[str], env: dict[str, str], log_path: Path, port: int,
            ready: Callable[[], bool], timeout: float = 600) -> Iterator[Server]:
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(name, port, proc, log_path)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}:\n{server.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{name} not ready after {timeout:.0f} s:\n{server.tail()}")
            time.sleep(0.1)
        yield server
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    # uvicorn's worker processes, if any, are in the session this server started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def busy_cores(seconds: float = 2.0) -> float:
    """CPU in use on the whole machine (cores), from /proc/stat: run while our servers idle,
    it is what other processes take from the measurement."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return (1 - (idle1 - idle0) / max(1, total1 - total0)) * (os.cpu_count() or 1)


def wait_quiet(limit: float, kind: str) -> float:
    """Wait up to ``limit`` seconds for the machine to be quiet (< 0.25 cores busy)."""
    deadline = time.monotonic() + limit
    busy = busy_cores()
    while busy >= 0.25 and time.monotonic() < deadline:
        log(f"[{kind}] waiting for a quiet machine: {busy:.2f} cores busy elsewhere")
        time.sleep(10)
        busy = busy_cores()
    return busy


# --- the servers of a run -----------------------------------------------------------------


BARE_HEADERS_ENV = "JPKI_BENCH_BARE_BYTES"


def _bare_app() -> Callable[..., Any]:
    body = b"\x30" * int(os.environ.get(BARE_HEADERS_ENV, "1500"))
    headers = [(b"content-type", b"application/ocsp-response"),
               (b"content-length", str(len(body)).encode())]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    message = {"type": "http.response.body", "body": body}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send(start)
            await send(message)
        elif scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return app


def bare_factory() -> Callable[..., Any]:
    """uvicorn ``--factory`` target for the bare baseline with several workers."""
    return _bare_app()


def serve_child(argv: list[str]) -> None:
    """``python -m bench.ocsp --serve KIND PORT ACCESS_LOG WORKERS``: the servers of the
    baselines and diagnostics, each started exactly as ``jpki serve`` starts uvicorn
    (``uvicorn.run(app, host, port, log_level="info")``) but for the options named."""
    import uvicorn

    kind, port, access_log, workers = argv[0], int(argv[1]), argv[2] == "1", int(argv[3])
    options: dict[str, Any] = {"host": "127.0.0.1", "port": port, "log_level": "info",
                               "access_log": access_log}
    if kind == "bare":
        if workers > 1:
            uvicorn.run("bench.ocsp:bare_factory", factory=True, workers=workers, **options)
        else:
            uvicorn.run(_bare_app(), **options)
    elif kind == "jpki":
        if workers > 1:  # Settings() from JPKI_DATA_DIR / JPKI_DATABASE_URL in each worker
            uvicorn.run("api.app:create_app", factory=True, workers=workers, **options)
        else:
            from api.app import create_app
            from jpki.settings import Settings

            uvicorn.run(create_app(Settings()), **options)
    else:
        raise SystemExit(f"unknown server kind {kind}")


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Measurement:
    target: str
    method: str
    connections: int
    responses_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    bytes_per_response: float
    server_cores: float  # CPU used by the server's processes during the run (median)
    wrk_cores: float  # by wrk
    other_cores: float  # by anything else on the machine (the worst run)
    runs: list[float] = field(default_factory=list)  # responses/s of each repeat


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    return sum(values), values[3] + values[4]  # total, idle + iowait


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (uvicorn's worker processes)."""
    out = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError), open(f"/proc/{entry}/stat",
                                                        encoding="ascii") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
    return out


def _tree_ticks(pid: int) -> int:
    """utime + stime of ``pid`` and its children (uvicorn's workers), in clock ticks."""
    total = 0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError), open(f"/proc/{p}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def run_wrk(server: Server, lua: Path, connections: int, seconds: float) -> dict[str, float]:
    """One wrk run; besides wrk's figures, the cores used by the server, by wrk and by
    everything else on the machine during the run (PostgreSQL's backends count as else)."""
    import resource

    threads = 1 if connections == 1 else 2
    hz = os.sysconf("SC_CLK_TCK")
    total0, idle0 = _machine_ticks()
    server0 = _tree_ticks(server.proc.pid)
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
                          "--timeout", "5s", "--latency", "-s", str(lua),
                          f"http://127.0.0.1:{server.port}/"],
                         capture_output=True, text=True, check=False, timeout=seconds + 120)
    elapsed = time.perf_counter() - began
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server1 = _tree_ticks(server.proc.pid)
    total1, idle1 = _machine_ticks()
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip()[-1000:]}")
    result: dict[str, float] = json.loads(line.removeprefix("WRKJSON "))
    busy = (1 - (idle1 - idle0) / max(1, total1 - total0)) * (os.cpu_count() or 1)
    result["server_cores"] = (server1 - server0) / hz / elapsed
    result["wrk_cores"] = (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime
                           - usage0.ru_stime) / elapsed
    result["other_cores"] = max(0.0, busy - result["server_cores"] - result["wrk_cores"])
    return result


def summarise(target: str, method: str, connections: int,
              runs: list[dict[str, float]]) -> Measurement:
    rates = [r["requests"] / (r["duration_us"] / 1e6) for r in runs]
    errors = [r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"] for r in runs]
    return Measurement(
        target=target, method=method, connections=connections,
        responses_per_s=statistics.median(rates),
        p50_ms=statistics.median(r["p50_us"] for r in runs) / 1000,
        p99_ms=statistics.median(r["p99_us"] for r in runs) / 1000,
        requests=int(sum(r["requests"] for r in runs)), errors=int(sum(errors)),
        bytes_per_response=sum(r["bytes"] for r in runs) / max(1, sum(r["requests"]
                                                                      for r in runs)),
        server_cores=statistics.median(r["server_cores"] for r in runs),
        wrk_cores=statistics.median(r["wrk_cores"] for r in runs),
        other_cores=max(r["other_cores"] for r in runs),
        runs=[round(x) for x in rates])


@dataclass
class DatabaseResult:
    database: str
    database_version: str
    certificates: int
    revoked: int
    hot: int
    presigned: int
    setup_seconds: dict[str, float]
    response_bytes: int
    checked_responses: int
    figures: dict[str, Any]
    measurements: list[Measurement]
    diagnostics: list[Measurement]
    ratios: dict[str, float]
    targets: dict[str, bool]
    notes: list[str]


def _ready_jpki(port: int) -> Callable[[], bool]:
    return lambda: http_ok(port, "/healthz")


def _ready_tcp(port: int) -> Callable[[], bool]:
    return lambda: listening(port)


def refresh_query_ms(url: str) -> float:
    """Milliseconds of the read the OCSP refresh job makes every 0.25 s in every worker (the
    status-change feed, ``StatusChangeFeed.changes_since``, nothing changed), through the
    store's own feed on its read-only engine, as the server wires it: the median of 5."""
    from jpki.store import UnitOfWorkFactory, create_store_engine
    from jpki.store.status_feed import SqlStatusChangeFeed

    engine = create_store_engine(url, read_only=True)
    try:
        feed = SqlStatusChangeFeed(UnitOfWorkFactory(engine))
        times = []
        for _ in range(5):
            since = datetime.now(UTC) - timedelta(seconds=1)
            began = time.perf_counter()
            feed.changes_since(since)
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)
    finally:
        engine.dispose()


def process_cpu(pid: int, seconds: float = 3.0) -> float:
    """Cores used by process ``pid`` and its worker processes over ``seconds``."""
    before = _tree_ticks(pid)
    time.sleep(seconds)
    return (_tree_ticks(pid) - before) / os.sysconf("SC_CLK_TCK") / seconds


class DatabaseRun:
    """Everything measured on one database."""

    def __init__(self, kind: str, root: Path, args: argparse.Namespace) -> None:
        self.kind = kind
        self.args = args
        self.data_dir = root / kind
        self.data_dir.mkdir(mode=0o700)
        self.work = root / f"{kind}-work"
        self.work.mkdir()
        self.index = self.work / "index.txt"
        self.timings: dict[str, float] = {}
        self.figures: dict[str, Any] = {}
        self.notes: list[str] = []
        self.checked = 0
        self.fresh_until = float("inf")

    def log(self, message: str) -> None:
        log(f"[{self.kind}] {message}")

    def fresh_for(self, seconds: float) -> bool:
        """Pre-signed responses are re-signed at half their validity (60 min in the recipe):
        a run must end before the hot set goes stale, or it would measure live signing."""
        return time.time() + seconds + 5 <= self.fresh_until

    def guard(self, seconds: float) -> None:
        if not self.fresh_for(seconds):
            raise BenchError("the pre-signed hot set would go stale during the next run: use "
                             "fewer --repeat, fewer --seconds or a smaller --hot")

    def run(self) -> DatabaseResult:
        with fresh_database(self.kind, self.data_dir, "jpki-bench") as url:
            self.env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
            self.env.update({"JPKI_DATA_DIR": str(self.data_dir), "JPKI_DATABASE_URL": url,
                             "PYTHONUNBUFFERED": "1"})
            self.setup(url)
            self.measure()
            if not self.args.no_diagnostics:
                self.diagnostics += self.measure_diagnostics()
            self.checked += self.check_openssl()
            version = (postgres_server_version() or "?") if self.kind == "postgres" else \
                __import__("sqlite3").sqlite_version
        ratios, targets = evaluate(self.measurements, self.response_bytes)
        return DatabaseResult(
            database=self.kind, database_version=version, certificates=self.args.certificates,
            revoked=self.args.certificates // REVOKED_EVERY, hot=len(self.hot),
            presigned=self.presigned,
            setup_seconds={k: round(v, 1) for k, v in self.timings.items()},
            response_bytes=self.response_bytes, checked_responses=self.checked,
            figures={k: round(v, 3) if isinstance(v, float) else v
                     for k, v in self.figures.items()},
            measurements=self.measurements, diagnostics=self.diagnostics, ratios=ratios,
            targets=targets, notes=self.notes)

    # --- setup, not measured ----------------------------------------------------------

    def setup(self, url: str) -> None:
        from jpki.authority.recipe import load_recipe

        args, data_dir = self.args, str(self.data_dir)
        began = time.perf_counter()
        run_cli(["init", "--data-dir", data_dir], self.env)
        f = resident_fields(0)
        resident = run_cli(["resident", "add", "--data-dir", data_dir, "--name", f["name"],
                            "--birth", f["birth_date"].isoformat(), "--sex", str(f["sex"]),
                            "--address", f["address"], "--municipality",
                            f["municipality_code"]], self.env)["id"]
        self.timings["jpki_init"] = time.perf_counter() - began
        self.issuers = read_issuers(url)
        self.by_gid = {i.generation_id: i for i in self.issuers.values()}
        self.log(f"loading {args.certificates:,} certificates "
                 f"({args.certificates // REVOKED_EVERY:,} revoked)...")
        began = time.perf_counter()
        self.hot = load_certificates(url, resident, self.issuers, args.certificates, args.hot,
                                     self.index)
        self.timings["bulk_load"] = time.perf_counter() - began
        self.figures["refresh poll query ms"] = refresh_query_ms(url)
        self.log(f"  {self.timings['bulk_load']:.1f} s; pre-signing the hot set of "
                 f"{len(self.hot):,} in the HSM (jpki ocsp presign --limit {len(self.hot)})...")
        if args.wait_quiet:
            self.figures["busy_cores_before_presign"] = wait_quiet(args.wait_quiet, self.kind)
        validity = load_recipe(None).ocsp.validity
        self.fresh_until = time.time() + validity.total_seconds() / 2 - 30
        began = time.perf_counter()
        self.presigned = int(run_cli(["ocsp", "presign", "--data-dir", data_dir, "--limit",
                                      str(len(self.hot))], self.env)["signed"])
        self.timings["presign"] = time.perf_counter() - began
        self.figures["presign_per_s"] = self.presigned / self.timings["presign"]
        self.log(f"  {self.presigned:,} signed in {self.timings['presign']:.1f} s "
                 f"({self.figures['presign_per_s']:.0f}/s)")
        if self.presigned != len(self.hot):
            raise BenchError(f"presign signed {self.presigned}, expected {len(self.hot)}")

        ders = [ocsp_request(c, self.by_gid[c.generation_id]) for c in self.hot]
        self.requests = {m: [http_request(m, d, "/ocsp/") for d in ders]
                         for m in ("POST", "GET")}
        self.openssl_requests = {"POST": self.requests["POST"],
                                 "GET": [http_request("GET", d, "/") for d in ders]}
        self.luas: dict[tuple[str, str], Path] = {}
        self.diag_hot = min(DIAG_HOT, len(self.hot))
        diag = {m: r[:self.diag_hot] for m, r in self.requests.items()}
        for target, reqs in (("jpki", self.requests), ("openssl", self.openssl_requests),
                             ("diag", diag)):
            for method, raw in reqs.items():
                data = self.work / f"{target}-{method}.req"
                write_requests(data, raw)
                self.luas[target, method] = self.work / f"{target}-{method}.lua"
                write_lua(self.luas[target, method], data)
        self.sample = random.Random(8954).sample(range(len(self.hot)), min(SAMPLE,
                                                                           len(self.hot)))

    def sample_check(self, port: int) -> int:
        certs = [self.hot[i] for i in self.sample]
        return sum(check_all(port, [self.requests[m][i] for i in self.sample], certs,
                             self.by_gid, verify=True, chain=True) for m in ("POST", "GET"))

    def warm(self, server: Server, workers: int, count: int | None = None) -> list[float]:
        """Send the first ``count`` hot requests (all by default), checking every answer: one
        pass for one worker; for several, passes until one runs 3x faster than the first (each
        worker has its own memory cache and request memo, and connections land on either), at
        most 4. Returns the rate of each pass (the first is served from the database)."""
        count = len(self.hot) if count is None else count
        rates: list[float] = []
        for _ in range(1 if workers == 1 else 4):
            began = time.perf_counter()
            self.checked += check_all(server.port, self.requests["POST"][:count],
                                      self.hot[:count], self.by_gid, verify=False, chain=False)
            rates.append(count / (time.perf_counter() - began))
            if len(rates) > 1 and rates[-1] > 3 * rates[0]:
                break
        return rates

    # --- the headline: jpki serve, openssl, bare ASGI ----------------------------------

    def measure(self) -> None:
        self.figures["busy_cores_before_serve"] = busy_cores()
        port = free_port()
        began = time.perf_counter()
        with started("jpki serve", [*jpki_command(), "serve", "--data-dir", str(self.data_dir),
                                    "--port", str(port)], self.env,
                     self.work / "jpki-serve.log", port, _ready_jpki(port)) as jpki:
            self.timings["jpki_serve_start"] = time.perf_counter() - began
            self.log(f"jpki serve up in {self.timings['jpki_serve_start']:.1f} s; first pass "
                     "over the hot set, every response checked...")
            began = time.perf_counter()
            self.figures["first_pass_per_s"] = self.warm(jpki, 1)[0]
            self.timings["first_pass"] = time.perf_counter() - began
            self.checked += self.sample_check(jpki.port)
            self.response_bytes = len(exchange(jpki.port, self.requests["POST"][:1], 1)[0][1])
            self.log(f"  {self.timings['first_pass']:.1f} s "
                     f"({self.figures['first_pass_per_s']:.0f} requests/s from the database); "
                     f"responses of {self.response_bytes} bytes")
            self.figures["idle cores, jpki serve"] = process_cpu(jpki.proc.pid)
            self.figures["busy_cores_with_jpki_idle"] = busy_cores()
            self.env_bare = dict(self.env, **{BARE_HEADERS_ENV: str(self.response_bytes)})
            log_before = jpki.log_path.stat().st_size
            self.measurements = self.interleaved(jpki)
            self.diagnostics: list[Measurement] = []
            self.checked += self.sample_check(jpki.port)
            written = (jpki.log_path.stat().st_size - log_before) / 1e6
            self.notes.append(f"jpki serve wrote {written:.0f} MB of uvicorn access log "
                              "during the measurements")

    def interleaved(self, jpki: Server) -> list[Measurement]:
        args, work = self.args, self.work
        bare_port, quiet_port = free_port(), free_port()
        raw: dict[tuple[str, str, int], list[dict[str, float]]] = {}
        with contextlib.ExitStack() as stack:
            bare = stack.enter_context(started(
                "bare ASGI (jpki serve options)",
                [sys.executable, "-m", "bench.ocsp", "--serve", "bare", str(bare_port), "1",
                 "1"], self.env_bare, work / "bare.log", bare_port, _ready_tcp(bare_port)))
            quiet = stack.enter_context(started(
                "bare ASGI (access log off)",
                [sys.executable, "-m", "bench.ocsp", "--serve", "bare", str(quiet_port), "0",
                 "1"], self.env_bare, work / "bare-quiet.log", quiet_port,
                _ready_tcp(quiet_port)))
            for server in (jpki, bare, quiet):
                for method in ("POST", "GET"):
                    run_wrk(server, self.luas["jpki", method], 8, min(args.seconds, 3))
            self.figures["busy_cores_before_measuring"] = busy_cores()
            for repeat in range(args.repeat):
                for method, conns in LOADS:
                    self.log(f"run {repeat + 1}/{args.repeat}: {method} at {conns} "
                             "connection(s): jpki, openssl, bare, bare without access log")
                    for name, server in (("jpki serve", jpki),
                                         ("bare ASGI, jpki serve options", bare),
                                         ("bare ASGI, access log off", quiet)):
                        self.guard(args.seconds)
                        raw.setdefault((name, method, conns), []).append(
                            run_wrk(server, self.luas["jpki", method], conns,
                                    args.seconds))
                    with self.openssl_server() as server:
                        raw.setdefault(("openssl ocsp", method, conns), []).append(
                            run_wrk(server, self.luas["openssl", method], conns,
                                    args.seconds))
        order = ["jpki serve", "openssl ocsp", "bare ASGI, jpki serve options",
                 "bare ASGI, access log off"]
        return [summarise(t, m, c, raw[t, m, c]) for t in order for m, c in LOADS]

    # --- openssl ------------------------------------------------------------------------

    def openssl_command(self, port: int) -> list[str]:
        work = self.work
        ca = work / "openssl-ca.pem"
        if not ca.exists():
            ca.write_bytes(b"".join(i.certificate.public_bytes(serialization.Encoding.PEM)
                                    for i in self.issuers.values()))
            key = rsa.generate_private_key(65537, 2048)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench openssl OCSP")])
            now = datetime.now(UTC)
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - timedelta(days=1))
                    .not_valid_after(now + timedelta(days=30))
                    .add_extension(x509.ExtendedKeyUsage(
                        [x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
                    .sign(key, hashes.SHA256()))
            (work / "openssl-responder.pem").write_bytes(cert.public_bytes(
                serialization.Encoding.PEM))
            (work / "openssl-responder.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        return ["openssl", "ocsp", "-index", str(self.index), "-CA", str(ca),
                "-rsigner", str(work / "openssl-responder.pem"),
                "-rkey", str(work / "openssl-responder.key"),
                "-port", str(port), "-ignore_err", "-nmin", "60"]

    @contextlib.contextmanager
    def openssl_server(self) -> Iterator[Server]:
        """A fresh ``openssl ocsp`` (it loads the index of every certificate at start)."""
        port = free_port()
        log_path = self.work / "openssl.log"
        offset = log_path.stat().st_size if log_path.exists() else 0

        def ready() -> bool:
            # It listens before it loads the index (about 1 s for 10^6 lines) and says when
            # it is ready; the first requests would otherwise wait for the load.
            if not listening(port):
                return False
            with log_path.open("rb") as fh:
                fh.seek(offset)
                return b"waiting for OCSP client connections" in fh.read()

        with started("openssl ocsp", self.openssl_command(port), dict(os.environ), log_path,
                     port, ready, timeout=300) as server:
            yield server

    def check_openssl(self) -> int:
        """openssl's answers to the sample must be right too (else it could be measuring
        errors, which cost less than signatures)."""
        n = 0
        certs = [self.hot[i] for i in self.sample]
        for method in ("POST", "GET"):
            with self.openssl_server() as server:
                n += check_all(server.port, [self.openssl_requests[method][i]
                                             for i in self.sample], certs, self.by_gid,
                               verify=True, chain=False, connections=1)
        self.log("openssl's responses to the sample are right too")
        return n

    # --- diagnostics --------------------------------------------------------------------

    def measure_diagnostics(self) -> list[Measurement]:
        """2 workers (``jpki serve --workers 2``) against the bare app with 2 workers, and what
        serving without uvicorn's access log would give (the same app, started like ``jpki
        serve`` but with ``access_log=False``), interleaved. Not the headline."""
        args, work = self.args, self.work
        jpki = [*jpki_command(), "serve", "--data-dir", str(self.data_dir)]
        child = [sys.executable, "-m", "bench.ocsp", "--serve"]
        servers: list[tuple[str, bool, int, Callable[[int], list[str]]]] = [
            ("jpki serve --workers 2", True, 2,
             lambda port: [*jpki, "--workers", "2", "--port", str(port)]),
            ("bare ASGI, jpki serve options, 2 workers", False, 2,
             lambda port: [*child, "bare", str(port), "1", "2"]),
            ("bare ASGI, access log off, 2 workers", False, 2,
             lambda port: [*child, "bare", str(port), "0", "2"]),
            ("jpki app, access log off, 1 worker", True, 1,
             lambda port: [*child, "jpki", str(port), "0", "1"]),
            ("jpki app, access log off, 2 workers", True, 2,
             lambda port: [*child, "jpki", str(port), "0", "2"]),
        ]
        raw: dict[tuple[str, str, int], list[dict[str, float]]] = {}
        with contextlib.ExitStack() as stack:
            running = []
            for name, is_jpki, workers, command in servers:
                port = free_port()
                server = stack.enter_context(started(
                    name, command(port), self.env if is_jpki else self.env_bare,
                    work / f"diag-{len(running)}.log", port,
                    _ready_jpki(port) if is_jpki else _ready_tcp(port)))
                if is_jpki:
                    self.log(f"diagnostics: warming {name}...")
                    rates = self.warm(server, workers, self.diag_hot)
                    self.figures[f"warm-up passes/s, {name}"] = [round(r) for r in rates]
                    self.figures[f"idle cores, {name}"] = process_cpu(server.proc.pid)
                for method in ("POST", "GET"):
                    run_wrk(server, self.luas["diag", method], 8, min(args.seconds, 5))
                running.append(server)
            for repeat in range(args.repeat):
                if not self.fresh_for(2 * len(running) * (args.seconds + 1)):
                    self.notes.append(f"diagnostics stopped after {repeat} repeat(s): the "
                                      "pre-signed hot set was about to go stale")
                    break
                for method in ("POST", "GET"):
                    self.log(f"diagnostics {repeat + 1}/{args.repeat}: {method} at 8 "
                             "connections, " + ", ".join(s.name for s in running))
                    for server in running:
                        raw.setdefault((server.name, method, 8), []).append(
                            run_wrk(server, self.luas["diag", method], 8, args.seconds))
        return [summarise(n, m, 8, raw[n, m, 8]) for n, _, _, _ in servers
                for m in ("POST", "GET") if (n, m, 8) in raw]


def evaluate(measurements: list[Measurement],
             response_bytes: int) -> tuple[dict[str, float], dict[str, bool]]:
    by = {(m.target, m.method, m.connections): m for m in measurements}
    ratios: dict[str, float] = {}
    targets: dict[str, bool] = {}
    for method in ("POST", "GET"):
        jpki = by["jpki serve", method, 8].responses_per_s
        ratios[f"{method} jpki/openssl"] = round(jpki / by["openssl ocsp", method, 8]
                                                 .responses_per_s, 2)
        ratios[f"{method} jpki/bare"] = round(jpki / by["bare ASGI, access log off", method, 8]
                                              .responses_per_s, 3)
        ratios[f"{method} jpki/bare with jpki serve options"] = round(
            jpki / by["bare ASGI, jpki serve options", method, 8].responses_per_s, 3)
        targets[f"{method} ≥ {TARGET_VS_OPENSSL:g}x openssl"] = \
            ratios[f"{method} jpki/openssl"] >= TARGET_VS_OPENSSL
        targets[f"{method} ≥ {TARGET_VS_BARE:g}x bare ASGI"] = \
            ratios[f"{method} jpki/bare"] >= TARGET_VS_BARE
    worst = max(m.p99_ms for m in measurements if m.target == "jpki serve")
    ratios["worst jpki p99 ms"] = round(worst, 2)
    targets[f"p99 < {TARGET_P99_MS:g} ms"] = worst < TARGET_P99_MS
    targets["no errors"] = all(m.errors == 0 for m in measurements)
    # A tryLater or malformedRequest answer is 5 bytes: every jpki response must be full size.
    targets["every jpki response full size"] = all(
        m.bytes_per_response > response_bytes for m in measurements if m.target == "jpki serve")
    return ratios, targets


# --- output -------------------------------------------------------------------------------


def print_result(r: DatabaseResult, args: argparse.Namespace) -> None:
    print(f"\n== {r.database} {r.database_version}: {r.certificates:,} certificates in the store "
          f"({r.revoked:,} revoked); requests cycle over a hot set of {r.hot:,}, all pre-signed "
          f"({r.presigned:,} HSM signatures); {args.seconds:g} s per run, median of "
          f"{args.repeat}")
    print(f"   setup (not measured), s: {r.setup_seconds}")
    print(f"   {r.checked_responses:,} responses checked (status, serial, CertID, revocation; "
          f"signature and chain for samples); response {r.response_bytes} bytes")
    header = f"   {'target':<42} {'method':<6} {'conns':>5} {'resp/s':>9} {'p50 ms':>7} " \
             f"{'p99 ms':>7} {'errors':>6} {'B/resp':>7} {'cores: server':>13} " \
             f"{'wrk':>5} {'other':>5}"
    for title, rows in (("", r.measurements), ("diagnostics (not the headline):",
                                               r.diagnostics)):
        if not rows:
            continue
        if title:
            print(f"   {title}")
        print(header)
        for m in rows:
            print(f"   {m.target:<42} {m.method:<6} {m.connections:>5} "
                  f"{m.responses_per_s:>9,.0f} {m.p50_ms:>7.2f} {m.p99_ms:>7.2f} "
                  f"{m.errors:>6} {m.bytes_per_response:>7.0f} {m.server_cores:>13.2f} "
                  f"{m.wrk_cores:>5.2f} {m.other_cores:>5.2f}")
    print("   ratios at 8 connections: " + "; ".join(f"{k} {v:g}" for k, v in r.ratios.items()))
    print("   targets: " + "; ".join(f"{k}: {'met' if ok else 'MISSED'}"
                                     for k, ok in r.targets.items()))
    print("   figures: " + "; ".join(f"{k} {v}" for k, v in r.figures.items()))
    for note in r.notes:
        print(f"   note: {note}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Stop cleanly (servers stopped, databases dropped) on SIGTERM, and on SIGINT even when
    # started in the background by a shell, which ignores SIGINT there.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if argv[:1] == ["--serve"]:
        serve_child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.ocsp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--certificates", type=int, default=1_000_000)
    parser.add_argument("--hot", type=int, default=50_000,
                        help="certificates pre-signed and requested (≤ 100,000: the size of "
                             "the HTTP layer's request memo)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--no-diagnostics", action="store_true")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for other processes to leave the CPUs idle "
                             "before pre-signing and measuring (the CPU other processes use "
                             "during every run is reported either way)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--save", type=Path, metavar="FILE",
                        help="also write the JSON document to FILE")
    args = parser.parse_args(argv)
    if not 1 <= args.hot <= min(args.certificates, 100_000):
        parser.error("--hot must be between 1 and min(--certificates, 100000)")
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    root = Path(tempfile.mkdtemp(prefix="jpki-bench-ocsp-")).resolve()
    root.chmod(0o755)
    started_at = datetime.now(UTC)
    try:
        info = machine_info(root)
        info["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True,
                                     check=False).stdout.splitlines()[0].split(" [")[0]
        info["openssl"] = subprocess.run(["openssl", "version"], capture_output=True, text=True,
                                         check=False).stdout.strip()
        import uvicorn

        info["uvicorn"] = uvicorn.__version__
        for module in ("uvloop", "httptools"):
            with contextlib.suppress(ImportError):
                info[module] = __import__(module).__version__
        results = [DatabaseRun(kind, root, args).run() for kind in kinds]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {"command": "python -m bench.ocsp " + " ".join(argv),
              "started": started_at.isoformat(timespec="seconds"), "machine": info,
              "load_average_at_end": load_average(),
              "targets": {"vs_openssl": TARGET_VS_OPENSSL, "vs_bare": TARGET_VS_BARE,
                          "p99_ms": TARGET_P99_MS},
              "results": [asdict(r) for r in results]}
    document = json.dumps(report, indent=2, default=str)
    if args.save:
        args.save.write_text(document + "\n")
    if args.json:
        print(document)
    else:
        print(f"bench.ocsp — {started_at:%Y-%m-%d %H:%M} UTC — {info['cpus']} × "
              f"{info['cpu_model']}, Python {info['python']}, {info['openssl']}, "
              f"{info['wrk']}, uvicorn {info['uvicorn']} (uvloop "
              f"{info.get('uvloop', '-')}, httptools {info.get('httptools', '-')})")
        for r in results:
            print_result(r, args)
    return 0 if all(all(r.targets.values()) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
