"""The operator console over HTTP (api.console.pages), in process: the sign-in with two factors,
the cookies' and pages' security attributes, CSRF on every form, and refusals by role and by
municipality through the same authorisation table as the REST API.

The browser tests (test_console_browser.py) drive the same pages in headless Chromium.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pyotp
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.composition import Services
from api.console.i18n import CATALOGUES
from api.console.pages import CSP, FORM_COOKIE, SESSION_COOKIE
from jpki.access.auth_throttle import AuthThrottle, FailureBudgets
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import ConsoleRole, NewAccount
from jpki.access.principals import Principal
from jpki.errors import Forbidden
from jpki.model import CertKind, ClientRole, RevocationReason
from tests.conftest import FixedClock

pytestmark = pytest.mark.hsm

LOCAL = Principal.local_operator("pytest")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Console:
    services: Services
    http: TestClient
    clock: FixedClock

    def account(self, username: str, role: ConsoleRole,
                municipality: str | None = None) -> NewAccount:
        return self.services.console.create(
            authorize(LOCAL, Operation.CONSOLE_ACCOUNT_CREATE), username=username, role=role,
            municipality_code=municipality)

    def form_token(self, page: str = "/console/login") -> str:
        found = CSRF.search(self.http.get(page).text)
        assert found is not None
        return found.group(1)

    def sign_in(self, new: NewAccount, *, steps: int = 0) -> httpx.Response:
        token = self.form_token()
        first = self.http.post("/console/login", data={
            "csrf": token, "username": new.username, "password": new.password})
        assert first.status_code == 303 and first.headers["location"] == "/console/login/code"
        code = pyotp.TOTP(new.totp_secret).at(self.clock.now() + timedelta(seconds=30 * steps))
        return self.http.post("/console/login/code", data={"csrf": token, "code": code})

    def session_csrf(self) -> str:
        found = CSRF.search(self.http.get("/console/").text)
        assert found is not None
        return found.group(1)


@pytest.fixture
def console(services: Services, clock: FixedClock) -> Iterator[Console]:
    services.auth_throttle = AuthThrottle(
        by_client=FailureBudgets(services.limits, "client", 10**6, 60),
        by_address=FailureBudgets(services.limits, "address", 10**6, 60), refusal_delay=0)
    services.console._throttle = services.auth_throttle
    app = create_app(services.settings, services=services)
    # https: the session cookie is Secure by default, and a client sends it over HTTPS only.
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        yield Console(services, client, clock)


def test_signing_in_takes_both_factors_and_sets_a_strict_cookie(console: Console) -> None:
    new = console.account("kiyose", ConsoleRole.CLERK, "132217")
    assert console.http.get("/console/").headers["location"] == "/console/login"
    done = console.sign_in(new)
    assert done.status_code == 303 and done.headers["location"] == "/console/"
    cookie = next(v for k, v in done.headers.multi_items()
                  if k == "set-cookie" and v.startswith(SESSION_COOKIE + "="))
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/console"):
        assert attribute.lower() in cookie.lower(), attribute
    home = console.http.get("/console/")
    assert home.status_code == 200
    assert "窓口職員" in home.text and "132217" in home.text and 'lang="ja"' in home.text


def test_every_page_forbids_scripts_framing_and_caching(console: Console) -> None:
    new = console.account("boss", ConsoleRole.SUPERVISOR)
    pages = [console.http.get("/console/login")]
    console.sign_in(new)
    pages += [console.http.get("/console/"), console.http.get("/console/residents"),
              console.http.get("/console/residents?id=nobody")]
    for page in pages:
        assert page.headers["content-security-policy"] == CSP
        assert "script-src" not in CSP and "'unsafe-inline'" not in CSP
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        assert "<script" not in page.text and "style=" not in page.text
        assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere


def test_a_form_without_its_csrf_token_changes_nothing(console: Console) -> None:
    new = console.account("agent", ConsoleRole.AGENT)
    refused = console.http.post("/console/login", data={
        "csrf": "forged", "username": new.username, "password": new.password})
    assert refused.status_code == 403 and SESSION_COOKIE not in refused.cookies
    console.sign_in(new)
    for data in ({"csrf": "forged"}, {"other": "field"}):
        assert console.http.post("/console/logout", data=data).status_code == 403
        assert console.http.get("/console/").status_code == 200  # still signed in
    out = console.http.post("/console/logout", data={"csrf": console.session_csrf()})
    assert out.status_code == 303
    assert console.http.get("/console/").headers["location"] == "/console/login"


def test_a_wrong_password_or_code_answers_alike_and_is_audited(console: Console) -> None:
    new = console.account("agent", ConsoleRole.AGENT)
    token = console.form_token()
    answers = [console.http.post("/console/login", data={
        "csrf": token, "username": user, "password": password})
        for user, password in (("agent", "not the password"), ("nobody", "not the password"))]
    assert {a.status_code for a in answers} == {401}
    assert answers[0].text.replace("agent", "nobody") == answers[1].text.replace("agent",
                                                                                  "nobody")
    first = console.http.post("/console/login", data={
        "csrf": token, "username": new.username, "password": new.password})
    assert first.status_code == 303
    wrong = console.http.post("/console/login/code", data={"csrf": token, "code": "000000"})
    assert wrong.status_code == 401
    with console.services.uow() as uow:
        refusals = [json.loads(r.payload)["why"] for r in uow.audit.iterate()
                    if r.action == "console.sign_in_refused"]
    assert refusals == ["password", "totp"]


def test_a_clerk_sees_residents_of_its_municipality_only(console: Console,
                                                         new_resident: Callable[..., str]) -> None:
    here = new_resident(municipality="132217")
    elsewhere = new_resident(municipality="131016", address="東京都千代田区千代田１番１号")
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, "132217"))
    shown = console.http.get(f"/console/residents?id={here}")
    assert shown.status_code == 200 and "東京都清瀬市" in shown.text
    refused = console.http.get(f"/console/residents?id={elsewhere}")
    assert refused.status_code == 403 and "千代田" not in refused.text
    assert console.http.get("/console/residents?id=nobody").status_code == 404


def test_a_call_centre_agent_cannot_read_the_registry(console: Console,
                                                      new_resident: Callable[..., str]) -> None:
    here = new_resident(municipality="132217")
    console.sign_in(console.account("agent", ConsoleRole.AGENT))
    refused = console.http.get(f"/console/residents?id={here}")
    assert refused.status_code == 403 and "清瀬" not in refused.text


def test_english_on_request_and_remembered(console: Console) -> None:
    page = console.http.get("/console/login?lang=en")
    assert 'lang="en"' in page.text and "Sign in" in page.text
    assert 'lang="en"' in console.http.get("/console/login").text  # the cookie keeps it
    assert 'lang="ja"' in console.http.get("/console/login?lang=ja").text


def test_both_languages_have_every_word() -> None:
    assert set(CATALOGUES["ja"]) == set(CATALOGUES["en"])
    assert all(CATALOGUES["ja"].values()) and all(CATALOGUES["en"].values())


def test_malformed_forms_are_refused_without_a_500(console: Console) -> None:
    token = console.form_token()
    for body, content_type in ((b"csrf=" + token.encode() + b"&username=a&username=b",
                                "application/x-www-form-urlencoded"),
                               (b'{"username": "a"}', "application/json"),
                               (b"\xff\xfe", "application/x-www-form-urlencoded"),
                               (b"&".join([b"f%d=1" % i for i in range(100)]),
                                "application/x-www-form-urlencoded")):
        answer = console.http.post("/console/login", content=body,
                                   headers={"content-type": content_type})
        assert answer.status_code == 400, body[:40]
    assert FORM_COOKIE in console.http.cookies


# --- the call centre ---------------------------------------------------------------------------


def test_an_agent_verifies_a_caller_and_holds_the_phone_and_ocsp_says_so(
        console: Console) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.holder_kit import new_holder

    holder = new_holder(console.services,
                        [rsa.generate_private_key(65537, 2048) for _ in range(4)])
    holder.enrol_phone()
    with console.services.uow() as uow:
        card = uow.cards.active_for_resident(holder.resident_id)
        assert card is not None
    console.sign_in(console.account("agent", ConsoleRole.AGENT))
    csrf = console.session_csrf()
    assert console.http.get("/console/callcentre").status_code == 200
    wrong = console.http.post("/console/callcentre", data={
        "csrf": csrf, "card_number": card.number, "birth_date": "1990-01-03"})
    assert wrong.status_code == 404 and "pixel" not in wrong.text
    file = console.http.post("/console/callcentre", data={
        "csrf": csrf, "card_number": card.number, "birth_date": "1990-01-02"})
    assert file.status_code == 200
    for personal in ("山田", "太郎", "清瀬", "中里"):
        assert personal not in file.text
    ticket = re.search(r'name="ticket" value="([^"]+)"', file.text)
    assert ticket is not None
    # An edited ticket (another resident) is refused before anything is held.
    forged = ticket.group(1).replace(holder.resident_id, "0" * 32)
    refused = console.http.post("/console/callcentre/phone-hold",
                                data={"csrf": csrf, "ticket": forged})
    assert refused.status_code == 403
    held = console.http.post("/console/callcentre/phone-hold",
                             data={"csrf": csrf, "ticket": ticket.group(1)})
    assert held.status_code == 200
    for kind in (CertKind.MOBILE_SIGN, CertKind.MOBILE_AUTH):
        serial = holder.mobile_serials[kind]
        assert serial in held.text
        with console.services.uow() as uow:
            cert = uow.certificates.get_by_serial(serial)
            assert cert is not None
            assert cert.revocation_reason is RevocationReason.CERTIFICATE_HOLD
    with console.services.uow() as uow:
        actors = {r.actor for r in uow.audit.iterate()
                  if r.action in ("callcentre.caller_checked", "certificate.revoked")}
    assert actors == {"console:agent"}


def test_the_call_centre_pages_are_the_agents_only(console: Console) -> None:
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, "132217"))
    assert console.http.get("/console/callcentre").status_code == 403
    refused = console.http.post("/console/callcentre", data={
        "csrf": console.session_csrf(), "card_number": "ABCDEFGH", "birth_date": "1990-01-02"})
    assert refused.status_code == 403


# --- the counter's registry pages ---------------------------------------------------------------


def test_a_clerk_registers_finds_and_records_a_move(console: Console) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from jpki.issuance.service import KeyRequest
    from tests.holder_kit import ISSUE
    from tests.phone_kit import spki

    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, "132217"))
    csrf = console.session_csrf()
    made = console.http.post("/console/residents/new", data={
        "csrf": csrf, "name": "山田 花子", "name_kana": "やまだ はなこ",
        "birth_date": "19850401", "sex": "2", "address": "東京都清瀬市竹丘一丁目１番１号"})
    assert made.status_code == 303
    resident_id = made.headers["location"].split("id=")[1]
    record = console.http.get(made.headers["location"])
    assert "ヤマダ\u3000ハナコ" in record.text and "132217" in record.text
    found = console.http.post("/console/residents/search", data={
        "csrf": csrf, "name": "ヤマダ ハナコ", "birth_date": "1985-04-01"})
    assert found.status_code == 200 and f"?id={resident_id}" in found.text
    none = console.http.post("/console/residents/search", data={
        "csrf": csrf, "name": "ヤマダ ハナコ", "birth_date": "19850402"})
    assert f"?id={resident_id}" not in none.text
    key = rsa.generate_private_key(65537, 2048)
    (signing,) = console.services.issuance.issue(ISSUE, resident_id,
                                                 [KeyRequest(CertKind.CARD_SIGN, spki(key))])
    moved = console.http.post("/console/residents/events", data={
        "csrf": csrf, "resident_id": resident_id, "kind": "address",
        "address": "東京都清瀬市中里二丁目２番２号"})
    assert moved.status_code == 200 and "中里二丁目" in moved.text
    with console.services.uow() as uow:
        cert = uow.certificates.get_by_serial(signing.serial)
        assert cert is not None and cert.revocation_reason is RevocationReason.AFFILIATION_CHANGED
        actions = [(r.actor, r.action) for r in uow.audit.iterate()
                   if r.actor.startswith("console:") and r.action.startswith("resident.")]
    assert actions == [("console:kiyose", "resident.registered"),
                       ("console:kiyose", "resident.searched"),
                       ("console:kiyose", "resident.searched"),
                       ("console:kiyose", "resident.address")]


def test_a_clerk_cannot_register_elsewhere_or_touch_another_municipality(
        console: Console, new_resident: Callable[..., str]) -> None:
    elsewhere = new_resident(municipality="131016", address="東京都千代田区千代田１番１号")
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, "132217"))
    csrf = console.session_csrf()
    # The form's municipality field is ignored for a clerk: the record is made in Kiyose.
    made = console.http.post("/console/residents/new", data={
        "csrf": csrf, "name": "佐藤 一郎", "birth_date": "19700101", "sex": "1",
        "address": "東京都清瀬市元町一丁目１番１号", "municipality_code": "131016"})
    assert made.status_code == 303
    record = console.http.get(made.headers["location"])
    assert ">132217<" in record.text
    refused = console.http.post("/console/residents/events", data={
        "csrf": csrf, "resident_id": elsewhere, "kind": "death", "date": "20261201"})
    assert refused.status_code == 403
    found = console.http.post("/console/residents/search", data={
        "csrf": csrf, "name": "山田 太郎", "birth_date": "19900102"})
    assert elsewhere not in found.text


def test_an_agent_has_no_registry_pages(console: Console) -> None:
    console.sign_in(console.account("agent", ConsoleRole.AGENT))
    csrf = console.session_csrf()
    assert console.http.get("/console/residents").status_code == 403
    assert console.http.get("/console/residents/new").status_code == 403
    assert console.http.post("/console/residents/search", data={
        "csrf": csrf, "name": "山田 太郎", "birth_date": "19900102"}).status_code == 403


def test_the_language_link_keeps_the_page_and_its_query(console: Console) -> None:
    console.sign_in(console.account("boss", ConsoleRole.SUPERVISOR))
    page = console.http.get("/console/residents?id=nobody")
    assert 'href="/console/residents?id=nobody&amp;lang=en"' in page.text
    after_post = console.http.post("/console/residents/search", data={
        "csrf": console.session_csrf(), "name": "山田 太郎", "birth_date": "19900102"})
    assert 'href="/console/?lang=en"' in after_post.text


# --- the supervisor's dashboard ---------------------------------------------------------------


def test_the_dashboards_numbers_are_what_the_api_says(console: Console,
                                                      new_resident: Callable[..., str]) -> None:
    import csv
    import io

    from cryptography.hazmat.primitives.asymmetric import rsa

    from jpki.issuance.service import KeyRequest
    from tests.holder_kit import ISSUE
    from tests.phone_kit import spki

    for municipality in ("132217", "011002"):
        resident = new_resident(municipality=municipality)
        console.services.issuance.issue(ISSUE, resident, [
            KeyRequest(CertKind.CARD_AUTH, spki(rsa.generate_private_key(65537, 2048)))])
    operator = console.services.clients.create(
        authorize(LOCAL, Operation.CLIENT_CREATE), name="ops", role=ClientRole.OPERATOR)
    api = console.http.get("/v1/operators/statistics?days=7", auth=(
        operator.client.client_id, operator.client_secret)).json()
    console.sign_in(console.account("boss", ConsoleRole.SUPERVISOR))
    page = console.http.get("/console/dashboard?days=7")
    assert page.status_code == 200
    assert page.text.count("<svg") == 12 and "<script" not in page.text
    # The map: a circle per prefecture with valid certificates, at its place.
    assert re.findall(r'data-prefecture="(\d\d)"', page.text) == ["01", "13"]
    issued = console.http.get("/console/dashboard/issued.csv?days=7")
    assert issued.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(issued.content.decode("utf-8-sig"))))
    assert rows[0][0] == "日付" and len(rows) == 1 + 7
    from_csv = {(row[0], kind.value): int(row[1 + i]) for row in rows[1:]
                for i, kind in enumerate(CertKind) if int(row[1 + i])}
    from_api = {(r["day"], r["kind"]): r["count"] for r in api["issued"]}
    assert from_csv == from_api == {(api["until"], "card_auth"): 2}
    by_prefecture = list(csv.reader(io.StringIO(console.http.get(
        "/console/dashboard/prefectures.csv").content.decode("utf-8-sig"))))
    assert {row[0] for row in by_prefecture[1:]} == {"東京都", "北海道"}
    assert sum(r["count"] for r in api["valid_by_prefecture"]) == 2


def _csv(console: Console, name: str) -> list[list[str]]:
    import csv
    import io

    answer = console.http.get(f"/console/dashboard/{name}.csv?days=7")
    assert answer.status_code == 200
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))


def test_the_ocsp_relying_party_and_audit_panels_are_what_the_api_says(
        console: Console, new_resident: Callable[..., str], subject_keys: list[bytes]) -> None:
    import anyio
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import ocsp

    from api import ocsp_traffic
    from api.console.dashboard import figure
    from jpki.issuance.service import KeyRequest
    from jpki.jobs import AUDIT_VERIFY
    from jpki.model import CaKind, JobRun
    from tests.api.harness import basic_auth
    from tests.holder_kit import ISSUE

    services = console.services
    issued = services.issuance.issue(ISSUE, new_resident(), [
        KeyRequest(CertKind.CARD_AUTH, subject_keys[0])])
    with services.uow() as uow:
        generation = uow.cas.current(CaKind.AUTH)
        assert generation is not None
        issuer = x509.load_der_x509_certificate(generation.certificate_der)
    leaf = x509.load_der_x509_certificate(issued[0].der)
    good = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build() \
        .public_bytes(Encoding.DER)
    headers = {"content-type": "application/ocsp-request"}
    for body in (good, good, b"\x30\x03\x02\x01\x01"):
        assert console.http.post("/ocsp", content=body, headers=headers).status_code == 200
    # What `jpki serve` does every few seconds and when it stops: this process's tally added
    # to the minute's rows, which every process adds to.
    anyio.run(ocsp_traffic.write, console.http.app, services)
    operator = services.clients.create(authorize(LOCAL, Operation.CLIENT_CREATE), name="ops",
                                       role=ClientRole.OPERATOR)
    ops = (operator.client.client_id, operator.client_secret)
    made = console.http.post("/v1/operators/relying-parties", auth=ops, json={
        "name": "株式会社計測", "kind": "platform_operator", "purposes": ["test"],
        "scopes": ["status"]}).json()
    rp = basic_auth(made["client_id"], made["client_secret"])
    for serials in (["12"], ["12", "34"]):
        assert console.http.post("/v1/status", headers=rp, json={
            "purpose": "test", "serials": serials}).status_code == 200
    assert console.http.post("/v1/status", headers=rp, json={
        "purpose": "marketing", "serials": ["12"]}).status_code == 403
    assert services.rp_usage.roll_up()["calls"] == 3
    services.jobs.record(JobRun(job=AUDIT_VERIFY, started_at=console.clock.now(),
                                duration_ms=5, outcome="ok", error=None,
                                counts={"records": 7}, last_success_at=console.clock.now()))
    console.sign_in(console.account("boss", ConsoleRole.SUPERVISOR))  # audited: before the API
    api = console.http.get("/v1/operators/statistics?days=7", auth=ops).json()
    today = api["ocsp"][-1]
    assert [d["requests"] for d in api["ocsp"]] == [0] * 6 + [3]
    assert today["successful"] == 2 and today["peak_per_second"] == 3 / 60
    assert 0 < today["p50_ms"] <= today["p99_ms"] <= 1000
    assert api["rp_usage"] == [{"relying_party": made["relying_party"]["id"],
                                "name": "株式会社計測", "scope": "status", "calls": 2,
                                "refused": 1, "items": 3}]
    assert 0 < api["rp_coverage"]["through"] <= api["audit_verification"]["head"]
    assert api["audit_verification"]["records"] == 7
    assert api["audit_verification"]["outcome"] == "ok"
    page = console.http.get("/console/dashboard?days=7")
    assert 'id="panel-ocsp"' in page.text and 'id="latency"' in page.text
    assert console.http.get("/console/dashboard/ocsp.csv?days=7").status_code == 200
    assert _csv(console, "ocsp")[-1] == [
        today["day"], "3", "2", figure(today["per_second"]), figure(today["peak_per_second"]),
        figure(today["mean_ms"]), figure(today["p50_ms"]), figure(today["p99_ms"])]
    assert _csv(console, "rp_usage")[1:] == [
        [made["relying_party"]["id"], "株式会社計測", "status", "2", "1", "3"]]
    audit = dict(_csv(console, "audit")[1:])
    assert audit["検証したレコード数"] == "7" and audit["結果"] == "正常"
    assert audit["現在のレコード数"] == str(api["audit_verification"]["head"])


def test_the_dashboard_is_the_supervisors(console: Console) -> None:
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, "132217"))
    assert console.http.get("/console/dashboard").status_code == 403
    assert console.http.get("/console/dashboard/issued.csv").status_code == 403
    console.http.post("/console/logout", data={"csrf": console.session_csrf()})
    console.clock.advance(seconds=30)
    console.sign_in(console.account("boss", ConsoleRole.SUPERVISOR))
    assert console.http.get("/console/dashboard?days=0").status_code == 400
    assert console.http.get("/console/dashboard/nothing.csv").status_code == 404


# --- DV support measures: two people --------------------------------------------------------------


def test_dv_support_takes_two_people_and_then_masks_the_address(
        console: Console, new_resident: Callable[..., str]) -> None:
    resident = new_resident()
    clerk = console.account("kiyose", ConsoleRole.CLERK, "132217")
    boss = console.account("boss", ConsoleRole.SUPERVISOR)
    console.sign_in(clerk)
    asked = console.http.post("/console/residents/dv-request", data={
        "csrf": console.session_csrf(), "resident_id": resident, "action": "set",
        "category": "stalking"})
    assert asked.status_code == 200 and 'id="dv_message"' in asked.text
    assert console.http.get("/console/dv").status_code == 403  # a counter does not decide
    console.http.post("/console/logout", data={"csrf": console.session_csrf()})
    console.clock.advance(seconds=30)
    console.sign_in(boss)
    before = console.http.get(f"/console/residents?id={resident}")
    assert "清瀬市中里" in before.text  # not under the measures yet
    queue = console.http.get("/console/dv")
    request_id = re.search(r'name="request_id" value="([0-9a-f]{32})"', queue.text)
    assert request_id is not None and resident in queue.text
    assert "山田" not in queue.text and "清瀬市中里" not in queue.text
    approved = console.http.post("/console/dv/decide", data={
        "csrf": console.session_csrf(), "request_id": request_id.group(1),
        "decision": "approve"})
    assert approved.status_code == 200 and "承認しました。" in approved.text
    masked = console.http.get(f"/console/residents?id={resident}")
    assert "清瀬市中里" not in masked.text and "支援措置のため表示しません" in masked.text
    console.http.post("/console/logout", data={"csrf": console.session_csrf()})
    console.clock.advance(seconds=30)
    console.sign_in(clerk)
    shown = console.http.get(f"/console/residents?id={resident}")
    assert "清瀬市中里" in shown.text and "実施中" in shown.text  # the counter keeps it


def test_a_supervisor_cannot_approve_their_own_request(
        console: Console, new_resident: Callable[..., str]) -> None:
    resident = new_resident()
    console.sign_in(console.account("boss", ConsoleRole.SUPERVISOR))
    csrf = console.session_csrf()
    console.http.post("/console/residents/dv-request", data={
        "csrf": csrf, "resident_id": resident, "action": "set", "category": "dv"})
    queue = console.http.get("/console/dv")
    request_id = re.search(r'name="request_id" value="([0-9a-f]{32})"', queue.text)
    assert request_id is not None
    refused = console.http.post("/console/dv/decide", data={
        "csrf": csrf, "request_id": request_id.group(1), "decision": "approve"})
    assert refused.status_code == 403 and "別の統括管理者" in refused.text
    with console.services.uow() as uow:
        record = uow.residents.get(resident)
        assert record is not None and not record.dv_support


# --- management -------------------------------------------------------------------------------


def test_a_supervisor_makes_a_clerk_who_can_sign_in_and_suspends_stations_and_rps(
        console: Console) -> None:
    station = console.services.clients.create(
        authorize(LOCAL, Operation.CLIENT_CREATE), name="Kiyose desk", role=ClientRole.STATION)
    console.sign_in(console.account("boss", ConsoleRole.SUPERVISOR))
    csrf = console.session_csrf()
    made = console.http.post("/console/admin/accounts", data={
        "csrf": csrf, "username": "newclerk", "role": "clerk", "municipality_code": "132217"})
    assert made.status_code == 200
    password = re.search(r'id="made_password">([^<]+)<', made.text)
    secret = re.search(r'id="made_totp">([^<]+)<', made.text)
    assert password is not None and secret is not None
    # Supervisors are made at the CLI only.
    refused = console.http.post("/console/admin/accounts", data={
        "csrf": csrf, "username": "boss2", "role": "supervisor"})
    assert refused.status_code == 400
    with pytest.raises(Forbidden):
        console.services.console.create(
            authorize(console_user_principal(console, "boss"), Operation.CONSOLE_ACCOUNT_CREATE),
            username="boss3", role=ConsoleRole.SUPERVISOR)
    suspended = console.http.post("/console/admin/stations/status", data={
        "csrf": csrf, "client_id": station.client.client_id, "status": "suspended"})
    assert suspended.status_code == 200 and "停止中" in suspended.text
    with console.services.uow() as uow:
        stored = uow.clients.get_by_client_id(station.client.client_id)
        assert stored is not None and stored.status.value == "suspended"
    console.http.post("/console/logout", data={"csrf": csrf})
    console.clock.advance(seconds=30)
    new = NewAccount(username="newclerk", role=ConsoleRole.CLERK, municipality_code="132217",
                     password=password.group(1), totp_secret=secret.group(1), totp_uri="")
    assert console.sign_in(new).headers["location"] == "/console/"


def test_a_supervisor_sees_and_suspends_kiosks_as_stations(console: Console) -> None:
    kiosk = console.services.clients.create(
        authorize(LOCAL, Operation.CLIENT_CREATE), name="FamilyMart Kiyose 2",
        role=ClientRole.KIOSK, scopes=["chain:familymart"])
    console.sign_in(console.account("boss", ConsoleRole.SUPERVISOR))
    page = console.http.get("/console/admin")
    assert page.status_code == 200
    listed = page.text[page.text.index('id="kiosks"'):]
    assert kiosk.client.client_id in listed[:listed.index("</table>")]
    assert "コンビニ端末" in listed
    suspended = console.http.post("/console/admin/kiosks/status", data={
        "csrf": console.session_csrf(), "client_id": kiosk.client.client_id,
        "status": "suspended"})
    assert suspended.status_code == 200 and "停止中" in suspended.text
    with console.services.uow() as uow:
        stored = uow.clients.get_by_client_id(kiosk.client.client_id)
        assert stored is not None and stored.status.value == "suspended"


def console_user_principal(console: Console, username: str) -> Principal:
    from jpki.access.console_accounts import _user

    with console.services.uow() as uow:
        account = uow.console.account(username)
        assert account is not None
    return _user(account).principal


def test_a_supervisor_cannot_suspend_operator_clients_or_other_supervisors(
        console: Console) -> None:
    operator = console.services.clients.create(
        authorize(LOCAL, Operation.CLIENT_CREATE), name="ops", role=ClientRole.OPERATOR)
    console.account("deputy", ConsoleRole.SUPERVISOR)
    console.sign_in(console.account("boss", ConsoleRole.SUPERVISOR))
    csrf = console.session_csrf()
    assert console.http.post("/console/admin/stations/status", data={
        "csrf": csrf, "client_id": operator.client.client_id,
        "status": "suspended"}).status_code == 403
    assert console.http.post("/console/admin/accounts/status", data={
        "csrf": csrf, "username": "deputy", "status": "suspended"}).status_code == 403


def test_the_management_pages_are_the_supervisors(console: Console) -> None:
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, "132217"))
    assert console.http.get("/console/admin").status_code == 403


def test_a_clerk_records_a_lost_card_and_revokes_at_the_holders_request(
        console: Console, new_resident: Callable[..., str]) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from jpki.issuance.service import KeyRequest
    from tests.holder_kit import ISSUE
    from tests.phone_kit import spki

    resident = new_resident()
    sign, auth = console.services.issuance.issue(ISSUE, resident, [
        KeyRequest(CertKind.CARD_SIGN, spki(rsa.generate_private_key(65537, 2048))),
        KeyRequest(CertKind.CARD_AUTH, spki(rsa.generate_private_key(65537, 2048)))])
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, "132217"))
    csrf = console.session_csrf()
    page = console.http.get(f"/console/residents?id={resident}")
    assert sign.serial in page.text and auth.serial in page.text
    number = re.search(r'id="card_number">([^<]+)<', page.text)
    assert number is not None
    revoked = console.http.post("/console/residents/revoke", data={
        "csrf": csrf, "serial": sign.serial, "reason": "keyCompromise"})
    assert revoked.status_code == 200 and 'id="revoke_message"' in revoked.text
    lost = console.http.post("/console/residents/card-event", data={
        "csrf": csrf, "card_number": number.group(1), "kind": "lost"})
    assert lost.status_code == 200 and "紛失（一時保留中）" in lost.text
    with console.services.uow() as uow:
        stored = {s: uow.certificates.get_by_serial(s) for s in (sign.serial, auth.serial)}
    reasons = {s: c.revocation_reason for s, c in stored.items() if c is not None}
    assert reasons == {sign.serial: RevocationReason.KEY_COMPROMISE,
                       auth.serial: RevocationReason.CERTIFICATE_HOLD}
    # A reason the counter does not give is refused, and changes nothing.
    assert console.http.post("/console/residents/revoke", data={
        "csrf": csrf, "serial": auth.serial, "reason": "cACompromise"}).status_code == 400


def test_a_supervisor_suspends_and_resumes_a_relying_party(console: Console) -> None:
    party = console.services.relying_parties.register(
        authorize(LOCAL, Operation.RP_REGISTER), name="Bank", kind="platform_operator",
        purposes=["account"], scopes=["status"]).relying_party
    console.sign_in(console.account("boss", ConsoleRole.SUPERVISOR))
    csrf = console.session_csrf()
    read = authorize(LOCAL, Operation.RP_READ)
    for status in ("suspended", "active"):
        done = console.http.post("/console/admin/relying-parties/status", data={
            "csrf": csrf, "rp_id": party.id, "status": status})
        assert done.status_code == 200 and party.id in done.text
        assert console.services.relying_parties.get(read, party.id).status == status
    assert console.http.post("/console/admin/relying-parties/status", data={
        "csrf": csrf, "rp_id": party.id, "status": "deleted"}).status_code == 400


def test_the_map_places_each_prefecture_where_its_municipalities_are() -> None:
    from api.console.japan_map import municipalities, prefecture_points
    from jpki.municipalities import PREFECTURES, validate_municipality_code

    listed = municipalities()
    assert len(listed) == 1916  # every local public entity japancode ships
    for code, _, _ in listed:
        validate_municipality_code(code)  # check digits and prefectures as the registry has them
    points = prefecture_points()
    assert set(points) == set(PREFECTURES)
    # North to south: Hokkaido above Tokyo above Okinawa; Tokyo's median stays on Honshu.
    assert points["01"][0] > points["13"][0] > points["47"][0]
    assert 35.0 < points["13"][0] < 36.0 and 139.0 < points["13"][1] < 140.0
