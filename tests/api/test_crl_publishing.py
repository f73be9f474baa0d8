"""`jpki crl publish`'s lean wiring (api.crl_publishing) publishes what the full composition
publishes: the same CRL, but for its number, from the same store, keys and settings."""

from __future__ import annotations

import pytest
from cryptography import x509

from api.crl_publishing import build_crl_publishing
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, RevocationReason
from jpki.revocation.crls import DELTA, FULL

pytestmark = pytest.mark.hsm

ISSUE = authorize(Principal.local_operator("test-station"), Operation.CERTIFICATE_ISSUE)
REVOKE = authorize(Principal(actor="client:test-operator", kind=PrincipalKind.OPERATOR),
                   Operation.CERTIFICATE_REVOKE)
SHARD = "132217"


def without_number(
        crl: x509.CertificateRevocationList) -> list[x509.Extension[x509.ExtensionType]]:
    return [e for e in crl.extensions if not isinstance(e.value, x509.CRLNumber)]


def test_the_lean_wiring_publishes_what_build_services_publishes(
        services, new_resident, subject_keys, keystore, clock) -> None:
    rid = new_resident()
    issued = services.issuance.issue(ISSUE, rid, [
        KeyRequest(CertKind.CARD_AUTH, subject_keys[0]),
        KeyRequest(CertKind.CARD_SIGN, subject_keys[1])])
    for cert in issued:
        services.revocation.revoke(REVOKE, cert.serial, RevocationReason.KEY_COMPROMISE)
    clock.advance(seconds=5)

    lean = build_crl_publishing(services.settings, clock=clock, keys=keystore)
    try:
        assert lean.crls.directory == services.crls.directory
        assert [s.name for s in lean.crls.scopes([SHARD, "arl"])] == [
            s.name for s in services.crls.scopes([SHARD, "arl"])]
        for kind in (FULL, DELTA):
            scope = services.crls.scope(CaKind.SIGN, 1, SHARD)
            by_full = services.crls.publish(scope, kind)
            by_lean = lean.crls.publish(lean.crls.scope(CaKind.SIGN, 1, SHARD), kind)
            assert by_lean.number == by_full.number + 1  # one sequence, one store
            full_crl, lean_crl = (
                x509.load_der_x509_crl((services.crls.directory / p.path).read_bytes())
                for p in (by_full, by_lean))
            assert lean_crl.issuer == full_crl.issuer
            assert lean_crl.last_update_utc == full_crl.last_update_utc
            assert lean_crl.next_update_utc == full_crl.next_update_utc
            assert without_number(lean_crl) == without_number(full_crl)
            assert [e.serial_number for e in lean_crl] == [e.serial_number for e in full_crl]
            if kind == FULL:  # the signing certificate revoked above (the delta's base has it)
                sign = next(c for c in issued if c.kind == CertKind.CARD_SIGN)
                assert [format(e.serial_number, "x") for e in lean_crl] == [sign.serial]
            with services.uow() as uow:
                ca = x509.load_der_x509_certificate(uow.cas.current(CaKind.SIGN).certificate_der)
            assert lean_crl.is_signature_valid(ca.public_key())
    finally:
        lean.engine.dispose()
        lean.read_engine.dispose()  # the key store is the session's: not closed here
