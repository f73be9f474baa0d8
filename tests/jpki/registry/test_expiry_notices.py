"""Expiry notices (有効期限通知書, jpki.registry.expiry_notices): one row per holder of the
municipality whose valid card certificates expire in the window, with what a notice needs and
no more; the municipality's own and national operators only; the address of a resident under DV
support measures to the municipality's own only; every export audited with counts only, before
the first row, from the snapshot the rows are streamed from."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.basic4 import normalize_address as A
from jpki.basic4 import normalize_name as N
from jpki.errors import (
    InvalidInput,
    InvalidMunicipalityCode,
    MissingScope,
    MunicipalityNotFound,
    WrongRole,
)
from jpki.issuance.service import KeyRequest
from jpki.model import CertKind, RevocationReason
from jpki.registry.expiry_notices import CSV_COLUMNS, WindowInvalid, as_csv, as_json
from jpki.registry.residents import EventKind, ResidentEvent
from jpki.validity import jst_date
from tests.phone_kit import spki

pytestmark = pytest.mark.hsm

LOCAL = Principal.local_operator("test")
KIYOSE = "132217"
CHIYODA = "131016"
KIYOSE_OPERATOR = Principal(actor="client:kiyose", kind=PrincipalKind.OPERATOR,
                            scopes=frozenset({f"municipality:{KIYOSE}"}))
CHIYODA_OPERATOR = Principal(actor="client:chiyoda", kind=PrincipalKind.OPERATOR,
                             scopes=frozenset({f"municipality:{CHIYODA}"}))
NATIONAL = authorize(LOCAL, Operation.EXPIRY_NOTICES)
ISSUE = authorize(LOCAL, Operation.CERTIFICATE_ISSUE)
REGISTER = authorize(LOCAL, Operation.RESIDENT_REGISTER)
EVENT = authorize(LOCAL, Operation.RESIDENT_EVENT)
REVOKE = authorize(LOCAL, Operation.CERTIFICATE_REVOKE)
SOON = date(1990, 1, 2)  # the 5th birthday after issuance on 2026-11-27: 2031-01-02
LATER = date(1990, 6, 1)  # 2031-06-01: outside the window
PEOPLE = {  # name → (birth, address, municipality, dv_support)
    "清瀬 一郎": (SOON, "東京都清瀬市中里一丁目２番３号 一号棟", KIYOSE, False),
    "清瀬 遅子": (LATER, "東京都清瀬市中里二丁目１番 二号棟", KIYOSE, False),
    "千代田 三郎": (SOON, "東京都千代田区千代田一番一号 皇居前", CHIYODA, False),
    "清瀬 守": (SOON, "東京都清瀬市秘密町三丁目 シェルター", KIYOSE, True),
    "清瀬 転居": (SOON, "東京都清瀬市中里四丁目 旧居", KIYOSE, False),
    "清瀬 故人": (SOON, "東京都清瀬市中里五丁目 故居", KIYOSE, False),
}


@pytest.fixture(scope="module")
def private_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(65537, 2048) for _ in range(2 * len(PEOPLE))]


@pytest.fixture
def town(services, private_keys):
    """The residents of PEOPLE with both card certificates; the mover's signing certificate
    revoked by the move, the deceased's every certificate by death. name → (id, not_after)."""
    keys = list(private_keys)
    made = {}
    for name, (birth, address, municipality, dv) in PEOPLE.items():
        rid = services.residents.register(REGISTER, name=name, birth_date=birth, sex=1,
                                          address=address, municipality_code=municipality,
                                          dv_support=dv).id
        issued = services.issuance.issue(ISSUE, rid, [
            KeyRequest(kind, spki(keys.pop())) for kind in (CertKind.CARD_AUTH,
                                                            CertKind.CARD_SIGN)])
        made[name] = (rid, {c.kind: c for c in issued})
    services.residents.record_event(EVENT, made["清瀬 転居"][0], ResidentEvent(
        kind=EventKind.ADDRESS, address="東京都清瀬市中里六丁目 新居"))
    services.residents.record_event(EVENT, made["清瀬 故人"][0], ResidentEvent(
        kind=EventKind.DEATH, date=date(2026, 11, 26)))
    return made


def export(services, grant=NATIONAL, municipality=KIYOSE, start=date(2031, 1, 1),
           end=date(2031, 2, 1), fmt="json"):
    done = services.expiry_notices.export(grant, municipality, start, end, fmt)
    try:
        return done.count, list(done.notices)
    finally:
        done.close()


def audit_records(services):
    with services.uow() as uow:
        return [r for r in uow.audit.iterate()]


def test_one_row_per_holder_whose_valid_card_certificates_expire_in_the_window(services, town):
    soon = town["清瀬 一郎"][1]
    expires = jst_date(soon[CertKind.CARD_AUTH].not_after)
    assert expires == date(2031, 1, 2)
    assert jst_date(soon[CertKind.CARD_SIGN].not_after) == expires

    count, notices = export(services)
    expected = sorted(town[n][0] for n in ("清瀬 一郎", "清瀬 守", "清瀬 転居"))
    assert count == 3
    assert [n.resident_id for n in notices] == expected
    by_id = {n.resident_id: n for n in notices}
    first = by_id[town["清瀬 一郎"][0]]
    assert (first.name, first.address, first.address_withheld, first.expires_on,
            first.certificates) == (N("清瀬 一郎"), A("東京都清瀬市中里一丁目２番３号 一号棟"),
                                    False, expires, ("sign", "auth"))
    # The move revoked the signing certificate (affiliationChanged): the auth one remains, and
    # the notice goes to the new address.
    mover = by_id[town["清瀬 転居"][0]]
    assert (mover.certificates, mover.address) == (("auth",), A("東京都清瀬市中里六丁目 新居"))
    # A national caller does not get the address of a resident under DV support measures.
    protected = by_id[town["清瀬 守"][0]]
    assert (protected.name, protected.address, protected.address_withheld) == (
        N("清瀬 守"), None, True)
    # Nothing personal in a notice's repr.
    for secret in ("清瀬", "中里", "1990"):
        assert secret not in repr(notices)


def test_the_window_is_of_jst_dates_from_included_to_excluded(services, town):
    # notAfter is 2031-01-02T14:59:59Z, 23:59:59 JST of 2 January.
    assert export(services, start=date(2031, 1, 2), end=date(2031, 1, 3))[0] == 3
    assert export(services, start=date(2030, 12, 1), end=date(2031, 1, 2))[0] == 0
    assert export(services, start=date(2031, 1, 3), end=date(2031, 6, 1))[0] == 0
    assert export(services, start=date(2031, 1, 3), end=date(2031, 6, 2))[0] == 1  # 遅子


def test_what_is_no_longer_valid_gets_no_notice(services, town):
    rid, certs = town["清瀬 一郎"]
    for cert in certs.values():
        services.revocation.revoke(REVOKE, cert.serial, RevocationReason.KEY_COMPROMISE)
    count, notices = export(services)
    assert rid not in [n.resident_id for n in notices]
    assert count == len(notices) == 2


def test_the_municipality_s_own_operators_see_the_protected_address(services, town):
    grant = authorize(KIYOSE_OPERATOR, Operation.EXPIRY_NOTICES)
    _, notices = export(services, grant=grant)
    protected = next(n for n in notices if n.resident_id == town["清瀬 守"][0])
    assert (protected.address, protected.address_withheld) == (
        A("東京都清瀬市秘密町三丁目 シェルター"), False)


def test_refusals_read_nothing_and_audit_nothing(services, town):
    before = len(audit_records(services))
    with pytest.raises(MissingScope):  # another municipality's operator
        export(services, grant=authorize(CHIYODA_OPERATOR, Operation.EXPIRY_NOTICES))
    for kind in (PrincipalKind.STATION, PrincipalKind.CALL_CENTRE, PrincipalKind.SYSTEM_JOB):
        with pytest.raises(WrongRole):
            authorize(Principal(actor="x", kind=kind), Operation.EXPIRY_NOTICES)
    with pytest.raises(WindowInvalid) as empty:
        export(services, start=date(2031, 2, 1), end=date(2031, 2, 1))
    assert empty.value.context == {"field": "to"}
    with pytest.raises(WindowInvalid):
        export(services, start=date(2031, 1, 1), end=date(2032, 1, 3))  # 367 days
    assert export(services, start=date(2031, 1, 1), end=date(2032, 1, 2))[0] >= 0  # 366 days
    with pytest.raises(InvalidMunicipalityCode):
        export(services, municipality="132218")  # a wrong check digit
    with pytest.raises(MunicipalityNotFound):
        export(services, municipality="139998")
    with pytest.raises(InvalidInput):
        export(services, fmt="xml")
    exported = [r for r in audit_records(services)[before:]]
    assert [r.action for r in exported] == ["notices.expiry_exported"]  # the 366-day one


def test_each_export_is_audited_with_counts_only_before_the_rows(services, town):
    done = services.expiry_notices.export(NATIONAL, KIYOSE, date(2031, 1, 1), date(2031, 2, 1),
                                          "csv")
    record = audit_records(services)[-1]  # written before a single row was read
    assert (record.action, record.subject, record.actor) == (
        "notices.expiry_exported", KIYOSE, LOCAL.actor)
    assert json.loads(record.payload) == {"from": "2031-01-01", "to": "2031-02-01",
                                          "format": "csv", "count": 3}
    # The rows come from the snapshot the count was read in: a death committed meanwhile (every
    # certificate revoked) does not make the list disagree with the audited count.
    rid = town["清瀬 一郎"][0]
    services.residents.record_event(EVENT, rid, ResidentEvent(kind=EventKind.DEATH,
                                                              date=date(2026, 11, 26)))
    rows = list(csv.reader(io.StringIO("".join(as_csv(done.notices)))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) - 1 == 3 and rid in [r[0] for r in rows[1:]]
    assert export(services)[0] == 2  # the next export sees the death
    with services.uow() as uow:
        services.audit.verify(uow)
    text = json.dumps([(r.action, r.subject, r.payload) for r in audit_records(services)],
                      ensure_ascii=False)
    for name, (_, address, _, _) in PEOPLE.items():
        for secret in (name, N(name), address, A(address)):
            assert secret not in text


def test_csv_and_json_carry_the_same_rows(services, town):
    done = services.expiry_notices.export(NATIONAL, KIYOSE, date(2031, 1, 1), date(2031, 2, 1),
                                          "json")
    doc = json.loads("".join(as_json(done, batch=1)))
    assert (doc["municipality"], doc["from"], doc["to"], doc["count"]) == (
        KIYOSE, "2031-01-01", "2031-02-01", 3)
    assert len(doc["notices"]) == 3
    assert set(doc["notices"][0]) == {"resident_id", "name", "address", "address_withheld",
                                      "expires_on", "certificates"}
    done = services.expiry_notices.export(NATIONAL, KIYOSE, date(2031, 1, 1), date(2031, 2, 1),
                                          "csv")
    rows = list(csv.DictReader(io.StringIO("".join(as_csv(done.notices, batch=1)))))
    assert [r["resident_id"] for r in rows] == [n["resident_id"] for n in doc["notices"]]
    assert [r["certificates"] for r in rows] == [" ".join(n["certificates"])
                                                 for n in doc["notices"]]
    assert [r["address"] for r in rows] == [n["address"] or "" for n in doc["notices"]]
    # An empty list is still a document.
    none = services.expiry_notices.export(NATIONAL, CHIYODA, date(2035, 1, 1),
                                          date(2035, 2, 1), "json")
    assert json.loads("".join(as_json(none)))["notices"] == []
