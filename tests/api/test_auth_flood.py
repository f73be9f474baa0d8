"""A flood of wrong credentials leaves OCSP and /healthz responsive and memory bounded.

What a tester did to the server before client secrets were HMACs and failures were budgeted:
48 clients sending wrong HTTP Basic secrets — for existing client ids (relying party, operator,
a client still stored as Argon2id at its real cost) and for ids that exist nowhere — for several
seconds. Every failure then ran Argon2id (64 MiB, three passes, four lanes) on the thread pool
OCSP cache misses and /healthz use: 131 MiB → 2.1 GiB, both past a second.

Here the same flood runs against a live server (uvicorn in a thread of this process; the default
settings) from a process of its own on another loopback address, while a second process times
OCSP (a request for an issued certificate; and one with a nonce, signed live on the thread pool
and in the HSM) and /healthz one request at a time from 127.0.0.1. The task asks for a latency
bound in a test here: every kind's p99 under 50 ms, and this process's resident memory never more
than 100 MiB above what it was before the flood (one legacy check may take its 64 MiB).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, ClientRole
from tests.api.harness import basic_auth
from tests.conftest import LiveServer

pytestmark = [pytest.mark.hsm, pytest.mark.timing]

REPO = Path(__file__).resolve().parents[2]
SECONDS = 8.0
CONNECTIONS = 48
FLOOD_FROM = "127.0.0.2"  # the probe and the legitimate caller use 127.0.0.1
P99_BOUND_MS = 50.0
RSS_BOUND_MIB = 100.0
OPERATOR = Principal.local_operator("flood-test")
CREATE_CLIENT = authorize(OPERATOR, Operation.CLIENT_CREATE)
ISSUE = authorize(OPERATOR, Operation.CERTIFICATE_ISSUE)
REGISTER_RESIDENT = authorize(OPERATOR, Operation.RESIDENT_REGISTER)
REGISTER_RP = authorize(OPERATOR, Operation.RP_REGISTER)


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def kit(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.api.flood_kit", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    result: dict[str, Any] = json.loads(out)
    return result


def test_a_flood_of_wrong_credentials_leaves_ocsp_and_health_fast_and_memory_bounded(
        served: LiveServer, subject_keys: list[bytes], tmp_path: Path) -> None:
    services = served.services
    rid = services.residents.register(REGISTER_RESIDENT, name="山田 太郎",
                                      birth_date=date(1990, 1, 2), sex=1, address="東京都清瀬市",
                                      municipality_code="132217").id
    (issued,) = services.issuance.issue(ISSUE, rid, [KeyRequest(CertKind.CARD_SIGN,
                                                                   subject_keys[0])])
    cert = x509.load_der_x509_certificate(issued.der)
    with services.uow() as uow:
        issuer_der = uow.cas.current(CaKind.SIGN).certificate_der
    issuer = x509.load_der_x509_certificate(issuer_der)
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()

    rp = services.relying_parties.register(REGISTER_RP, name="Flood RP", kind="platform_operator",
                                           purposes=["test"], scopes=["status"])
    # A relying party the flood does not name: its id has spent nothing.
    bystander = services.relying_parties.register(REGISTER_RP, name="Bystander RP",
                                                  kind="platform_operator", purposes=["test"],
                                                  scopes=["status"])
    operator = services.clients.create(CREATE_CLIENT, name="flood op", role=ClientRole.OPERATOR)
    legacy = services.clients.create(CREATE_CLIENT, name="legacy op", role=ClientRole.OPERATOR)
    with services.uow() as uow:  # stored as earlier revisions did, at the real cost
        row = uow.clients.get_by_client_id(legacy.client.client_id)
        assert row is not None
        row.secret_hash = PasswordHasher().hash(legacy.client_secret)
        uow.commit()
    wrong = "w" * 43
    plan = {
        "credentials": [f"{rp.client_id}:{wrong}", f"{operator.client.client_id}:{wrong}",
                        f"{legacy.client.client_id}:{wrong}", f"jpki_{'0' * 24}:{wrong}",
                        f"jpki_{'f' * 24}:{wrong}", f"jpki_{'1' * 23}\0:{wrong}",
                        f"not-an-id:{wrong}"],
        "paths": ["/v1/rp/ping", f"/v1/operators/residents/{'0' * 32}",
                  "/v1/certificates/7fffffffffffffff0000"],
        "ocsp_request": request.public_bytes(Encoding.DER).hex(),
        "certificate": issued.der.hex(), "issuer": issuer_der.hex(),
    }
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))

    # Warm up: the OCSP response cached and memoised, threads and connections made.
    finished(kit("probe", served.url, "1.0", str(plan_path)), 60)
    baseline = rss_mib()
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    checks = services.clients.legacy.checks
    flood = kit("flood", served.url, str(SECONDS), str(CONNECTIONS), FLOOD_FROM,
                str(plan_path))
    time.sleep(0.5)  # the probe measures a server that is already flooded
    probe = kit("probe", served.url, str(SECONDS - 1.0), str(plan_path))
    probed = finished(probe, SECONDS + 60)
    flooded = finished(flood, SECONDS + 60)
    stop.set()
    sampler.join()

    statuses = {int(k): v for k, v in flooded["statuses"].items()}
    assert not flooded["errors"], flooded
    assert set(statuses) <= {401, 429, 503}, statuses  # never a 500, never a success
    # Checked (401, or 503 from the full legacy verifier): the address's budget, what was in
    # flight when it was spent, and its refill; everything else refused unchecked (429).
    settings = services.settings
    budget = settings.auth_failures_per_address * (
        1 + SECONDS / settings.auth_failure_window_seconds)
    assert statuses.get(401, 0) + statuses.get(503, 0) <= budget + CONNECTIONS, statuses
    assert statuses.get(429, 0) > 0, statuses
    summary = {kind: (len(ms), round(p99(ms), 1), round(max(ms), 1))
               for kind, ms in probed.items()}
    for kind, ms in probed.items():
        assert len(ms) >= 50, summary
        assert p99(ms) < P99_BOUND_MS, (kind, summary, statuses)
    assert peak[0] - baseline < RSS_BOUND_MIB, (baseline, peak[0])
    # The legacy client's Argon2 runs: its id's budget (10) and the refill (10 a minute).
    assert services.clients.legacy.checks - checks <= 10 + 2, statuses

    # A legitimate caller at another address is served: the flood spent its own address's
    # budget and the ids it named, nobody else's (the refusals above were the flood's 429s).
    import httpx

    answer = httpx.get(f"{served.url}/v1/rp/ping",
                       headers=basic_auth(bystander.client_id, bystander.client_secret))
    assert answer.status_code == 200, answer.text
