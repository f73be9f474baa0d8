"""The key ceremony, CA generations and rollover, and the protection of CA keys in the HSM."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import text

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.authority.recipe import load_recipe
from jpki.errors import CaNotInitialised
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, RevocationReason
from tests.checkers import pkilint_certificate

pytestmark = pytest.mark.hsm

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)


def test_the_ceremony_is_idempotent(services, operator):
    # The test database holds the 71 of the hand-written seed: the first run registers the rest
    # of japancode's list (tests/jpki/registry/test_municipality_registry.py), the second nothing.
    services.cas.ceremony(authorize(operator, Operation.CA_CEREMONY))
    report = services.cas.ceremony(authorize(operator, Operation.CA_CEREMONY))
    assert report.created == [] and not report.changed
    assert any("sign CA generation 1" in line for line in report.unchanged)
    assert any("OCSP responder" in line for line in report.unchanged)


def test_ca_and_audit_keys_leave_the_token_only_wrapped_under_a_trusted_key(services):
    recipe = load_recipe()
    labels = [recipe.ca(ca).key_label(1) for ca in CaKind] + [
        recipe.audit_key_label, recipe.client_secret_key_label] + [
        recipe.responder.key_label(ca, 1) for ca in CaKind]
    for label in labels:
        protection = services.keys.key_protection(label)
        # Never readable; wrapped for another node's token only under a key the security
        # officer marked trusted (hsm.replication, the module docstring of jpki.authority.ca).
        assert protection["sensitive"] and protection["always_sensitive"], label
        assert protection["extractable"] and protection["wrap_with_trusted"], label
        assert protection["local"], label  # generated inside the token


def test_rollover_adds_a_generation_with_the_same_name(services, operator, new_resident,
                                                       subject_keys):
    rid = new_resident()
    (old,) = services.issuance.issue(ISSUE, rid, [KeyRequest(CertKind.CARD_SIGN,
                                                               subject_keys[0])])
    gen2 = services.cas.rollover(authorize(operator, Operation.CA_ROLLOVER), CaKind.SIGN)
    assert gen2.generation == 2
    with services.uow() as uow:
        gen1 = next(g for g in uow.cas.generations(CaKind.SIGN) if g.generation == 1)
        assert uow.cas.current(CaKind.SIGN).generation == 2
        assert uow.cas.current(CaKind.AUTH).generation == 1
        assert len(uow.cas.responders(gen2.id)) == 1
    root1 = x509.load_der_x509_certificate(gen1.certificate_der)
    root2 = x509.load_der_x509_certificate(gen2.certificate_der)
    assert root1.subject == root2.subject  # §1.1: every generation shares one DN
    assert root1.public_key() != root2.public_key()
    assert gen1.subject_key_id != gen2.subject_key_id
    assert pkilint_certificate(gen2.certificate_der) == []
    # New issuance uses generation 2; the old certificate still verifies under generation 1.
    services.revocation.revoke(
        authorize(Principal(actor="op", kind=PrincipalKind.OPERATOR),
                  Operation.CERTIFICATE_REVOKE),
        old.serial, RevocationReason.SUPERSEDED)
    (new,) = services.issuance.issue(ISSUE, rid, [KeyRequest(CertKind.CARD_SIGN,
                                                               subject_keys[1])])
    new_cert = x509.load_der_x509_certificate(new.der)
    old_cert = x509.load_der_x509_certificate(old.der)
    aki = new_cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == gen2.subject_key_id
    assert new_cert.issuer == old_cert.issuer
    root1.public_key().verify(old_cert.signature, old_cert.tbs_certificate_bytes,
                              padding.PKCS1v15(), hashes.SHA256())
    root2.public_key().verify(new_cert.signature, new_cert.tbs_certificate_bytes,
                              padding.PKCS1v15(), hashes.SHA256())
    assert "/g02/" in new_cert.extensions.get_extension_for_class(
        x509.CRLDistributionPoints).value[0].full_name[1].value
    # Nothing of the CAs is made again (the test database's municipalities are completed from
    # japancode's list on this first ceremony: tests/jpki/registry/test_municipality_registry.py).
    created = services.cas.ceremony(authorize(operator, Operation.CA_CEREMONY)).created
    assert [line for line in created if "municipalities" not in line] == []


def test_responder_certificates_are_renewed_before_they_expire(services, operator, clock):
    recipe = load_recipe()
    with services.uow() as uow:
        gen = uow.cas.current(CaKind.AUTH)
        (first,) = uow.cas.responders(gen.id)
    clock.set(first.not_after - timedelta(days=recipe.responder.renew_before_days - 1))
    report = services.cas.ceremony(authorize(operator, Operation.CA_CEREMONY))
    assert sum("OCSP responder" in line for line in report.created) == 2
    with services.uow() as uow:
        latest = uow.cas.responders(gen.id)[-1]
    assert latest.not_after > first.not_after
    assert latest.key_label == first.key_label  # same HSM key, new certificate


def test_rollover_needs_an_initialised_ca(services, operator):
    with services.uow.engine.begin() as conn:
        conn.execute(text("DELETE FROM ocsp_responders"))
        conn.execute(text("DELETE FROM ca_generations"))
    with pytest.raises(CaNotInitialised):
        services.cas.rollover(authorize(operator, Operation.CA_ROLLOVER), CaKind.AUTH)
