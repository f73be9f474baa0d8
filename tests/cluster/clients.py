"""Clients the cluster tests run inside a test host (the root namespace has no route into the
cluster): ``python -m tests.cluster.clients COMMAND`` with its arguments as JSON on stdin and its
answer as JSON on stdout, run with ``scripts/cluster exec ha`` from the repository's root.

One process per check rather than one ``curl`` per request: a check of 500 serials on two nodes
is then seconds, not minutes, and a propagation delay is timed by the process that watches for it
(a process started per request would add its own start-up to every figure).

- ``statuses``: each serial's certificate as one node's API gives it (``GET
  /v1/certificates/{serial}``): ``{serial: [http status, status, pem]}``.
- ``issue``: ``count`` card certificate pairs (signature and authentication) issued through one
  node: ``[{serial, kind, pem}]``.
- ``flood``: ``count`` anonymous requests (a phone's challenge, refused for its purpose) on 8
  connections: how many were answered with each status.
- ``propagation``: each certificate revoked on one node, alternately, and the other node watched
  until its OCSP answer (RFC 5019 GET) and its ``POST /v1/status`` both say revoked: the delays,
  from the revocation's acknowledgement.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

# How long a propagation is watched for before it counts as never seen (the promise is 1 s).
WATCH_SECONDS = 10.0
# The pause between two asks: OCSP back to back; /v1/status at 16 calls a second, under a relying
# party's rate limit (JPKI_RP_RATE_PER_SECOND, 20 by default), so that its delays are within
# 60 ms of the truth.
OCSP_PAUSE, STATUS_PAUSE = 0.002, 0.06


class Node:
    """One keep-alive HTTP connection to a node (re-opened after an error)."""

    def __init__(self, url: str, secret: str | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.auth = ("Basic " + base64.b64encode(secret.encode()).decode()) if secret else None
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None,
                auth: str | None = None) -> tuple[int, bytes]:
        headers = {"connection": "keep-alive"}
        if auth or self.auth:
            headers["authorization"] = auth or self.auth or ""
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                answer = self._conn.getresponse()
                return answer.status, answer.read()
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.request(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data)


def statuses(args: dict[str, Any]) -> dict[str, Any]:
    node = Node(args["url"], args["secret"])
    out: dict[str, Any] = {}
    for serial in args["serials"]:
        code, body = node.request("GET", f"/v1/certificates/{serial}")
        seen = json.loads(body) if code == 200 else {}
        out[serial] = [code, seen.get("status"), seen.get("pem")]
    return out


def _public_key() -> str:
    key = rsa.generate_private_key(65537, 2048).public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def issue(args: dict[str, Any]) -> list[dict[str, str]]:
    operator = Node(args["url"], args["operator"])
    station = Node(args["url"], args["station"])
    out: list[dict[str, str]] = []
    for _ in range(args["count"]):
        resident = operator.json("POST", "/v1/operators/residents", {
            "name": "伝播 試験", "birth_date": "1990-01-02", "sex": 1,
            "address": "東京都清瀬市中里一丁目", "municipality_code": "132217"})["id"]
        proofing = station.json("POST", "/v1/stations/proofings", {
            "resident_id": resident, "presence": "in_person",
            "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]})
        done = station.json("POST", "/v1/stations/certificates", {
            "resident_id": resident, "proofing_id": proofing["id"],
            "sign_public_key": _public_key(), "auth_public_key": _public_key()})
        out += [{k: c[k] for k in ("serial", "kind", "pem")} for c in done["certificates"]]
    return out


class Ocsp:
    """RFC 5019 GET requests for certificates, their issuers fetched once from the node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._issuers: dict[str, x509.Certificate] = {}

    def path(self, cert: x509.Certificate) -> str:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        ca_url = next(str(d.access_location.value) for d in aia
                      if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS)
        issuer_path = urlsplit(ca_url).path
        if issuer_path not in self._issuers:
            code, der = self.node.request("GET", issuer_path)
            assert code == 200, (issuer_path, code)
            self._issuers[issuer_path] = x509.load_der_x509_certificate(der)
        request = ocsp.OCSPRequestBuilder().add_certificate(
            cert, self._issuers[issuer_path], hashes.SHA1()).build()
        return "/ocsp/" + quote(base64.b64encode(request.public_bytes(Encoding.DER)).decode(),
                                safe="")

    def status(self, path: str) -> ocsp.OCSPCertStatus | None:
        code, der = self.node.request("GET", path)
        if code != 200:
            return None
        answer = ocsp.load_der_ocsp_response(der)
        if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return None
        return answer.certificate_status


def _watch(seen: Callable[[], bool], since: float, pause: float) -> float | None:
    """Seconds from ``since`` until ``seen()`` first holds (asked every ``pause``); None if never
    within WATCH_SECONDS."""
    while time.monotonic() - since < WATCH_SECONDS:
        if seen():
            return time.monotonic() - since
        time.sleep(pause)
    return None


def rp_status(rp: Node, purpose: str, serial: str) -> str:
    body = rp.json("POST", "/v1/status", {"purpose": purpose, "serials": [serial]})
    return str(body["results"][0]["status"])


def _watch_both(responder: Ocsp, path: str, rp: Node, purpose: str, serial: str,
                since: float) -> dict[str, float | None]:
    """Both answers watched at once, a thread each on its own connection, so that one does not
    pace the other."""
    delays: dict[str, float | None] = {}

    def watch_ocsp() -> None:
        delays["ocsp"] = _watch(
            lambda: responder.status(path) is ocsp.OCSPCertStatus.REVOKED, since, OCSP_PAUSE)

    def watch_status() -> None:
        delays["status"] = _watch(
            lambda: rp_status(rp, purpose, serial) == "revoked", since, STATUS_PAUSE)

    watchers = [threading.Thread(target=watch_ocsp), threading.Thread(target=watch_status)]
    for w in watchers:
        w.start()
    for w in watchers:
        w.join()
    return delays


def propagation(args: dict[str, Any]) -> list[dict[str, Any]]:
    urls: list[str] = args["urls"]
    operators = [Node(u, args["operator"]) for u in urls]
    ocsps = [Ocsp(Node(u)) for u in urls]
    rps = [Node(u, args["rp"]) for u in urls]
    purpose = args["purpose"]

    out: list[dict[str, Any]] = []
    for i, issued in enumerate(args["certs"]):
        a, b = i % len(urls), (i + 1) % len(urls)
        cert = x509.load_pem_x509_certificate(issued["pem"].encode())
        path = ocsps[b].path(cert)
        # Before: node B says good (and has the response in hand, as a busy responder would).
        before = (ocsps[b].status(path), rp_status(rps[b], purpose, issued["serial"]))
        operators[a].json("POST", f"/v1/operators/certificates/{issued['serial']}/revocation",
                          {"reason": "keyCompromise"})
        acknowledged = time.monotonic()
        delays = _watch_both(ocsps[b], path, rps[b], purpose, issued["serial"], acknowledged)
        out.append({"serial": issued["serial"], "revoked_on": urls[a], "watched_on": urls[b],
                    "before": [before[0].name if before[0] else None, before[1]],
                    "ocsp": delays.get("ocsp"), "status": delays.get("status")})
    return out


def flood(args: dict[str, Any]) -> dict[str, int]:
    def one_connection(count: int) -> list[int]:
        node = Node(args["url"])
        return [node.request("POST", "/v1/mobile/challenges", {"purpose": "flood"})[0]
                for _ in range(count)]

    with ThreadPoolExecutor(8) as pool:
        codes = [c for done in pool.map(one_connection, [args["count"] // 8] * 8) for c in done]
    return {str(code): codes.count(code) for code in sorted(set(codes))}


COMMANDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "statuses": statuses, "issue": issue, "propagation": propagation, "flood": flood}

if __name__ == "__main__":  # python -m tests.cluster.clients COMMAND, from the repository root
    json.dump(COMMANDS[sys.argv[1]](json.load(sys.stdin)), sys.stdout)
