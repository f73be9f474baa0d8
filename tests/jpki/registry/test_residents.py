"""Resident-registry events and card events, and what they do to certificates (architecture §4)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography import x509

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import (
    CardInactive,
    EmigrationPending,
    InvalidBasic4,
    InvalidDate,
    InvalidInput,
    InvalidMunicipalityCode,
    MissingScope,
    MunicipalityNotFound,
    ResidentInactive,
    ResidentNotFound,
)
from jpki.issuance.service import KeyRequest
from jpki.lifecycle.cards import CardSpec
from jpki.model import CertKind, RegistrySource, ResidentStatus
from jpki.registry.cards import CardEvent
from jpki.registry.residents import EventKind, ResidentEvent

pytestmark = pytest.mark.hsm

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)


def issue(services, rid, keys, kinds=(CertKind.CARD_AUTH, CertKind.CARD_SIGN)):
    return {c.kind: c for c in services.issuance.issue(
        ISSUE, rid, [KeyRequest(k, keys[i]) for i, k in enumerate(kinds)])}


def status(services, operator, serial):
    view = services.certificates.show(authorize(operator, Operation.CERTIFICATE_READ), serial)
    return view.status, view.revocation_reason


def san_values(der: bytes) -> dict[str, str]:
    cert = x509.load_der_x509_certificate(der)
    return {n.type_id.dotted_string.rsplit(".", 1)[1]: n.value[2:].decode()
            for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}


@pytest.mark.parametrize(("event", "check"), [
    (ResidentEvent(EventKind.ADDRESS, address="東京都清瀬市元町二丁目"),
     ("5", "東京都清瀬市元町二丁目")),
    (ResidentEvent(EventKind.NAME, name="鈴木 太郎"), ("1", "鈴木\u3000太郎")),
    (ResidentEvent(EventKind.SEX, sex=3), ("3", "3")),
    (ResidentEvent(EventKind.BIRTH, birth_date=date(1990, 1, 3)), ("4", "419900103")),
])
def test_a_basic4_change_revokes_the_signing_certificate_only(services, new_resident,
                                                               subject_keys, operator, event,
                                                               check):
    rid = new_resident()
    certs = issue(services, rid, subject_keys)
    outcome = services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), rid, event)
    assert outcome.changed
    assert [r.serial for r in outcome.revocations] == [certs[CertKind.CARD_SIGN].serial]
    assert status(services, operator, certs[CertKind.CARD_SIGN].serial) == (
        "revoked", "affiliationChanged")
    assert status(services, operator, certs[CertKind.CARD_AUTH].serial) == ("good", None)
    # A new signing certificate carries the new value.
    new = issue(services, rid, subject_keys[2:], kinds=(CertKind.CARD_SIGN,))[CertKind.CARD_SIGN]
    oid_suffix, expected = check
    assert san_values(new.der)[oid_suffix] == expected
    assert new.predecessor == certs[CertKind.CARD_SIGN].serial


def test_replaying_the_same_change_changes_nothing(services, new_resident, subject_keys,
                                                   operator):
    rid = new_resident(address="東京都清瀬市中里一丁目")
    issue(services, rid, subject_keys)
    with services.uow() as uow:
        head = uow.audit.head()
    outcome = services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT),
        rid, ResidentEvent(EventKind.ADDRESS, address="東京都清瀬市中里１丁目"
                                     .replace("１", "一")))
    assert not outcome.changed and outcome.revocations == []
    with services.uow() as uow:
        assert uow.audit.head() == head


def test_moving_to_another_municipality_changes_the_shard(services, new_resident,
                                                          subject_keys, operator):
    rid = new_resident()
    issue(services, rid, subject_keys)
    services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), rid, ResidentEvent(
        EventKind.ADDRESS, address="東京都千代田区霞が関二丁目", municipality_code="131016"))
    new = issue(services, rid, subject_keys[2:], kinds=(CertKind.CARD_SIGN,))[CertKind.CARD_SIGN]
    assert services.certificates.show(
        authorize(operator, Operation.CERTIFICATE_READ), new.serial).shard == "131016"
    subject = x509.load_der_x509_certificate(new.der).subject
    assert [a.value for a in subject][:3] == ["JP", "Tokyo-to", "Chiyoda-ku"]


def test_death_revokes_everything_and_ends_the_record(services, new_resident, subject_keys,
                                                      operator):
    rid = new_resident()
    certs = issue(services, rid, subject_keys)
    death = ResidentEvent(EventKind.DEATH, date=date(2026, 11, 26))
    outcome = services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), rid, death)
    assert {r.serial for r in outcome.revocations} == {c.serial for c in certs.values()}
    for cert in certs.values():
        assert status(services, operator, cert.serial) == ("revoked", "cessationOfOperation")
    assert services.residents.get(
        authorize(operator, Operation.RESIDENT_READ), rid).status is ResidentStatus.DECEASED
    with pytest.raises(ResidentInactive):
        issue(services, rid, subject_keys[2:], kinds=(CertKind.CARD_AUTH,))
    with pytest.raises(ResidentInactive):
        services.residents.record_event(
            authorize(operator, Operation.RESIDENT_EVENT),
            rid, ResidentEvent(EventKind.NAME, name="x y"))


def test_emigration_revokes_the_signing_certificate_on_the_departure_date(
        services, new_resident, subject_keys, operator, clock):
    rid = new_resident()
    certs = issue(services, rid, subject_keys)
    departure = date(2026, 12, 20)
    outcome = services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), rid, ResidentEvent(
        EventKind.EMIGRATION, date=departure, address="アメリカ合衆国カリフォルニア州"))
    (revocation,) = outcome.revocations
    # 00:00 JST on the departure date.
    assert revocation.revoked_at == datetime(2026, 12, 19, 15, 0, tzinfo=UTC)
    sign = certs[CertKind.CARD_SIGN].serial
    assert status(services, operator, sign) == ("good", None)  # until the departure date
    with pytest.raises(EmigrationPending):
        issue(services, rid, subject_keys[2:], kinds=(CertKind.CARD_SIGN,))
    clock.set(datetime(2026, 12, 19, 15, 0, tzinfo=UTC))
    assert status(services, operator, sign) == ("revoked", "affiliationChanged")
    assert status(services, operator, certs[CertKind.CARD_AUTH].serial) == ("good", None)
    # From the departure date, a new signing certificate from the 戸籍の附票 record.
    new = issue(services, rid, subject_keys[2:], kinds=(CertKind.CARD_SIGN,))[CertKind.CARD_SIGN]
    assert san_values(new.der)["5"] == "アメリカ合衆国カリフォルニア州"
    with services.uow() as uow:
        stored = uow.certificates.get_by_serial(new.serial)
        assert stored.registry_source is RegistrySource.KOSEKI_FUHYO
        assert uow.certificates.get_by_serial(sign).registry_source is RegistrySource.JUMINHYO
    resident = services.residents.get(authorize(operator, Operation.RESIDENT_READ), rid)
    assert resident.registry_source is RegistrySource.KOSEKI_FUHYO
    assert resident.emigrated_on == departure


def test_emigration_in_the_past_revokes_now(services, new_resident, subject_keys, operator,
                                            clock):
    rid = new_resident()
    certs = issue(services, rid, subject_keys)
    outcome = services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), rid, ResidentEvent(
        EventKind.EMIGRATION, date=date(2026, 11, 1), address="フランス共和国パリ市"))
    assert outcome.revocations[0].revoked_at == clock.now()  # never backdated
    assert status(services, operator, certs[CertKind.CARD_SIGN].serial)[0] == "revoked"


@pytest.mark.parametrize(("event", "error"), [
    (ResidentEvent(EventKind.ADDRESS), InvalidInput),
    (ResidentEvent(EventKind.ADDRESS, address="a" * 201), InvalidBasic4),
    (ResidentEvent(EventKind.NAME, name="\x00bad"), InvalidBasic4),
    (ResidentEvent(EventKind.BIRTH, birth_date=date(2030, 1, 1)), InvalidDate),
    (ResidentEvent(EventKind.DEATH, date=date(2030, 1, 1)), InvalidDate),
    (ResidentEvent(EventKind.EMIGRATION, address="パリ"), InvalidInput),
    (ResidentEvent(EventKind.ADDRESS, address="x", municipality_code="131017"),
     InvalidMunicipalityCode),
    (ResidentEvent(EventKind.ADDRESS, address="x", municipality_code="012025"),
     MunicipalityNotFound),
])
def test_bad_events_change_nothing(services, new_resident, subject_keys, operator, event, error):
    rid = new_resident()
    issue(services, rid, subject_keys)
    with services.uow() as uow:
        head = uow.audit.head()
    with pytest.raises(error) as info:
        services.residents.record_event(authorize(operator, Operation.RESIDENT_EVENT), rid, event)
    assert "山田" not in str(info.value) and "清瀬" not in repr(info.value)
    with services.uow() as uow:
        assert uow.audit.head() == head
        assert all(c.revoked_at is None for c in uow.certificates.for_resident(rid))


def test_unknown_resident(services, operator):
    with pytest.raises(ResidentNotFound):
        services.residents.record_event(
            authorize(operator, Operation.RESIDENT_EVENT), "0" * 32, ResidentEvent(EventKind.DEATH))


def test_municipality_scopes_restrict_operators(services, new_resident):
    rid = new_resident(municipality="132217")
    chiyoda = Principal(actor="client:chiyoda", kind=PrincipalKind.OPERATOR,
                        scopes=frozenset({"municipality:131016"}))
    kiyose = Principal(actor="client:kiyose", kind=PrincipalKind.OPERATOR,
                       scopes=frozenset({"municipality:132217"}))
    with pytest.raises(MissingScope):
        services.residents.record_event(
            authorize(chiyoda, Operation.RESIDENT_EVENT), rid, ResidentEvent(EventKind.DEATH))
    with pytest.raises(MissingScope):
        services.residents.register(
            authorize(chiyoda, Operation.RESIDENT_REGISTER),
            name="a b", birth_date=date(1990, 1, 1), sex=1,
            address="東京都", municipality_code="132217")
    assert services.residents.get(authorize(kiyose, Operation.RESIDENT_READ), rid).id == rid


# --- cards --------------------------------------------------------------------------------


def _card(services, rid):
    with services.uow() as uow:
        return uow.cards.active_for_resident(rid).number


def test_a_lost_card_puts_its_certificates_on_hold_for_good(services, new_resident,
                                                            subject_keys, operator):
    rid = new_resident()
    certs = issue(services, rid, subject_keys)
    number = _card(services, rid)
    lost = services.cards.record_event(
        authorize(operator, Operation.CARD_EVENT), number, CardEvent.LOST)
    assert len(lost.revocations) == 2
    for cert in certs.values():
        assert status(services, operator, cert.serial) == ("revoked", "certificateHold")
    # Found again: the hold is never released; the certificates are revoked (§3.2).
    found = services.cards.record_event(
        authorize(operator, Operation.CARD_EVENT), number, CardEvent.FOUND)
    assert len(found.revocations) == 2
    for cert in certs.values():
        assert status(services, operator, cert.serial) == ("revoked", "cessationOfOperation")
    with pytest.raises(CardInactive):
        services.cards.record_event(
            authorize(operator, Operation.CARD_EVENT), number, CardEvent.FOUND)


def test_a_returned_card_revokes_and_a_new_card_starts_afresh(services, new_resident,
                                                              subject_keys, operator):
    rid = new_resident()
    certs = issue(services, rid, subject_keys)
    services.cards.record_event(
        authorize(operator, Operation.CARD_EVENT), _card(services, rid), CardEvent.RETURNED)
    for cert in certs.values():
        assert status(services, operator, cert.serial) == ("revoked", "cessationOfOperation")
    services.cards.register(
        authorize(operator, Operation.CARD_REGISTER),
        rid, CardSpec(number="NEWCARD0001", expires_on=date(2035, 1, 2)))
    new = issue(services, rid, subject_keys[2:])
    assert new[CertKind.CARD_AUTH].card_number == "NEWCARD0001"
    assert new[CertKind.CARD_AUTH].not_after <= datetime(2035, 1, 2, 14, 59, 59, tzinfo=UTC)


def test_a_replacement_card_supersedes_the_old_cards_certificates(services, new_resident,
                                                                  subject_keys, operator):
    rid = new_resident()
    certs = issue(services, rid, subject_keys)
    outcome = services.cards.register(
        authorize(operator, Operation.CARD_REGISTER), rid, CardSpec(number="REPLACE0001"))
    assert {r.serial for r in outcome.revocations} == {c.serial for c in certs.values()}
    for cert in certs.values():
        assert status(services, operator, cert.serial) == ("revoked", "superseded")


def test_expired_certificates_are_left_alone_by_events(services, new_resident, subject_keys,
                                                       operator, clock):
    rid = new_resident()
    certs = issue(services, rid, subject_keys)
    clock.set(certs[CertKind.CARD_SIGN].not_after + timedelta(seconds=1))
    outcome = services.residents.record_event(authorize(operator, Operation.RESIDENT_EVENT), rid,
                                              ResidentEvent(EventKind.ADDRESS, address="東京都"))
    assert outcome.revocations == []
