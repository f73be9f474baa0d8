"""The municipality registry over time (jpki.registry.municipalities, architecture §5.6): add,
rename and merge, with certificates keeping the CRL distribution point they were issued with,
each shard's CRL answering for exactly its certificates, and the CRL scopes published only
where they are needed. Both databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography import x509
from sqlalchemy import select

from api.composition import Services
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import (
    CrlNameTaken,
    InvalidInput,
    InvalidMunicipalityCode,
    MissingScope,
    MunicipalityExists,
    MunicipalityMerged,
    MunicipalityNotFound,
    NotFound,
    WrongRole,
)
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, RevocationReason
from jpki.municipalities import load_registry, load_seed
from jpki.registry.residents import EventKind, ResidentEvent
from jpki.revocation.crls import ARL, DELTA, FULL, parse_file_name
from jpki.serials import serial_hex
from jpki.store.tables import crl_shards, municipalities
from tests.conftest import FixedClock

pytestmark = pytest.mark.hsm

NATIONAL = Principal(actor="console:boss", kind=PrincipalKind.OPERATOR)
KIYOSE_CLERK = Principal(actor="console:kiyose", kind=PrincipalKind.OPERATOR,
                         scopes=frozenset({"municipality:132217"}))
STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)
REVOKE = authorize(NATIONAL, Operation.CERTIFICATE_REVOKE)
READ = authorize(NATIONAL, Operation.MUNICIPALITY_READ)
ADD = authorize(NATIONAL, Operation.MUNICIPALITY_ADD)
RENAME = authorize(NATIONAL, Operation.MUNICIPALITY_RENAME)
MERGE = authorize(NATIONAL, Operation.MUNICIPALITY_MERGE)

KIYOSE, HIGASHIMURAYAMA = "132217", "132136"
# 東京都 has no municipality with code 13999; 139998 carries its right check digit.
NEW_CODE = "139998"


def sign_certificate(services: Services, resident: str, key: bytes) -> x509.Certificate:
    (issued,) = services.issuance.issue(ISSUE, resident, [KeyRequest(CertKind.CARD_SIGN, key)])
    return x509.load_der_x509_certificate(issued.der)


def revoke(services: Services, cert: x509.Certificate, reason: RevocationReason) -> None:
    services.revocation.revoke(REVOKE, serial_hex(cert.serial_number), reason)


def distribution_point(cert: x509.Certificate) -> list[x509.GeneralName]:
    (point,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return list(point.full_name or [])


def city(cert: x509.Certificate) -> str:
    return str(distribution_point(cert)[0].value.get_attributes_for_oid(  # type: ignore[union-attr]
        x509.NameOID.COMMON_NAME)[0].value)


def crl_of(services: Services, shard: str) -> x509.CertificateRevocationList:
    scope = services.crls.scope(CaKind.SIGN, 1, shard)
    publication = services.crls.publish(scope, FULL)
    return x509.load_der_x509_crl((services.crls.directory / publication.path).read_bytes())


def idp(crl: x509.CertificateRevocationList) -> list[x509.GeneralName]:
    value = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    return list(value.full_name or [])


def audit(services: Services, prefix: str) -> list[tuple[str, str, dict[str, object]]]:
    with services.uow() as uow:
        return [(r.action, r.subject, json.loads(r.payload)) for r in uow.audit.iterate()
                if r.action.startswith(prefix)]


# --- add -----------------------------------------------------------------------------------


def test_add_registers_a_municipality_whose_residents_get_its_own_shard(
        services: Services, new_resident: Callable[..., str], subject_keys: list[bytes]) -> None:
    view = services.municipalities.add(ADD, NEW_CODE, "新清瀬市", name_kana="しんきよせし")
    assert view.municipality.name_romaji == "Shinkiyose-shi"  # the documented kana rule
    assert view.municipality.shard == NEW_CODE
    resident = new_resident(municipality=NEW_CODE)
    cert = sign_certificate(services, resident, subject_keys[0])
    assert city(cert) == "Shinkiyose-shi CRLDP"
    assert distribution_point(cert)[1].value.endswith(f"/crl/sign/g01/{NEW_CODE}.crl")
    assert idp(crl_of(services, NEW_CODE)) == distribution_point(cert)
    assert audit(services, "municipality.added") == [
        ("municipality.added", NEW_CODE,
         {"name_ja": "新清瀬市", "name_romaji": "Shinkiyose-shi", "shard": NEW_CODE})]


@pytest.mark.parametrize(("code", "rule"), [("139997", "check_digit"), ("13999", "length"),
                                             ("489996", "prefecture"), ("13999a", "digits")])
def test_add_refuses_a_code_without_its_check_digit_and_changes_nothing(
        services: Services, code: str, rule: str) -> None:
    with pytest.raises(InvalidMunicipalityCode) as info:
        services.municipalities.add(ADD, code, "新清瀬市", name_romaji="Shinkiyose-shi")
    assert info.value.context["rule"] == rule
    assert len(services.municipalities.list(READ)) == 71


def test_add_refuses_an_existing_code_a_taken_name_and_bad_names(services: Services) -> None:
    with pytest.raises(MunicipalityExists):
        services.municipalities.add(ADD, KIYOSE, "清瀬市", name_romaji="Kiyose-shi")
    # Another municipality's distribution-point name: its CRL would answer for ours.
    with pytest.raises(CrlNameTaken) as taken:
        services.municipalities.add(ADD, NEW_CODE, "新清瀬市", name_romaji="Kiyose-shi")
    assert taken.value.context == {"field": "name_romaji", "municipality": KIYOSE}
    with pytest.raises(InvalidInput) as bad:
        services.municipalities.add(ADD, NEW_CODE, "Kiyose", name_romaji="Shinkiyose-shi")
    assert bad.value.context["field"] == "name_ja"
    with pytest.raises(InvalidInput) as missing:
        services.municipalities.add(ADD, NEW_CODE, "新清瀬市")
    assert missing.value.context["field"] == "name_romaji"
    with pytest.raises(InvalidMunicipalityCode):
        services.municipalities.add(ADD, NEW_CODE, "新清瀬市", name_romaji="Shin\nkiyose")
    assert len(services.municipalities.list(READ)) == 71
    assert audit(services, "municipality.") == []


def test_only_national_operators_change_the_registry() -> None:
    for operation in (Operation.MUNICIPALITY_ADD, Operation.MUNICIPALITY_RENAME,
                      Operation.MUNICIPALITY_MERGE):
        with pytest.raises(MissingScope):
            authorize(KIYOSE_CLERK, operation)
        for kind in (PrincipalKind.STATION, PrincipalKind.CALL_CENTRE,
                     PrincipalKind.RELYING_PARTY, PrincipalKind.SYSTEM_JOB):
            with pytest.raises(WrongRole):
                authorize(Principal(actor="x", kind=kind), operation)
    authorize(KIYOSE_CLERK, Operation.MUNICIPALITY_READ)  # the list is no one's data


# --- rename ----------------------------------------------------------------------------------


def test_a_new_romaji_opens_a_shard_and_certificates_issued_keep_theirs(
        services: Services, new_resident: Callable[..., str], subject_keys: list[bytes]) -> None:
    before = sign_certificate(services, new_resident(), subject_keys[0])
    renamed = services.municipalities.rename(RENAME, KIYOSE, name_romaji="Kiyose-city")
    assert (renamed.previous_shard, renamed.shard) == (KIYOSE, f"{KIYOSE}-2")
    after = sign_certificate(services, new_resident(name="山田 次郎"), subject_keys[1])
    assert city(before) == "Kiyose-shi CRLDP" and city(after) == "Kiyose-city CRLDP"
    assert distribution_point(after)[1].value.endswith(f"/crl/sign/g01/{KIYOSE}-2.crl")
    # The subject's locality follows the name too (reference §1.2).
    assert after.subject.get_attributes_for_oid(x509.NameOID.LOCALITY_NAME)[1].value == \
        "Kiyose-city"
    # Each shard's CRL names exactly what its certificates name (RFC 5280 §6.3.3 (b)(2)).
    assert idp(crl_of(services, KIYOSE)) == distribution_point(before)
    assert idp(crl_of(services, f"{KIYOSE}-2")) == distribution_point(after)
    # The closed shard is still published: a certificate issued under it has not expired.
    live = {s.name for s in services.crls.scopes() if s.generation.ca is CaKind.SIGN}
    assert {KIYOSE, f"{KIYOSE}-2"} <= live
    view = services.municipalities.get(READ, KIYOSE)
    assert [(s.name, s.city_romaji, s.closed_at is not None) for s in view.shards] == [
        (KIYOSE, "Kiyose-shi", True), (f"{KIYOSE}-2", "Kiyose-city", False)]


def test_a_revocation_lands_in_the_shard_the_certificate_names(
        services: Services, new_resident: Callable[..., str], subject_keys: list[bytes],
        clock: FixedClock) -> None:
    before = sign_certificate(services, new_resident(), subject_keys[0])
    services.municipalities.rename(RENAME, KIYOSE, name_romaji="Kiyose-city")
    revoke(services, before, RevocationReason.KEY_COMPROMISE)
    clock.advance(seconds=5)
    old = crl_of(services, KIYOSE)
    new = crl_of(services, f"{KIYOSE}-2")
    assert old.get_revoked_certificate_by_serial_number(before.serial_number) is not None
    assert new.get_revoked_certificate_by_serial_number(before.serial_number) is None


def test_renaming_only_the_japanese_name_keeps_the_shard_and_renaming_back_reopens_it(
        services: Services) -> None:
    same = services.municipalities.rename(RENAME, KIYOSE, name_ja="きよせ市",
                                          name_kana="きよせし")
    assert same.shard == KIYOSE and same.view.municipality.name_ja == "きよせ市"
    services.municipalities.rename(RENAME, KIYOSE, name_romaji="Kiyose-city")
    back = services.municipalities.rename(RENAME, KIYOSE, name_romaji="Kiyose-shi")
    assert (back.previous_shard, back.shard) == (f"{KIYOSE}-2", KIYOSE)
    view = services.municipalities.get(READ, KIYOSE)
    assert [(s.name, s.closed_at is None) for s in view.shards] == [
        (KIYOSE, True), (f"{KIYOSE}-2", False)]
    with pytest.raises(InvalidInput) as unchanged:
        services.municipalities.rename(RENAME, KIYOSE, name_romaji="Kiyose-shi")
    assert unchanged.value.context["rule"] == "unchanged"
    with pytest.raises(CrlNameTaken):
        services.municipalities.rename(RENAME, KIYOSE, name_romaji="Higashimurayama-shi")
    with pytest.raises(MunicipalityNotFound):
        services.municipalities.rename(RENAME, NEW_CODE, name_romaji="X-shi")
    assert [a[2]["shard"] for a in audit(services, "municipality.renamed")] == [
        KIYOSE, f"{KIYOSE}-2", KIYOSE]


# --- merge -----------------------------------------------------------------------------------


def test_a_merger_moves_residents_and_keeps_the_old_shard_while_it_has_valid_certificates(
        services: Services, new_resident: Callable[..., str], subject_keys: list[bytes],
        clock: FixedClock) -> None:
    resident = new_resident()
    before = sign_certificate(services, resident, subject_keys[0])
    merged = services.municipalities.merge(MERGE, KIYOSE, into=HIGASHIMURAYAMA)
    assert merged.residents_moved == 1 and merged.closed_shard == KIYOSE
    assert merged.merged.municipality.merged_into == HIGASHIMURAYAMA
    assert not merged.merged.municipality.active and merged.into.residents == 1
    with services.uow() as uow:
        moved = uow.residents.get(resident)
        assert moved is not None and moved.municipality_code == HIGASHIMURAYAMA
    # New issuance for the moved resident is under the municipality they now belong to.
    revoke(services, before, RevocationReason.SUPERSEDED)
    after = sign_certificate(services, resident, subject_keys[1])
    assert city(after) == "Higashimurayama-shi CRLDP"
    assert idp(crl_of(services, KIYOSE)) == distribution_point(before)
    # Merged: nobody is registered there any more, nor merged again.
    with pytest.raises(MunicipalityMerged):
        new_resident(municipality=KIYOSE)
    with pytest.raises(MunicipalityMerged):
        services.municipalities.merge(MERGE, KIYOSE, into="131016")
    with pytest.raises(MunicipalityMerged):
        services.municipalities.rename(RENAME, KIYOSE, name_romaji="Kiyose-city")
    assert audit(services, "municipality.merged") == [
        ("municipality.merged", KIYOSE,
         {"into": HIGASHIMURAYAMA, "residents_moved": 1, "closed_shard": KIYOSE})]
    # The closed shard is published until its last certificate is past notAfter + grace.
    def live() -> set[str]:
        return {s.name for s in services.crls.scopes() if s.generation.ca is CaKind.SIGN}
    assert KIYOSE in live()
    clock.set(before.not_valid_after_utc + services.recipe.crl.expired_grace
              - timedelta(seconds=1))
    assert KIYOSE in live()
    clock.set(before.not_valid_after_utc + services.recipe.crl.expired_grace
              + timedelta(days=1))
    # An open shard stays live; the closed one has nothing left to answer for.
    assert KIYOSE not in live() and HIGASHIMURAYAMA in live()


def test_nobody_moves_into_a_merged_municipality(
        services: Services, new_resident: Callable[..., str]) -> None:
    resident = new_resident(municipality=HIGASHIMURAYAMA)
    services.municipalities.merge(MERGE, KIYOSE, into=HIGASHIMURAYAMA)
    event = ResidentEvent(kind=EventKind.ADDRESS, address="東京都清瀬市中里二丁目",
                          municipality_code=KIYOSE)
    with pytest.raises(MunicipalityMerged) as refused:
        services.residents.record_event(authorize(NATIONAL, Operation.RESIDENT_EVENT), resident,
                                        event)
    assert refused.value.context == {"code": KIYOSE, "merged_into": HIGASHIMURAYAMA}
    with services.uow() as uow:
        moved = uow.residents.get(resident)
        assert moved is not None and moved.municipality_code == HIGASHIMURAYAMA


def test_merge_refuses_itself_and_unknown_codes(services: Services) -> None:
    with pytest.raises(InvalidInput):
        services.municipalities.merge(MERGE, KIYOSE, into=KIYOSE)
    with pytest.raises(MunicipalityNotFound):
        services.municipalities.merge(MERGE, KIYOSE, into=NEW_CODE)
    assert all(v.municipality.active for v in services.municipalities.list(READ))


# --- every municipality present --------------------------------------------------------------


def test_the_ceremony_registers_japancodes_list_and_leaves_existing_rows_as_they_were(
        services: Services, operator: Principal) -> None:
    def rows() -> dict[str, tuple[object, ...]]:
        with services.uow.engine.connect() as conn:
            m = municipalities.c
            return {r[0]: tuple(r) for r in conn.execute(
                select(m.code, m.name_ja, m.name_romaji, m.shard))}

    def shards() -> dict[str, tuple[object, ...]]:
        with services.uow.engine.connect() as conn:
            return {r[0]: tuple(r) for r in conn.execute(select(crl_shards))}

    seeded, seeded_shards = rows(), shards()
    assert len(seeded) == 71
    services.cas.ceremony(authorize(operator, Operation.CA_CEREMONY))
    after = rows()
    assert len(after) == 1916 == len(load_registry())
    assert {code: after[code] for code in seeded} == seeded  # byte for byte
    assert {code: shards()[code] for code in seeded_shards} == seeded_shards
    views = {v.municipality.code: v.municipality for v in services.municipalities.list(READ)}
    assert views["011011"].name_ja == "札幌市中央区"
    assert views["011011"].name_romaji == "Sapporo-shi Chuo-ku"
    assert views[KIYOSE].name_kana == "きよせし"  # an empty reading filled, nothing else
    assert views[KIYOSE] == next(m for m in load_seed() if m.code == KIYOSE)


def test_with_every_municipality_only_needed_crls_are_published(
        services: Services, operator: Principal, new_resident: Callable[..., str],
        subject_keys: list[bytes]) -> None:
    services.cas.ceremony(authorize(operator, Operation.CA_CEREMONY))
    # Nothing issued: only the two ARLs need a CRL, not 2 × 1,916 empty ones.
    assert sorted((s.generation.ca.value, s.name) for s, _ in services.crls.due()) == [
        ("auth", ARL), ("sign", ARL)]
    sign_certificate(services, new_resident(municipality="011011"), subject_keys[0])
    due = sorted((s.generation.ca.value, s.name, k) for s, k in services.crls.due())
    assert due == [("auth", ARL, FULL), ("sign", "011011", FULL), ("sign", ARL, FULL)]
    services.crls.publish_many([s for s, _ in services.crls.due()], kinds=(FULL,))
    # Then the shard's first delta (an ARL has none), then nothing until an interval passes.
    assert [(s.name, k) for s, k in services.crls.due()] == [("011011", DELTA)]
    services.crls.publish_many([s for s, _ in services.crls.due()], kinds=(DELTA,))
    assert services.crls.due() == []


@pytest.mark.parametrize(("name", "parsed"), [
    ("132217.crl", ("132217", FULL)), ("132217-delta.crl", ("132217", DELTA)),
    ("132217-2.crl", ("132217-2", FULL)), ("132217-12-delta.crl", ("132217-12", DELTA)),
    ("arl.crl", (ARL, FULL)),
])
def test_crl_file_names_of_renamed_shards(name: str, parsed: tuple[str, str]) -> None:
    assert parse_file_name(name) == parsed


@pytest.mark.parametrize("name", ["132217-0.crl", "132217-1000.crl", "132217\n.crl",
                                  "１３２２１７.crl", "132217-2-delta-delta.crl", "arl-delta.crl",
                                  "13221.crl"])
def test_other_file_names_are_no_crl(name: str) -> None:
    with pytest.raises(NotFound):
        parse_file_name(name)
