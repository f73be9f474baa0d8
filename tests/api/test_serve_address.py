"""`jpki serve --port P` writes P into what it issues, and says so when JPKI_BASE_URL disagrees.

A certificate's CRL distribution point, OCSP and CA-issuers URLs are promises for its lifetime. A
server on port P that wrote ``:8000`` URLs made a station fail late (at "write certificates",
after checking the OCSP status of what it had just issued) and revoke it. Here the real command
serves as a subprocess on a free port, a station gets a certificate through the API, and every URL
in it must be answered by that very server. With a JPKI_BASE_URL that names another address, that
address wins (it is the public one) and the log says so once.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from api.in_process import free_port
from tests.conftest import empty_postgres_database

pytestmark = pytest.mark.hsm

REPO = Path(__file__).resolve().parents[2]
WARNING = "JPKI_BASE_URL is "


def _jpki() -> list[str]:
    script = Path(sys.executable).parent / "jpki"
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


@dataclass(frozen=True)
class Ca:
    data_dir: Path
    env: dict[str, str]
    residents: list[str]  # one for each test: a resident holds one auth certificate
    station: tuple[str, str]

    def jpki(self, *args: str, env: dict[str, str] | None = None) -> Any:
        run = subprocess.run([*_jpki(), *args, "--data-dir", str(self.data_dir), "--json"],
                             capture_output=True, text=True, env=env or self.env,
                             cwd=self.data_dir.parent, timeout=300, check=False)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ca(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
       softhsm_module: str) -> Iterator[Ca]:
    """`jpki init` (on SQLite, or a fresh PostgreSQL database), a resident and a station."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JPKI_") and k != "SOFTHSM2_CONF"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            env["JPKI_DATABASE_URL"] = stack.enter_context(empty_postgres_database("serve"))
        yield from _initialised(tmp_path_factory, request.param, env)


def _initialised(tmp_path_factory: pytest.TempPathFactory, kind: str,
                 env: dict[str, str]) -> Iterator[Ca]:
    data_dir = tmp_path_factory.mktemp(f"serve-{kind}") / "data"
    bare = Ca(data_dir, env, [], ("", ""))
    bare.jpki("init")
    residents = [bare.jpki("resident", "add", "--name", "山田 太郎", "--birth", "1990-01-02",
                           "--sex", "1", "--address", "東京都清瀬市中里一丁目２番３号",
                           "--municipality", "132217")["id"] for _ in range(2)]
    station = bare.jpki("client", "add", "--name", "desk", "--role", "station")
    yield Ca(data_dir, env, residents, (station["client_id"], station["client_secret"]))


@dataclass(frozen=True)
class Served:
    url: str
    log: Path


@contextmanager
def serving(ca: Ca, log: Path, **env: str) -> Iterator[Served]:
    """`jpki serve --port P` (a free port, never 8000) as a subprocess, until the block ends."""
    port = free_port()
    assert port != 8000
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        server = subprocess.Popen([*_jpki(), "serve", "--data-dir", str(ca.data_dir), "--port",
                                   str(port)], stdout=sink, stderr=subprocess.STDOUT,
                                  env={**ca.env, **env}, cwd=ca.data_dir.parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"jpki serve exited {server.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jpki serve did not answer /healthz in 60 s: {log.read_text()}")
            time.sleep(0.1)
        yield Served(url, log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)


def issue_auth_certificate(ca: Ca, url: str, resident: str) -> x509.Certificate:
    """What a station does: proofing (pattern B), then a user-authentication certificate."""
    key = rsa.generate_private_key(65537, 2048).public_key()
    with httpx.Client(base_url=url, auth=ca.station, timeout=60) as http:
        proofing = http.post("/v1/stations/proofings", json={
            "resident_id": resident, "presence": "in_person",
            "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]})
        assert proofing.status_code == 201, proofing.text
        issued = http.post("/v1/stations/certificates", json={
            "resident_id": resident, "proofing_id": proofing.json()["id"],
            "auth_public_key": key.public_bytes(Encoding.PEM,
                                                PublicFormat.SubjectPublicKeyInfo).decode()})
        assert issued.status_code == 201, issued.text
    (cert,) = issued.json()["certificates"]
    return x509.load_pem_x509_certificate(cert["pem"].encode())


def urls_of(cert: x509.Certificate) -> dict[str, list[str]]:
    dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return {
        "crl": [n.value for dp in dps for n in dp.full_name or []
                if isinstance(n, x509.UniformResourceIdentifier)],
        "ocsp": [d.access_location.value for d in aia
                 if d.access_method == AuthorityInformationAccessOID.OCSP],
        "ca_issuers": [d.access_location.value for d in aia
                       if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS],
    }


def test_a_served_port_is_in_the_certificates_urls_and_they_answer(
        ca: Ca, tmp_path: Path) -> None:
    with serving(ca, tmp_path / "serve.log") as served:
        cert = issue_auth_certificate(ca, served.url, ca.residents[0])
        urls = urls_of(cert)
        assert all(len(found) == 1 for found in urls.values()), urls
        assert all(u.startswith(served.url + "/") for found in urls.values() for u in found)

        # Each URL is answered by this server: the issuer, the CRL of the shard, OCSP.
        (issuer_url,) = urls["ca_issuers"]
        answer = httpx.get(issuer_url, timeout=30)
        assert answer.status_code == 200
        issuer = x509.load_der_x509_certificate(answer.content)
        cert.verify_directly_issued_by(issuer)
        (crl_url,) = urls["crl"]
        answer = httpx.get(crl_url, timeout=60)
        assert answer.status_code == 200, answer.text
        crl = x509.load_der_x509_crl(answer.content)
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
        assert crl_url in [n.value for n in idp.full_name or []]  # RFC 5280 §5.2.5
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
        answer = httpx.post(urls["ocsp"][0], content=request.public_bytes(Encoding.DER),
                            headers={"content-type": "application/ocsp-request"}, timeout=30)
        assert answer.status_code == 200
        response = ocsp.load_der_ocsp_response(answer.content)
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert WARNING not in served.log.read_text()


def test_a_disagreeing_jpki_base_url_wins_and_is_warned_about_once(
        ca: Ca, tmp_path: Path) -> None:
    public = f"http://127.0.0.1:{free_port()}"  # e.g. a port mapping in front of this server
    with serving(ca, tmp_path / "serve.log", JPKI_BASE_URL=public) as served:
        cert = issue_auth_certificate(ca, served.url, ca.residents[1])
    urls = urls_of(cert)
    assert all(u.startswith(public + "/") for found in urls.values() for u in found), urls
    log = served.log.read_text()
    # The log is JSON lines (api.logs): the warning is one of them.
    warnings = [json.loads(line) for line in log.splitlines() if WARNING in line]
    assert len(warnings) == 1, log
    assert warnings[0]["level"] == "warning" and public in warnings[0]["message"]
    assert served.url in warnings[0]["message"]
