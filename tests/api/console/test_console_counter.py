"""The counter's issuance desk over HTTP (api.console.counter): the identity-proofing guide gives
the rule's own verdict and records nothing; a clerk confirms or abandons the delivery of a
station's certificate and registers a new card in place of a lost one, audited under their own
name; and each is refused for another municipality, another role and a forged CSRF token.

The browser test of the guide is in test_console_browser.py.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from datetime import date
from typing import Literal

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from api.console.counter import OTSU_CHOICES, PHOTO_CHOICES
from api.console.i18n import CATALOGUES
from api.console.pages import CSP
from jpki.access.authz import Grant, Operation, authorize
from jpki.access.console_accounts import ConsoleRole
from jpki.access.principals import Principal
from jpki.issuance.service import IssuedCertificate, KeyRequest
from jpki.model import CardStatus, CertKind, ClientRole, RevocationReason
from jpki.registry.proofing import (
    Document,
    DocumentType,
    Evidence,
    Measure,
    Missing,
    NotCounted,
    Pattern,
    Presence,
    ProofingInsufficient,
    evaluate,
)
from jpki.registry.residents import EventKind, ResidentEvent
from tests.api.console.test_console_http import Console, console  # noqa: F401 - the fixture
from tests.phone_kit import spki

pytestmark = pytest.mark.hsm

KIYOSE, CHIYODA = "132217", "131016"
STATION = Principal.client("kiyose-desk", ClientRole.STATION,
                           frozenset({f"municipality:{KIYOSE}"}))
GUIDE = "/console/counter/proofing"
# The CA's operator at the CLI issues without a station: nothing to deliver.
CLI_ISSUE: Grant[Literal[Operation.CERTIFICATE_ISSUE]] = authorize(
    Principal.local_operator("pytest"), Operation.CERTIFICATE_ISSUE)


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</', html, re.S)
    assert found is not None, element_id
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def audit(desk: Console, action: str) -> list[tuple[str, str, dict[str, object]]]:
    with desk.services.uow() as uow:
        return [(r.actor, r.subject, json.loads(r.payload)) for r in uow.audit.iterate()
                if r.action == action]


def audit_count(desk: Console) -> int:
    """The audit records of everything but the console's own signing in and out."""
    with desk.services.uow() as uow:
        return sum(1 for r in uow.audit.iterate() if not r.action.startswith("console."))


def station_issues(desk: Console, resident: str) -> dict[CertKind, IssuedCertificate]:
    """Both card certificates issued at a counter station after its identity proofing: they
    wait for the station to confirm their delivery (architecture §3.5)."""
    services = desk.services
    proofing = services.counter.record_proofing(
        authorize(STATION, Operation.PROOFING_RECORD), resident,
        Evidence(Presence.IN_PERSON, (Document(DocumentType.DRIVERS_LICENSE),
                                      Document(DocumentType.PASSPORT))))
    issued = services.issuance.issue(
        authorize(STATION, Operation.CERTIFICATE_ISSUE), resident,
        [KeyRequest(kind, spki(rsa.generate_private_key(65537, 2048)))
         for kind in (CertKind.CARD_SIGN, CertKind.CARD_AUTH)], proofing_id=proofing.id)
    return {c.kind: c for c in issued}


# --- the identity-proofing guide -------------------------------------------------------------


def test_every_document_measure_and_reason_of_the_rule_has_its_words() -> None:
    """The guide names whatever the rule can answer, in both languages (a missing word would be
    a failed page, never a blank)."""
    keys = {f"doc.{k.value}" for k in DocumentType} | {f"measure.{m.value}" for m in Measure} | \
        {f"proof.why.{n.value}" for n in NotCounted} | \
        {f"proof.missing.{m.value}" for m in Missing} | \
        {f"proof.{v}_{p.value}" for v in ("met", "refused") for p in Presence} | \
        {f"proof.count_{c}" for c in (*OTSU_CHOICES, *PHOTO_CHOICES)}
    for language in ("ja", "en"):
        assert keys <= set(CATALOGUES[language]), keys - set(CATALOGUES[language])


def test_the_guide_gives_the_rules_verdict_and_records_nothing(
        console: Console, new_resident: Callable[..., str]) -> None:  # noqa: F811
    resident = new_resident()
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, KIYOSE))
    before = audit_count(console)

    blank = console.http.get(f"{GUIDE}?id={resident}")
    assert blank.status_code == 200 and 'id="verdict"' not in blank.text
    assert blank.headers["content-security-policy"] == CSP and "style=" not in blank.text
    assert 'id="a.drivers_license"' in blank.text and "<script" not in blank.text

    # Two 甲: pattern B, as the rule says; the station's options for recording it.
    met = console.http.get(GUIDE, params={"id": resident, "check": "1",
                                          "a.drivers_license": "1", "a.passport": "1"})
    assert met.status_code == 200
    assert text_of(met.text, "verdict") == "本人確認のパターン B を満たします。"
    assert evaluate(Evidence(Presence.IN_PERSON, (Document(DocumentType.DRIVERS_LICENSE),
                                                  Document(DocumentType.PASSPORT))),
                    applicant_age=36, today=date(2026, 12, 2)) is Pattern.B
    assert text_of(met.text, "station") == (f"jpki-station enroll --resident {resident} "
                                            "--document drivers_license --document passport")
    # What was ticked stays ticked.
    assert re.search(r'id="a.passport" name="a.passport" value="1" checked', met.text)

    # One 甲 and a measure: A; one 甲 alone: refused, with what was counted and what was not.
    a = console.http.get(GUIDE, params={"id": resident, "check": "1",
                                        "a.my_number_card": "1", "m.pin_entry": "1"})
    assert text_of(a.text, "verdict") == "本人確認のパターン A を満たします。"
    assert "--measure pin_entry" in text_of(a.text, "station")
    refused = console.http.get(GUIDE, params={
        "id": resident, "check": "1", "a.passport": "1",
        "a.driving_record_certificate": "1", "a.driving_record_certificate.date": "20100401",
        "a.receipt": "1", "a.receipt.date": "20200101"})
    assert refused.status_code == 200
    assert text_of(refused.text, "verdict") == \
        "どのパターン（A〜E）も満たしません。交付できません。"
    tally = re.search(r'id="tally-applicant">(.*?)</tr>', refused.text, re.S)
    assert tally is not None and '<td class="kou">1</td>' in tally.group(1)
    not_counted = text_of(refused.text, "not_counted")
    assert "運転経歴証明書：2012年4月1日以降に交付されたものに限ります（※1）" in not_counted
    assert "3か月以内の日付のものに限ります（※4）" in refused.text
    assert 'id="station"' not in refused.text
    with pytest.raises(ProofingInsufficient) as rule:  # the rule's own words, shown as they are
        evaluate(Evidence(Presence.IN_PERSON, (
            Document(DocumentType.PASSPORT),
            Document(DocumentType.DRIVING_RECORD_CERTIFICATE, issued_on=date(2010, 4, 1)),
            Document(DocumentType.RECEIPT, issued_on=date(2020, 1, 1)))),
            applicant_age=36, today=date(2026, 12, 2))
    assert rule.value.detail in html.unescape(refused.text)

    # A 乙 with a photo, twice: the select's counts reach the rule (C: one 甲 and one 乙).
    c = console.http.get(GUIDE, params={"id": resident, "check": "1", "a.passport": "1",
                                        "a.student_id": "2p"})
    assert text_of(c.text, "verdict") == "本人確認のパターン C を満たします。"
    assert "--document student_id:photo --document student_id" in text_of(c.text, "station")

    # The guide recorded nothing: no proofing, no audit record.
    assert audit_count(console) == before


def test_the_guide_for_a_proxy_names_what_is_missing(
        console: Console, new_resident: Callable[..., str]) -> None:  # noqa: F811
    resident = new_resident()
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, KIYOSE))
    proxy_b = {"id": resident, "check": "1", "presence": "proxy",
               "p.drivers_license": "1", "p.passport": "1",
               "a.passport": "1", "a.health_insurance_card": "1"}
    lacking = console.http.get(GUIDE, params=proxy_b)
    assert text_of(lacking.text, "verdict") == \
        "代理人への交付の条件を満たしません。交付できません。"
    assert text_of(lacking.text, "missing").startswith("書類はパターン B を満たしますが")
    assert re.findall(r'class="missing">([^<]+)<', lacking.text) == [
        "委任状（交付通知書）", "本人が来庁できないことの疎明資料"]
    assert re.search(r'<details id="proxy" open>', lacking.text)
    met = console.http.get(GUIDE, params={**proxy_b, "delegation_letter": "1",
                                          "hardship_proof": "1"})
    assert text_of(met.text, "verdict") == "代理人への交付：パターン B を満たします。"
    assert 'id="station"' not in met.text and 'id="station_note"' in met.text

    # Proxy documents for an applicant in person, and a date nobody can read: said on the
    # guide, which keeps what was ticked.
    in_person = console.http.get(GUIDE, params={**proxy_b, "presence": "in_person"})
    assert in_person.status_code == 422
    assert text_of(in_person.text, "verdict").startswith("本人の来庁では代理人の書類は使いません")
    bad_date = console.http.get(GUIDE, params={
        "id": resident, "check": "1", "a.receipt": "1", "a.receipt.date": "2026-13-45"})
    assert bad_date.status_code == 422
    assert text_of(bad_date.text, "verdict").startswith("日付は YYYYMMDD")
    assert 'value="2026-13-45"' in bad_date.text
    forged = console.http.get(GUIDE, params={"id": resident, "check": "1",
                                             "a.student_id": "9"})
    assert forged.status_code == 422
    english = console.http.get(GUIDE, params={**proxy_b, "delegation_letter": "1",
                                              "hardship_proof": "1", "lang": "en"})
    assert text_of(english.text, "verdict") == "Delivery to a proxy: pattern B is met."


def test_the_guide_is_refused_elsewhere_and_to_other_roles(
        console: Console, new_resident: Callable[..., str]) -> None:  # noqa: F811
    elsewhere = new_resident(municipality=CHIYODA, name="千代田 一郎",
                             address="東京都千代田区千代田１番１号")
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, KIYOSE))
    for params in ({"id": elsewhere}, {"id": elsewhere, "check": "1", "a.passport": "1"}):
        refused = console.http.get(GUIDE, params=params)
        assert refused.status_code == 403 and "千代田" not in refused.text
    assert console.http.get(GUIDE, params={"id": "nobody"}).status_code == 404
    # A record that has ended (death) takes no proofing: the rule's refusal, not a verdict.
    died = new_resident(name="山田 三郎")
    console.services.residents.record_event(
        authorize(Principal.local_operator("pytest"), Operation.RESIDENT_EVENT), died,
        ResidentEvent(kind=EventKind.DEATH, date=date(2026, 1, 1)))
    ended = console.http.get(GUIDE, params={"id": died, "check": "1", "a.passport": "1"})
    assert ended.status_code == 422 and 'id="verdict"' not in ended.text
    console.http.post("/console/logout", data={"csrf": console.session_csrf()})
    console.clock.advance(seconds=30)
    console.sign_in(console.account("agent", ConsoleRole.AGENT))
    assert console.http.get(GUIDE, params={"id": elsewhere}).status_code == 403


# --- delivery and abandonment -----------------------------------------------------------------


def test_a_clerk_confirms_or_abandons_a_stations_undelivered_certificates(
        console: Console, new_resident: Callable[..., str]) -> None:  # noqa: F811
    resident = new_resident()
    issued = station_issues(console, resident)
    sign, auth = issued[CertKind.CARD_SIGN].serial, issued[CertKind.CARD_AUTH].serial
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, KIYOSE))
    csrf = console.session_csrf()
    page = console.http.get(f"/console/residents?id={resident}")
    assert page.text.count('class="deliver"') == 2 and page.text.count("（交付未確認）") == 2

    # A forged token changes nothing.
    before = audit_count(console)
    for path in ("/console/counter/delivery", "/console/counter/abandonment"):
        assert console.http.post(path, data={"csrf": "forged", "serial": auth}).status_code \
            == 403
    assert audit_count(console) == before

    delivered = console.http.post("/console/counter/delivery", data={"csrf": csrf,
                                                                      "serial": auth})
    assert delivered.status_code == 200
    assert text_of(delivered.text, "delivery_message").startswith("交付を確認しました")
    assert delivered.text.count('class="deliver"') == 1
    abandoned = console.http.post("/console/counter/abandonment", data={"csrf": csrf,
                                                                        "serial": sign})
    assert abandoned.status_code == 200
    assert text_of(abandoned.text, "delivery_message").startswith("交付前に破棄し")
    with console.services.uow() as uow:
        stored_auth, stored_sign = (uow.certificates.get_by_serial(s) for s in (auth, sign))
        assert stored_auth is not None and stored_auth.delivered_at == console.clock.now()
        assert stored_sign is not None and \
            stored_sign.revocation_reason is RevocationReason.UNSPECIFIED
    # Audited under the clerk's own name, as the REST API's station would be under its own.
    assert audit(console, "certificate.delivered") == [
        ("console:kiyose", auth, {"kind": "card_auth"})]
    (revoked,) = [r for r in audit(console, "certificate.revoked") if r[1] == sign]
    assert revoked[0] == "console:kiyose" and revoked[2]["cause"] == "not delivered"

    # Delivered is no longer to abandon, abandoned no longer to deliver (409).
    assert console.http.post("/console/counter/abandonment", data={
        "csrf": csrf, "serial": auth}).status_code == 409
    assert console.http.post("/console/counter/delivery", data={
        "csrf": csrf, "serial": sign}).status_code == 409
    # A certificate the CA's operator issued (no station, nothing to deliver) is no clerk's.
    other = new_resident(name="山田 次郎")
    (cli_issued,) = console.services.issuance.issue(
        CLI_ISSUE, other, [KeyRequest(CertKind.CARD_AUTH, spki(rsa.generate_private_key(65537,
                                                                                    2048)))])
    assert console.http.post("/console/counter/delivery", data={
        "csrf": csrf, "serial": cli_issued.serial}).status_code == 403
    assert console.http.post("/console/counter/delivery", data={
        "csrf": csrf, "serial": "not a serial"}).status_code == 400


def test_delivery_is_refused_elsewhere_and_to_other_roles(
        console: Console, new_resident: Callable[..., str]) -> None:  # noqa: F811
    resident = new_resident()
    auth = station_issues(console, resident)[CertKind.CARD_AUTH].serial
    before = audit_count(console)
    for new in (console.account("chiyoda", ConsoleRole.CLERK, CHIYODA),
                console.account("agent", ConsoleRole.AGENT)):
        console.sign_in(new)
        csrf = console.session_csrf()
        for path in ("/console/counter/delivery", "/console/counter/abandonment"):
            refused = console.http.post(path, data={"csrf": csrf, "serial": auth})
            assert refused.status_code == 403, (new.username, path)
        console.http.post("/console/logout", data={"csrf": csrf})
        console.clock.advance(seconds=30)
    assert audit_count(console) == before
    with console.services.uow() as uow:
        stored = uow.certificates.get_by_serial(auth)
        assert stored is not None and stored.delivered_at is None and stored.revoked_at is None


# --- a new card in place of a lost one --------------------------------------------------------


def test_a_lost_card_is_replaced_and_its_held_certificates_revoked_for_good(
        console: Console, new_resident: Callable[..., str]) -> None:  # noqa: F811
    resident = new_resident()
    issued = station_issues(console, resident)
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, KIYOSE))
    csrf = console.session_csrf()
    number = text_of(console.http.get(f"/console/residents?id={resident}").text, "card_number")
    lost = console.http.post("/console/residents/card-event", data={
        "csrf": csrf, "card_number": number, "kind": "lost"})
    assert lost.status_code == 200 and 'id="new_card"' in lost.text
    held_at = console.clock.now()
    console.clock.advance(minutes=10)

    assert console.http.post("/console/counter/card", data={
        "csrf": "forged", "resident_id": resident}).status_code == 403
    replaced = console.http.post("/console/counter/card", data={
        "csrf": csrf, "resident_id": resident, "number": "NEWCARD0001", "expires_on": ""})
    assert replaced.status_code == 200
    assert text_of(replaced.text, "card_message").startswith("新しいカードを登録しました。")
    assert text_of(replaced.text, "card_number") == "NEWCARD0001"
    assert text_of(replaced.text, "card_status") == "利用中"
    with console.services.uow() as uow:
        old = uow.cards.get_by_number(number)
        assert old is not None and old.status is CardStatus.REPLACED
        for cert in issued.values():
            stored = uow.certificates.get_by_serial(cert.serial)
            # RFC 5280 §5.3.1: the hold made permanent; its date stays the revocation date.
            assert stored is not None
            assert stored.revocation_reason is RevocationReason.SUPERSEDED
            assert stored.revoked_at == held_at
    ((actor, subject, payload),) = audit(console, "card.registered")[-1:]
    assert (actor, subject, payload["replaces"]) == ("console:kiyose", "NEWCARD0001", number)
    # The lost card, once replaced, is neither found nor returned any more.
    assert console.http.post("/console/residents/card-event", data={
        "csrf": csrf, "card_number": number, "kind": "found"}).status_code == 422


def test_a_new_card_is_refused_elsewhere_and_to_other_roles(
        console: Console, new_resident: Callable[..., str]) -> None:  # noqa: F811
    resident = new_resident()
    console.services.issuance.issue(CLI_ISSUE, resident, [KeyRequest(
        CertKind.CARD_AUTH, spki(rsa.generate_private_key(65537, 2048)))])
    before = audit_count(console)
    for new in (console.account("chiyoda", ConsoleRole.CLERK, CHIYODA),
                console.account("agent", ConsoleRole.AGENT)):
        console.sign_in(new)
        csrf = console.session_csrf()
        refused = console.http.post("/console/counter/card", data={"csrf": csrf,
                                                                   "resident_id": resident})
        assert refused.status_code == 403, new.username
        console.http.post("/console/logout", data={"csrf": csrf})
        console.clock.advance(seconds=30)
    assert audit_count(console) == before
    with console.services.uow() as uow:
        card = uow.cards.active_for_resident(resident)
        assert card is not None and card.status is CardStatus.ACTIVE
