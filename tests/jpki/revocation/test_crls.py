"""Sharded full and delta CRLs and ARLs (RFC 5280 §5), checked by cryptography, pkilint and
`openssl verify -crl_check`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import text

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, RevocationReason
from jpki.registry.residents import EventKind, ResidentEvent
from jpki.revocation.crls import ARL, DELTA, FULL
from tests.checkers import crl_pem, openssl, pkilint_cli, write_pem

pytestmark = pytest.mark.hsm

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)
OPERATOR = Principal(actor="client:test-operator", kind=PrincipalKind.OPERATOR)
REVOKE = authorize(OPERATOR, Operation.CERTIFICATE_REVOKE)
SHARD = "132217"


@pytest.fixture
def people(services, new_resident, subject_keys):
    """Three residents of 清瀬市 with certificate pairs; returns {name: {kind: issued}}."""
    out = {}
    for i, name in enumerate(("a", "b", "c")):
        rid = new_resident(name=f"山田 {name}")
        out[name] = {c.kind: c for c in services.issuance.issue(ISSUE, rid, [
            KeyRequest(CertKind.CARD_AUTH, subject_keys[2 * i]),
            KeyRequest(CertKind.CARD_SIGN, subject_keys[2 * i + 1])])}
        out[name]["resident"] = rid
    return out


def load(services, publication) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl((services.crls.directory / publication.path).read_bytes())


def scope(services, ca=CaKind.SIGN, name=SHARD):
    return services.crls.scope(ca, 1, name)


def root(services, ca=CaKind.SIGN):
    with services.uow() as uow:
        gen = uow.cas.current(ca)
    return gen, x509.load_der_x509_certificate(gen.certificate_der)


def test_a_full_shard(services, people, clock):
    revoked = people["a"][CertKind.CARD_SIGN].serial
    services.revocation.revoke(REVOKE, revoked, RevocationReason.KEY_COMPROMISE)
    clock.advance(seconds=5)
    pub = services.crls.publish(scope(services), FULL)
    crl = load(services, pub)
    gen, ca = root(services)
    assert crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())
    assert [format(e.serial_number, "x") for e in crl] == [revoked]
    (entry,) = list(crl)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is \
        x509.ReasonFlags.key_compromise
    assert crl.last_update_utc == clock.now()
    assert crl.next_update_utc == clock.now() + timedelta(hours=25)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == pub.number
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == gen.subject_key_id
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.only_contains_user_certs
    # The IDP names exactly the certificates' distribution point.
    cert = x509.load_der_x509_certificate(people["b"][CertKind.CARD_SIGN].der)
    (dp,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert idp.value.full_name == dp.full_name
    freshest = crl.extensions.get_extension_for_class(x509.FreshestCRL).value
    assert freshest[0].full_name[0].value.endswith(f"/crl/sign/g01/{SHARD}-delta.crl")
    assert pub.entries == 1 and pub.size == len(crl.public_bytes(Encoding.DER))


def test_certificates_of_other_shards_and_cas_stay_out(services, people, operator):
    services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), people["a"]["resident"], ResidentEvent(
        EventKind.ADDRESS, address="東京都千代田区", municipality_code="131016"))
    services.revocation.revoke(REVOKE, people["b"][CertKind.CARD_AUTH].serial,
                               RevocationReason.CESSATION_OF_OPERATION)
    sign = load(services, services.crls.publish(scope(services), FULL))
    auth = load(services, services.crls.publish(scope(services, CaKind.AUTH), FULL))
    chiyoda = load(services, services.crls.publish(scope(services, name="131016"), FULL))
    assert [format(e.serial_number, "x") for e in sign] == [people["a"][CertKind.CARD_SIGN].serial]
    assert [format(e.serial_number, "x") for e in auth] == [people["b"][CertKind.CARD_AUTH].serial]
    assert len(chiyoda) == 0  # the shard is the one written into the certificate at issuance


def test_an_empty_crl_has_no_entry_list(services, people):
    pub = services.crls.publish(scope(services), FULL)
    crl = load(services, pub)
    assert len(crl) == 0
    assert crl.is_signature_valid(root(services)[1].public_key())


def test_delta_lists_changes_since_its_base(services, people, clock):
    a, b, c = (people[n][CertKind.CARD_SIGN].serial for n in "abc")
    services.revocation.revoke(REVOKE, a, RevocationReason.KEY_COMPROMISE)
    services.revocation.revoke(REVOKE, b, RevocationReason.CERTIFICATE_HOLD)
    clock.advance(minutes=1)
    base = services.crls.publish(scope(services), FULL)
    clock.advance(minutes=10)
    services.revocation.revoke(REVOKE, c, RevocationReason.AFFILIATION_CHANGED)
    services.revocation.revoke(REVOKE, b, RevocationReason.KEY_COMPROMISE)  # hold → permanent
    clock.advance(minutes=5)
    delta_pub = services.crls.publish(scope(services), DELTA)
    delta = load(services, delta_pub)
    assert delta_pub.number > base.number and delta_pub.base_number == base.number
    indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert indicator.critical and indicator.value.crl_number == base.number
    reasons = {format(e.serial_number, "x"): e.extensions.get_extension_for_class(
        x509.CRLReason).value.reason for e in delta}
    assert reasons == {c: x509.ReasonFlags.affiliation_changed,
                       b: x509.ReasonFlags.key_compromise}
    assert delta.next_update_utc == clock.now() + timedelta(minutes=75)
    with pytest.raises(x509.ExtensionNotFound):
        delta.extensions.get_extension_for_class(x509.FreshestCRL)
    # The next full CRL continues the same number sequence and holds everything.
    clock.advance(minutes=1)
    full = services.crls.publish(scope(services), FULL)
    assert full.number > delta_pub.number and full.entries == 3


def test_released_hold_is_removed_in_the_next_delta(services, people, clock):
    """removeFromCRL (RFC 5280 §5.3.1). Card holds are never released; a mobile certificate's
    is, so a card certificate is turned into a mobile one for this test."""
    from jpki.lifecycle.revocation import release_hold

    serial = people["a"][CertKind.CARD_AUTH].serial
    with services.uow.engine.begin() as conn:
        conn.execute(text("UPDATE certificates SET kind = 'mobile_auth' WHERE serial = :s"),
                     {"s": serial})
    services.revocation.revoke(REVOKE, serial, RevocationReason.CERTIFICATE_HOLD)
    clock.advance(minutes=1)
    services.crls.publish(scope(services, CaKind.AUTH), FULL)
    clock.advance(minutes=3)
    with services.uow() as uow:
        cert = uow.certificates.get_by_serial(serial, for_update=True)
        release_hold(cert, clock.now())
        uow.commit()
    clock.advance(minutes=1)
    delta = load(services, services.crls.publish(scope(services, CaKind.AUTH), DELTA))
    (entry,) = list(delta)
    assert format(entry.serial_number, "x") == serial
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is \
        x509.ReasonFlags.remove_from_crl
    full = load(services, services.crls.publish(scope(services, CaKind.AUTH), FULL))
    assert len(full) == 0


def test_scheduled_and_expired_entries(services, people, operator, clock):
    a = people["a"][CertKind.CARD_SIGN]
    services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), people["a"]["resident"], ResidentEvent(
        EventKind.EMIGRATION, date=datetime(2026, 12, 20).date(), address="フランス共和国"))
    assert services.crls.publish(scope(services), FULL).entries == 0  # not yet effective
    clock.set(datetime(2026, 12, 19, 15, 0, tzinfo=UTC))
    assert services.crls.publish(scope(services), FULL).entries == 1
    # Expired certificates leave the CRL after the configured grace (30 days).
    clock.set(a.not_after + timedelta(days=29))
    assert services.crls.publish(scope(services), FULL).entries == 1
    clock.set(a.not_after + timedelta(days=31))
    assert services.crls.publish(scope(services), FULL).entries == 0


def test_many_entries_are_streamed(services, people, clock):
    """Five thousand revoked certificates in one shard, written through the streaming path."""
    template = people["a"][CertKind.CARD_SIGN].serial
    with services.uow() as uow:
        src = uow.certificates.get_by_serial(template)
    from jpki.lifecycle.crl_entries import crl_entry

    rows = []
    for i in range(5000):
        serial = format((1 << 100) + i, "x")
        rows.append({"serial": serial, "kind": "card_sign", "resident_id": src.resident_id,
                     "ca_generation_id": src.ca_generation_id, "status": "issued",
                     "not_before": src.not_before.replace(tzinfo=None),
                     "not_after": src.not_after.replace(tzinfo=None), "shard": SHARD,
                     "registry_source": "juminhyo", "public_key_sha256": f"{i:064x}",
                     "revoked_at": clock.now().replace(tzinfo=None), "revocation_reason": 1,
                     "revocation_recorded_at": clock.now().replace(tzinfo=None),
                     "crl_entry": crl_entry(serial, clock.now(),
                                            RevocationReason.KEY_COMPROMISE),
                     "created_at": clock.now().replace(tzinfo=None),
                     "updated_at": clock.now().replace(tzinfo=None)})
    cols = ", ".join(rows[0])
    with services.uow.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO certificates ({cols}) VALUES "  # noqa: S608
                          f"({', '.join(':' + c for c in rows[0])})"), rows)
    clock.advance(seconds=1)
    crl = load(services, services.crls.publish(scope(services), FULL))
    assert len(crl) == 5000
    assert crl.is_signature_valid(root(services)[1].public_key())
    assert crl.get_revoked_certificate_by_serial_number((1 << 100) + 4999) is not None


def test_arl(services):
    pub = services.crls.publish(services.crls.scope(CaKind.AUTH, 1, ARL), FULL)
    arl = load(services, pub)
    _, ca = root(services, CaKind.AUTH)
    idp = arl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.only_contains_ca_certs
    assert idp.value.full_name == [x509.DirectoryName(ca.subject)]  # the roots' own DP
    assert len(arl) == 0 and arl.is_signature_valid(ca.public_key())


def test_crl_numbers_increase_per_scope(services, people, clock):
    numbers = []
    for _ in range(3):
        clock.advance(seconds=1)
        numbers.append(services.crls.publish(scope(services), FULL).number)
    other = services.crls.publish(scope(services, CaKind.AUTH), FULL).number
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    assert other == 1  # every scope has its own sequence


def test_publish_many_in_parallel(services, people):
    scopes = services.crls.scopes([SHARD, "131016", ARL])
    pubs = services.crls.publish_many(scopes, workers=4)
    # two CAs × (2 shards × full+delta + ARL)
    assert len(pubs) == 2 * (2 * 2 + 1)
    for pub in pubs:
        assert (services.crls.directory / pub.path).is_file()


# --- independent checkers ---------------------------------------------------------------------


def test_pkilint_accepts_full_delta_and_arl(services, people, clock, tmp_path):
    services.revocation.revoke(REVOKE, people["a"][CertKind.CARD_SIGN].serial,
                               RevocationReason.KEY_COMPROMISE)
    clock.advance(minutes=1)
    full = services.crls.publish(scope(services), FULL)
    services.revocation.revoke(REVOKE, people["b"][CertKind.CARD_SIGN].serial,
                               RevocationReason.SUPERSEDED)
    clock.advance(minutes=1)
    delta = services.crls.publish(scope(services), DELTA)
    arl = services.crls.publish(services.crls.scope(CaKind.SIGN, 1, ARL), FULL)
    for pub, kind in ((full, "CRL"), (delta, "CRL"), (arl, "ARL")):
        data = (services.crls.directory / pub.path).read_bytes()
        result = pkilint_cli(tmp_path, "lint_crl", data, "-t", kind, "-p", "PKIX",
                             "-s", "WARNING")
        assert result.returncode == 0, (pub.kind, result.stdout, result.stderr)


def test_openssl_checks_certificates_against_the_shard(services, people, clock, tmp_path):
    revoked = people["a"][CertKind.CARD_SIGN]
    good = people["b"][CertKind.CARD_SIGN]
    services.revocation.revoke(REVOKE, revoked.serial, RevocationReason.KEY_COMPROMISE)
    clock.set(datetime.now(UTC).replace(microsecond=0))  # openssl checks times against now
    crl = services.crls.publish(scope(services), FULL)
    arl = services.crls.publish(services.crls.scope(CaKind.SIGN, 1, ARL), FULL)
    gen, _ = root(services)
    ca = write_pem(tmp_path / "ca.pem", gen.certificate_der)
    shard = crl_pem(tmp_path / "shard.pem", (services.crls.directory / crl.path).read_bytes())
    arl_pem = crl_pem(tmp_path / "arl.pem", (services.crls.directory / arl.path).read_bytes())
    ok = write_pem(tmp_path / "good.pem", good.der)
    bad = write_pem(tmp_path / "revoked.pem", revoked.der)
    result = openssl("verify", "-CAfile", str(ca), "-crl_check", "-CRLfile", str(shard), str(ok))
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result
    result = openssl("verify", "-CAfile", str(ca), "-crl_check", "-CRLfile", str(shard),
                     str(bad))
    assert result.returncode == 2 and "error 23" in result.stdout + result.stderr, result
    # -crl_check_all: the root is checked against the ARL too.
    both = tmp_path / "crls.pem"
    both.write_text(shard.read_text() + arl_pem.read_text())
    result = openssl("verify", "-CAfile", str(ca), "-crl_check_all", "-CRLfile", str(both),
                     str(ok))
    assert result.returncode == 0, result
    result = openssl("verify", "-CAfile", str(ca), "-crl_check_all", "-CRLfile", str(shard),
                     str(ok))
    assert result.returncode != 0  # without the ARL the root's status is unknown
