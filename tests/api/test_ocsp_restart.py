"""OCSP across a `kill -9`, a clean stop and a restart of `jpki serve`, checked with `openssl ocsp`.

The responder signs answers ahead of time and stores them. A process that starts must never serve
a stored answer that a status change has made wrong — a revocation acknowledged just before the
previous server was killed, one made with `jpki cert revoke` while no server ran, or a hold
released while it was down (jpki.change_feed). Each is checked the way a relying party would see
it: `openssl ocsp` against the restarted server, pre-signed (``-no_nonce``) and live (nonce),
within a second of the server answering its health check. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.api.test_cli import (
    ADDRESS,
    BIRTH,
    NAME,
    REPO,
    KeyMaker,
    _env,
    _http,
    _start_server,
    jpki_ok,
    public_keys,  # noqa: F401 - a fixture
    tools,  # noqa: F401 - a fixture
)
from tests.conftest import empty_postgres_database

pytestmark = [pytest.mark.hsm, pytest.mark.slow, pytest.mark.timing]

@dataclass(frozen=True)
class Deployment:
    data_dir: Path
    env: dict[str, str]
    tmp: Path

    def cli(self, *args: str | Path) -> Any:
        return jpki_ok(*args, data_dir=self.data_dir, env=self.env)

    def resident(self, name: str) -> str:
        doc = self.cli("resident", "add", "--name", name, "--birth", BIRTH, "--sex", "1",
                       "--address", ADDRESS, "--municipality", "132217")
        return str(doc["id"])

    def kit(self, action: str, state: Path) -> None:
        """tests/api/mobile_hold_kit.py, as its own process on this deployment."""
        env = dict(self.env, JPKI_DATA_DIR=str(self.data_dir))
        done = subprocess.run([sys.executable, "-m", "tests.api.mobile_hold_kit", action,
                               str(state)], capture_output=True, text=True, env=env, cwd=REPO,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path,
               tools: None) -> Iterator[Deployment]:  # noqa: F811
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        env = _env()
        yield Deployment(data_dir, env, tmp_path)
        return
    with empty_postgres_database("restart") as url:
        yield Deployment(data_dir, _env(JPKI_DATABASE_URL=url), tmp_path)


def openssl_ocsp(url: str, issuer: Path, cert: Path, *, nonce: bool) -> str:
    """`openssl ocsp` for one certificate: the status it printed, with the reason if any.

    One certificate per request: the responder stores (pre-signs) answers to single-certificate
    requests without a nonce (RFC 5019), and those are what a restart must not get wrong."""
    args = ["openssl", "ocsp", "-issuer", str(issuer), "-CAfile", str(issuer), "-url",
            url + "/ocsp", "-timeout", "10", "-cert", str(cert)]
    if not nonce:
        args.append("-no_nonce")
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and "Response verify OK" in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{cert}: "))
    reason = next((line.strip() for line in lines[at + 1:at + 4]
                   if line.strip().startswith("Reason:")), "")
    return f"{lines[at].split(': ', 1)[1]} {reason}".strip()


@contextmanager
def serving(deployment: Deployment, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`jpki serve` on the deployment; stopped cleanly (SIGTERM) at the end unless the block
    killed it, and never left running."""
    server, url = _start_server(deployment.data_dir, log, deployment.env)
    try:
        yield server, url
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()


def test_ocsp_never_says_good_for_what_changed_while_no_server_refreshed(
        deployment: Deployment, public_keys: KeyMaker) -> None:  # noqa: F811
    tmp = deployment.tmp
    deployment.cli("init")
    operator = deployment.cli("client", "add", "--name", "ops", "--role", "operator")
    certs = {}
    # One holder with a signing certificate and an auth one, another with an auth one.
    first, second = deployment.resident(NAME), deployment.resident("佐藤 一郎")
    for name, kind, resident in (("killed", "sign", first), ("offline", "auth", first),
                                 ("stopped", "auth", second)):
        out = tmp / f"{name}.pem"
        issued = deployment.cli("cert", "issue", "--resident", resident, "--kind", kind,
                                "--public-key", public_keys(tmp), "--out", out)
        certs[name] = (out, issued["serial"])
    deployment.cli("ca", "export", "--out", tmp / "ca")
    sign_ca, auth_ca = tmp / "ca" / "sign-ca-g01.pem", tmp / "ca" / "auth-ca-g01.pem"
    hold_state = tmp / "holder.json"
    deployment.kit("hold", hold_state)
    held = tmp / "held.pem"
    held.write_bytes(x509.load_der_x509_certificate(base64.b64decode(json.loads(
        hold_state.read_text())["mobile_auth_der"])).public_bytes(Encoding.PEM))
    killed, offline, stopped = (certs[n][0] for n in ("killed", "offline", "stopped"))
    log = tmp / "server.log"

    # 1. A server answers, and stores what it pre-signed: good, good, good, on hold.
    with serving(deployment, log) as (server, url):
        assert openssl_ocsp(url, sign_ca, killed, nonce=False) == "good"
        assert openssl_ocsp(url, auth_ca, offline, nonce=False) == "good"
        assert openssl_ocsp(url, auth_ca, stopped, nonce=False) == "good"
        assert openssl_ocsp(url, auth_ca, held, nonce=False) == "revoked Reason: certificateHold"
        check = deployment.cli("ocsp", "verify", "--check-only")
        assert (check["checked"], check["contradicted"]) == (4, 0), check
        # 2. A revocation is acknowledged, and the server is killed at once: no poll since.
        status, ack = _http("POST", f"{url}/v1/operators/certificates/{certs['killed'][1]}"
                            "/revocation", {"reason": "keyCompromise"},
                            auth=(operator["client_id"], operator["client_secret"]))
        server.send_signal(signal.SIGKILL)
        assert status == 200 and ack["changed"] is True, ack
    assert server.returncode == -signal.SIGKILL

    # 3. While no server runs: `jpki cert revoke`, and the phone lifts its hold.
    deployment.cli("cert", "revoke", "--serial", certs["offline"][1], "--reason",
                   "cessationOfOperation")
    deployment.kit("lift", hold_state)

    # 4. The restarted server says so within a second of answering its health check.
    with serving(deployment, log) as (server, url):
        ready = time.monotonic()
        for nonce in (False, True):
            assert openssl_ocsp(url, sign_ca, killed, nonce=nonce) == \
                "revoked Reason: keyCompromise"
            assert openssl_ocsp(url, auth_ca, offline, nonce=nonce) == \
                "revoked Reason: cessationOfOperation"
            assert openssl_ocsp(url, auth_ca, held, nonce=nonce) == "good"
            if not nonce:
                assert time.monotonic() - ready < 1.0
    # uvicorn shuts down gracefully, then re-raises the signal for its exit status.
    assert server.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log.read_text()

    # 5. After that clean stop, a revocation by the CLI, then a start: the same.
    deployment.cli("cert", "revoke", "--serial", certs["stopped"][1], "--reason",
                   "keyCompromise")
    with serving(deployment, log) as (server, url):
        assert openssl_ocsp(url, auth_ca, stopped, nonce=False) == "revoked Reason: keyCompromise"

    # What is stored agrees with the store, and the audit chain holds.
    check = deployment.cli("ocsp", "verify", "--check-only")
    assert check["contradicted"] == 0 and check["checked"] >= 4, check
    deployment.cli("audit", "verify", "--state")
