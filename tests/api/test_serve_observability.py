"""`jpki serve` as operators run it, watched as operators watch it: its log is JSON lines without
any basic 4 information after representative flows, and with ``--workers 2`` the metrics of both
worker processes are added up (prometheus-client's multiprocess mode).

The server is a subprocess whose stdout and stderr go to a file, exactly what an operator's log
collector would get. The flows register residents with distinctive names, addresses and birth
dates, issue, revoke, change an address, let a relying party read the latest basic 4
information under a consent, withdraw it, and make errors that carry personal data in every place
a request can carry it (body, path, query, credentials). The log is then searched for those
values in every encoding a logger might produce.
"""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
import subprocess
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client.parser import text_string_to_metric_families

from api.in_process import free_port
from jpki.basic4 import normalize_address, normalize_name
from tests.api.test_cli import _command, _env, copy_data_dir, jpki_ok
from tests.holder_kit import consent_statement, withdrawal_statement
from tests.phone_kit import signed

pytestmark = [pytest.mark.hsm, pytest.mark.slow]

PEOPLE = [
    {"name": "鷹司 翠子", "birth_date": "1988-07-21", "sex": 2,
     "address": "東京都清瀬市中里三丁目７番９号 ヴィラ隠岐４０２", "municipality_code": "132217"},
    {"name": "勅使河原 楓真", "birth_date": "2001-11-30", "sex": 1,
     "address": "東京都千代田区一番町四丁目５番 メゾン鵜飼１１", "municipality_code": "131016"},
    {"name": "五百旗頭 薫", "birth_date": "1979-02-14", "sex": 3,
     "address": "東京都清瀬市野塩二丁目１番１号 コーポ榊原２０３", "municipality_code": "132217"},
]
NEW_ADDRESS = "東京都清瀬市竹丘四丁目２番８号 ハイツ不破１０１"


# --- the personal data, in every encoding ------------------------------------------------------


def _values() -> set[str]:
    values: set[str] = set()
    for person in PEOPLE:
        for key, normalize in (("name", normalize_name), ("address", normalize_address)):
            raw = str(person[key])
            values |= {raw, normalize(raw)}
            values |= {part for part in raw.split() if len(part) >= 2}
        born = datetime.fromisoformat(str(person["birth_date"]))
        values |= {born.strftime("%Y-%m-%d"), born.strftime("%Y%m%d"), born.strftime("%Y/%m/%d"),
                   f"{born.year}年{born.month}月{born.day}日"}
    values |= {NEW_ADDRESS, normalize_address(NEW_ADDRESS), *NEW_ADDRESS.split()}
    return values


def encodings(value: str) -> set[bytes]:
    """``value`` as bytes a log file could hold it in."""
    utf8 = value.encode("utf-8")
    out = {utf8, value.encode("utf-16-le"), value.encode("utf-16-be")}
    for codec in ("shift_jis", "euc_jp", "iso2022_jp"):
        with suppress(UnicodeEncodeError):
            out.add(value.encode(codec))
    escaped = json.dumps(value, ensure_ascii=True)[1:-1]
    out |= {escaped.encode(), escaped.upper().replace("\\U", "\\u").encode()}
    for quoted in (urllib.parse.quote(value), urllib.parse.quote_plus(value)):
        out |= {quoted.encode(), quoted.lower().encode()}
    out.add(repr(utf8)[2:-1].encode())  # b'\xe9\xb7\xb9…' as Python prints bytes
    out |= {utf8.hex().encode(), utf8.hex().upper().encode()}
    for shift in range(3):  # base64 of the value wherever it starts in the encoded data
        encoded = base64.b64encode(b"\0" * shift + utf8)
        # Drop the characters that also encode the padding and the trailing partial group.
        start = (shift * 4 + 2) // 3
        stop = len(utf8) + shift - (len(utf8) + shift) % 3
        core = encoded[start:stop * 4 // 3]
        if len(core) >= 8:
            out |= {core, core.replace(b"+", b"-").replace(b"/", b"_")}
    return {e for e in out if len(e) >= 4}


def assert_no_personal_data(blob: bytes, where: str) -> None:
    found = sorted({v for v in _values() for e in encodings(v) if e in blob})
    assert not found, f"personal data in {where}: {found}"


def test_the_scan_finds_personal_data_in_each_encoding() -> None:
    """The scan itself can fail: each encoding of a value is found."""
    name = str(PEOPLE[0]["name"])
    for blob in (json.dumps({"m": name}).encode(), json.dumps({"m": name},
                                                             ensure_ascii=False).encode(),
                 ("GET /x?n=" + urllib.parse.quote(name)).encode(),
                 b"x" + base64.b64encode(b"ab" + name.encode()) + b"y",
                 repr(name.encode()).encode(), name.encode("shift_jis"),
                 str(PEOPLE[1]["birth_date"]).replace("-", "").encode()):
        with pytest.raises(AssertionError, match="personal data"):
            assert_no_personal_data(blob, "a sample")


# --- the server ----------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    data_dir: Path
    operator: tuple[str, str]
    station: tuple[str, str]
    request_ids: list[str] = field(default_factory=list)

    def call(self, method: str, path: str, *, auth: tuple[str, str] | None = None,
             **kwargs: Any) -> httpx.Response:
        r = httpx.request(method, self.url + path, auth=auth, timeout=60, **kwargs)
        if not path.startswith("/ocsp"):  # the OCSP responder is not under request ids
            self.request_ids.append(r.headers["x-request-id"])
        return r

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # a graceful shutdown, as systemd does
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory, softhsm_module: str) -> Path:
    data_dir = tmp_path_factory.mktemp("observe") / "base"
    jpki_ok("init", data_dir=data_dir)
    return data_dir


def _serve(base: Path, tmp: Path, *extra: str) -> Iterator[Server]:
    data_dir = copy_data_dir(base, tmp / "data")
    operator = jpki_ok("client", "add", "--name", "ops", "--role", "operator", data_dir=data_dir)
    station = jpki_ok("client", "add", "--name", "desk", "--role", "station", data_dir=data_dir)
    port = free_port()
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*_command(), "serve", "--data-dir", str(data_dir), "--host",
                                    "127.0.0.1", "--port", str(port), *extra],
                                   stdout=out, stderr=subprocess.STDOUT, cwd=data_dir.parent,
                                   env=_env(), umask=0o022)
    server = Server(process, f"http://127.0.0.1:{port}", log, data_dir,
                    (operator["client_id"], operator["client_secret"]),
                    (station["client_id"], station["client_secret"]))
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"jpki serve exited {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("jpki serve did not answer /healthz within 60 s")
        time.sleep(0.1)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(initialised: Path, tmp_path: Path) -> Iterator[Server]:
    yield from _serve(initialised, tmp_path)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM,
                                         PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


def _flows(s: Server) -> None:
    """What a day at the CA looks like, errors included."""
    op, desk = s.operator, s.station
    ids = []
    for person in PEOPLE:
        r = s.call("POST", "/v1/operators/residents", auth=op, json=person)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    keys = {kind: rsa.generate_private_key(65537, 2048) for kind in ("sign", "auth", "other")}

    def issue(resident: str, **pems: str) -> dict[str, dict[str, Any]]:
        r = s.call("POST", "/v1/stations/proofings", auth=desk, json={
            "resident_id": resident, "presence": "in_person",
            "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]})
        assert r.status_code == 201, r.text
        r = s.call("POST", "/v1/stations/certificates", auth=desk, json={
            "resident_id": resident, "proofing_id": r.json()["id"],
            **{f"{k}_public_key": v for k, v in pems.items()}})
        assert r.status_code == 201, r.text
        return {c["kind"]: c for c in r.json()["certificates"]}

    first = issue(ids[0], sign=_pem(keys["sign"]), auth=_pem(keys["auth"]))
    second = issue(ids[1], auth=_pem(keys["other"]))
    r = s.call("POST", f"/v1/operators/certificates/{second['card_auth']['serial']}/revocation",
               auth=op, json={"reason": "keyCompromise"})
    assert r.status_code == 200, r.text

    # A relying party: status, and the latest basic 4 information under a signed consent.
    r = s.call("POST", "/v1/operators/relying-parties", auth=op, json={
        "name": "株式会社観測", "kind": "platform_operator", "purposes": ["test"],
        "scopes": ["status", "linkage", "basic4"]})
    assert r.status_code == 201, r.text
    rp_id, rp = r.json()["relying_party"]["id"], (r.json()["client_id"],
                                                   r.json()["client_secret"])
    serials = [c["serial"] for c in (*first.values(), *second.values())]
    r = s.call("POST", "/v1/status", auth=rp, json={"purpose": "test", "serials": serials})
    assert r.status_code == 200, r.text
    sign_der = x509.load_pem_x509_certificate(first["card_sign"]["pem"].encode()).public_bytes(
        Encoding.DER)
    now = datetime.now(UTC)
    statement = consent_statement(rp_id, now, items=["name", "birth_date", "sex", "address"])
    r = s.call("POST", "/v1/basic4", auth=rp, json={
        "purpose": "test", "consent": _b64(signed(statement, sign_der, keys["sign"], now))})
    assert r.status_code == 200, r.text
    assert r.json()["items"]["name"] == normalize_name(str(PEOPLE[0]["name"]))
    consent_id = r.json()["consent_id"]
    r = s.call("POST", "/v1/basic4", auth=rp, json={"purpose": "test", "consent_id": consent_id})
    assert r.status_code == 200, r.text
    r = s.call("POST", "/v1/consents/withdrawals", json={"signed_data": _b64(signed(
        withdrawal_statement(consent_id), sign_der, keys["sign"], datetime.now(UTC)))})
    assert r.status_code == 200, r.text
    r = s.call("POST", "/v1/basic4", auth=rp, json={"purpose": "test", "consent_id": consent_id})
    assert r.json()["code"] == "consent.withdrawn", r.text

    # A move revokes the signing certificate (affiliationChanged).
    r = s.call("POST", f"/v1/operators/residents/{ids[0]}/events", auth=op,
               json={"kind": "address", "address": NEW_ADDRESS})
    assert r.status_code == 200, r.text

    # Errors carrying personal data wherever a request can carry it.
    person = PEOPLE[2]
    name, born = str(person["name"]), str(person["birth_date"])
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/operators/residents", {"auth": op, "json": {**person, "sex": 9}}),
        ("POST", "/v1/operators/residents", {"auth": op, "json": {**person, "surplus": name}}),
        ("POST", "/v1/operators/residents", {"auth": op, "content": json.dumps(
            person, ensure_ascii=False).encode()[:-3], "headers": {
                "content-type": "application/json"}}),
        ("POST", "/v1/operators/residents", {"auth": op, "content": name.encode(),
                                             "headers": {"content-type": "text/plain"}}),
        ("POST", "/v1/operators/residents", {"json": person}),  # no credentials
        ("POST", f"/v1/operators/residents/{ids[2]}/events", {"auth": op, "json": {
            "kind": "birth", "birth_date": born + "x"}}),
        ("GET", "/v1/operators/residents/" + urllib.parse.quote(name), {"auth": op}),
        ("GET", "/v1/certificates/zz", {"auth": op, "params": {"name": name, "born": born}}),
        ("GET", "/" + urllib.parse.quote(str(person["address"])), {}),
        ("POST", "/v1/status", {"auth": (name, born), "json": {"purpose": "test",
                                                                "serials": ["1"]}}),
        ("POST", "/v1/status", {"auth": rp, "json": {"purpose": name, "serials": [born]}}),
        ("POST", "/ocsp", {"content": name.encode(), "headers": {
            "content-type": "application/ocsp-request"}}),
        ("GET", "/ocsp/" + urllib.parse.quote(name), {}),
    ]
    for method, path, kwargs in cases:
        r = s.call(method, path, **kwargs)
        assert r.status_code < 500 or path.startswith("/ocsp"), (method, path, r.text)

    # What an operator looks at.
    assert s.call("GET", "/readyz").status_code == 200
    assert s.call("GET", "/v1/operators/jobs", auth=op).status_code == 200
    r = s.call("GET", "/metrics", auth=op)
    assert r.status_code == 200
    assert_no_personal_data(r.content, "the metrics")


def test_the_server_log_is_json_lines_without_any_personal_data(server: Server) -> None:
    _flows(server)
    server.stop()
    blob = server.log.read_bytes()
    assert_no_personal_data(blob, "the server log")
    lines = [json.loads(line) for line in blob.decode("utf-8").splitlines() if line.strip()]
    # One line per request (OCSP excepted), under the id its response carried.
    logged = Counter(x["request_id"] for x in lines if x.get("event") == "request")
    assert all(logged[rid] == 1 for rid in server.request_ids), \
        [rid for rid in server.request_ids if logged[rid] != 1]
    assert {x["logger"] for x in lines} >= {"uvicorn.error", "jpki.request", "jpki.job"}
    # Each maintenance job has its line, under a job-… request id.
    jobs = {x["job"]: x for x in lines if x.get("event") == "job"}
    assert {"abandon_stale_intents", "sweep_undelivered", "renew_responders",
            "publish_crls", "purge_challenges"} <= set(jobs)
    assert all(x["request_id"].startswith("job-") for x in jobs.values()
               if x["job"] != "ocsp_refresh")
    # The audit records name the request that caused them, as the log does.
    with closing(sqlite3.connect(server.data_dir / "jpki.db")) as db:
        audited = db.execute("SELECT action, request_id FROM audit_log ORDER BY seq").fetchall()
    in_log = {x.get("request_id") for x in lines}
    registered = [rid for action, rid in audited if action == "resident.registered"]
    assert len(registered) == len(PEOPLE) and set(registered) <= set(server.request_ids)
    assert all(rid in in_log for _, rid in audited if rid is not None)
    assert {rid for action, rid in audited if action.startswith("client.")} == {None}  # CLI
    # `jpki jobs` reads the ledger the server wrote; the OCSP refresh's runs were reported when
    # it shut down.
    ran = {j["job"]: j for j in jpki_ok("jobs", data_dir=server.data_dir)["jobs"]}
    assert set(ran) == {"abandon_stale_intents", "sweep_undelivered", "renew_responders",
                        "publish_crls", "purge_challenges", "roll_up_rp_usage", "mobile_sweep",
                        "purge_limits", "ocsp_refresh"}
    assert ran["ocsp_refresh"]["counts"]["runs"] >= 1
    assert {j["outcome"] for j in ran.values()} == {"ok"}


# --- several workers ----------------------------------------------------------------------------


def _samples(s: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = s.call("GET", "/metrics", auth=s.operator)
    assert r.status_code == 200, r.text
    return {(x.name, frozenset(x.labels.items())): x.value
            for family in text_string_to_metric_families(r.text) for x in family.samples}


def test_with_two_workers_the_metrics_of_both_are_added_up(initialised: Path,
                                                          tmp_path: Path) -> None:
    for s in _serve(initialised, tmp_path, "--workers", "2"):
        deadline = time.monotonic() + 60
        while True:  # both workers started: each reports itself alive, labelled by its pid
            samples = _samples(s)
            pids = {dict(labels)["pid"] for name, labels in samples if name == "jpki_worker_up"}
            # Gauges of resources each process holds are summed over the live processes: two
            # pools of HSM sessions (four each, the default).
            sessions = sum(v for (name, _), v in samples.items() if name == "jpki_hsm_sessions")
            if (len(pids), sessions) == (2, 2 * 4) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (len(pids), sessions) == (2, 2 * 4), (pids, sessions)
        # Counters too: whichever worker served a request, the scrape counts it.
        key = ("jpki_http_requests_total",
               frozenset({("method", "GET"), ("route", "/healthz"), ("status", "200")}))
        before = samples.get(key, 0.0)
        for _ in range(20):
            assert s.call("GET", "/healthz").status_code == 200
        assert _samples(s).get(key, 0.0) - before == 20
        assert any((s.data_dir / "metrics").glob("*.db"))  # the files the workers share
