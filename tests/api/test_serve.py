"""`jpki serve` as deployed: a subprocess with its own data directory, spoken to over sockets.

* Its HTTP limits (api.http_protocol): an oversized request head is refused with 431 and never
  buffered (16 heads of 8 MB at once once took 241 MiB), connections that send nothing or a head
  too slowly are closed after the read timeout, idle keep-alive connections after theirs, and
  connections beyond the limit are answered 503 at once.
* Bad identifiers on SQLite and on PostgreSQL: a 4xx problem, and a server log without a
  traceback (a NUL once reached PostgreSQL and wrote 130 lines of one).
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.test_cli import _command, _env, _start_server, jpki_ok
from tests.conftest import empty_postgres_database

pytestmark = [pytest.mark.hsm, pytest.mark.slow]

MiB = 1024 * 1024


@dataclass(frozen=True)
class Ca:
    data_dir: Path
    env: dict[str, str]
    operator: tuple[str, str]


def _ca(data_dir: Path, env: dict[str, str]) -> Ca:
    jpki_ok("init", data_dir=data_dir, env=env)
    client = jpki_ok("client", "add", "--name", "ops", "--role", "operator", data_dir=data_dir,
                     env=env)
    return Ca(data_dir, env, (client["client_id"], client["client_secret"]))


@pytest.fixture(scope="module")
def sqlite_ca(tmp_path_factory: pytest.TempPathFactory, softhsm_module: str) -> Ca:
    return _ca(tmp_path_factory.mktemp("serve") / "ca", _env())


@pytest.fixture(scope="module")
def postgres_ca(tmp_path_factory: pytest.TempPathFactory, softhsm_module: str) -> Iterator[Ca]:
    """A CA whose records are in a PostgreSQL database of its own, made by `jpki init`."""
    with empty_postgres_database("serve") as url:
        yield _ca(tmp_path_factory.mktemp("serve-pg") / "ca", _env(JPKI_DATABASE_URL=url))


class Server:
    def __init__(self, ca: Ca, log_path: Path, *options: str) -> None:
        self.log_path = log_path
        self.process, self.url = _start_server(ca.data_dir, log_path, ca.env, options)
        self.port = int(self.url.rsplit(":", 1)[1])

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        return sock

    def rss(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kb) * 1024

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class Started(Server):
        def __init__(self, ca: Ca, *options: str) -> None:
            super().__init__(ca, tmp_path / f"server-{len(started)}.log", *options)
            started.append(self)

    yield Started
    for server in started:
        server.stop()


def get(sock: socket.socket, path: str = "/healthz") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: jpki\r\n\r\n".encode())
    return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    """One response (head and Content-Length body), or what came before the peer closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def closed_after(sock: socket.socket) -> tuple[bytes, float]:
    """(what the server sent before it closed the connection, seconds it took)."""
    began = time.monotonic()
    sock.settimeout(30)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic() - began


# --- the size of a request head ---------------------------------------------------------------


def send_big_head(server: Server, size: int) -> bytes:
    """A request whose one header is ``size`` bytes, sent until the server stops reading;
    returns its answer (empty if it only closed the connection)."""
    sock = server.connect()
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: jpki\r\nX-Padding: ")
        chunk = b"a" * 65536
        try:
            for _ in range(size // len(chunk)):
                sock.sendall(chunk)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end: what we want
        try:
            return read_response(sock)
        except ConnectionResetError:
            return b""
    finally:
        sock.close()


def test_an_oversized_head_is_refused_and_never_buffered(sqlite_ca: Ca,
                                                          start: type[Server]) -> None:
    server = start(sqlite_ca)
    with server.connect() as sock:
        assert get(sock).startswith(b"HTTP/1.1 200 ")
        # Just under the default limit (16 KiB): an ordinary request, answered.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: jpki\r\nX-Padding: " + b"a" * 15_000
                     + b"\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
    baseline = server.rss()

    answers: list[bytes] = []
    threads = [threading.Thread(target=lambda: answers.append(send_big_head(server, 8 * MiB)))
               for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 16
    for answer in answers:
        # Refused with 431 — or, if the refusal could not be read before the peer reset the
        # connection it had stopped reading, at least closed.
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert any(a.startswith(b"HTTP/1.1 431 ") for a in answers)
    body = next(a for a in answers if a).partition(b"\r\n\r\n")[2]
    assert json.loads(body)["code"] == "request.header_too_large"
    grown = server.rss() - baseline
    assert grown < 32 * MiB, f"resident memory grew by {grown / MiB:.0f} MiB"
    with server.connect() as sock:  # and it still serves
        assert get(sock).startswith(b"HTTP/1.1 200 ")


def test_the_head_limit_is_a_setting(sqlite_ca: Ca, start: type[Server]) -> None:
    server = start(sqlite_ca, "--max-header-bytes", "2048")
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: jpki\r\nX-Padding: " + b"a" * 3000
                     + b"\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 431 ")
    with server.connect() as sock:
        assert get(sock).startswith(b"HTTP/1.1 200 ")


# --- slow and idle connections ------------------------------------------------------------------


def test_idle_and_slow_connections_are_closed_after_the_timeouts(
        sqlite_ca: Ca, start: type[Server]) -> None:
    server = start(sqlite_ca, "--read-timeout", "1", "--keep-alive-timeout", "2")
    idle = [server.connect() for _ in range(50)]  # never send a byte
    slow = server.connect()
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: jp")  # and never finish the head
    kept = server.connect()
    assert get(kept).startswith(b"HTTP/1.1 200 ")  # then idle between requests

    for sock in idle:
        received, seconds = closed_after(sock)
        assert received == b"" and seconds < 10, (received, seconds)
        sock.close()
    received, seconds = closed_after(slow)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert json.loads(received.partition(b"\r\n\r\n")[2])["code"] == "request.timeout"
    received, seconds = closed_after(kept)
    assert received == b"", received
    slow.close()
    kept.close()

    # A body may pause, but not for longer than the read timeout.
    paused = server.connect()
    paused.sendall(b"POST /v1/mobile/challenges HTTP/1.1\r\nHost: jpki\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"purp")
    received, _ = closed_after(paused)
    paused.close()
    assert received.startswith(b"HTTP/1.1 408 "), received

    # A head trickled in a byte at a time is cut off too: the timeout is for the whole head.
    trickle = server.connect()
    began = time.monotonic()
    request = b"GET /healthz HTTP/1.1\r\nHost: jpki\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    try:
        for byte in request:
            trickle.sendall(bytes([byte]))
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        pass
    received, _ = closed_after(trickle)
    trickle.close()
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert time.monotonic() - began < 10


def test_connections_beyond_the_limit_are_refused_at_once(sqlite_ca: Ca,
                                                           start: type[Server]) -> None:
    server = start(sqlite_ca, "--max-connections", "5")
    held = [server.connect() for _ in range(5)]
    assert get(held[0]).startswith(b"HTTP/1.1 200 ")
    refused = server.connect()
    received, _ = closed_after(refused)
    assert received.startswith(b"HTTP/1.1 503 "), received
    refused.close()
    for sock in held:
        sock.close()
    time.sleep(0.5)
    with server.connect() as sock:
        assert get(sock).startswith(b"HTTP/1.1 200 ")


def test_out_of_range_limits_are_refused(sqlite_ca: Ca) -> None:
    run = subprocess.run([*_command(), "serve", "--data-dir",
                          str(sqlite_ca.data_dir), "--max-header-bytes", "10"],
                         capture_output=True, text=True, env=sqlite_ca.env, timeout=60,
                         check=False)
    assert run.returncode == 1
    assert "request.invalid" in run.stderr and "http_max_header_bytes" in run.stderr, run.stderr


# --- bad identifiers, both databases ------------------------------------------------------------


def call(url: str, method: str = "GET", body: bytes | None = None,
         auth: tuple[str, str] | None = None) -> tuple[int, str, dict[str, object]]:
    headers = {"content-type": "application/json"}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        headers["authorization"] = f"Basic {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.headers.get("content-type", ""), {}
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), json.loads(exc.read())


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres",
                                                             marks=pytest.mark.postgres)])
def test_bad_identifiers_are_refused_and_leave_no_traceback(
        database: str, request: pytest.FixtureRequest, start: type[Server]) -> None:
    ca: Ca = request.getfixturevalue(f"{database}_ca")
    server = start(ca)
    operator = ca.operator
    nul = json.dumps("\x00").encode()
    cases = [
        ("GET", "/v1/operators/residents/%00", None, operator),
        ("GET", "/v1/operators/residents/ab%00cd", None, operator),
        ("POST", "/v1/operators/residents/%00/events", b'{"kind": "death"}', operator),
        ("POST", "/v1/operators/cards/%00/events", b'{"kind": "lost"}', operator),
        ("GET", "/v1/certificates/%00", None, operator),
        ("POST", "/v1/operators/relying-parties/%00/status", b'{"status": "suspended"}',
         operator),
        ("POST", "/v1/operators/cards", b'{"resident_id": ' + nul + b"}", operator),
        ("POST", "/v1/operators/residents/%FF%FE/events", b'{"kind": "death"}', operator),
        # Without credentials.
        ("POST", "/v1/mobile/challenges", b'{"purpose": ' + nul + b"}", None),
        ("POST", "/v1/mobile/check-ins", b'{"signed_data": ' + nul + b"}", None),
        ("GET", "/crl/sign/g01/%00.crl", None, None),
    ]
    for method, path, body, auth in cases:
        status, media_type, problem = call(server.url + path, method, body, auth)
        assert 400 <= status < 500 and status not in (401, 403), (path, status, problem)
        assert media_type == "application/problem+json", (path, media_type)
        assert problem.get("code") != "internal", (path, problem)
    time.sleep(0.5)
    log = server.log()
    assert "Traceback" not in log and "psycopg" not in log and "Exception in ASGI" not in log, \
        log
