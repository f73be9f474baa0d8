"""A relying party's validator, pyhanko-certvalidator, checks card certificates with revocation
checking required, fetching from the CRL and OCSP URLs written into the certificates."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, RevocationReason

pytestmark = pytest.mark.hsm

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)
OPERATOR = Principal(actor="client:test-operator", kind=PrincipalKind.OPERATOR)
REVOKE = authorize(OPERATOR, Operation.CERTIFICATE_REVOKE)


def _validate(server, der: bytes, ca: CaKind, rule: RevocationCheckingRule) -> None:
    with server.services.uow() as uow:
        root = asn1_x509.Certificate.load(uow.cas.current(ca).certificate_der)
    policy = CertRevTrustPolicy(RevocationCheckingPolicy(
        ee_certificate_rule=rule, intermediate_ca_cert_rule=RevocationCheckingRule.NO_CHECK))
    context = ValidationContext(trust_roots=[root], allow_fetching=True,
                                revinfo_policy=policy,
                                fetcher_backend=RequestsFetcherBackend())
    validator = CertificateValidator(asn1_x509.Certificate.load(der),
                                     validation_context=context)
    usage = {"digital_signature", "non_repudiation"} if ca is CaKind.SIGN \
        else {"digital_signature"}
    asyncio.run(validator.async_validate_usage(usage))


@pytest.fixture
def pair(served, subject_keys):
    services = served.services
    rid = services.residents.register(
        authorize(Principal.local_operator("t"), Operation.RESIDENT_REGISTER), name="山田 太郎",
        birth_date=date(1990, 1, 2), sex=1,
        address="東京都清瀬市", municipality_code="132217").id
    return {c.kind: c for c in services.issuance.issue(ISSUE, rid, [
        KeyRequest(CertKind.CARD_AUTH, subject_keys[0]),
        KeyRequest(CertKind.CARD_SIGN, subject_keys[1])])}


@pytest.mark.parametrize("rule", [RevocationCheckingRule.CRL_REQUIRED,
                                  RevocationCheckingRule.OCSP_REQUIRED])
def test_a_good_certificate_validates_with_revocation_required(served, pair, rule):
    _validate(served, pair[CertKind.CARD_SIGN].der, CaKind.SIGN, rule)
    _validate(served, pair[CertKind.CARD_AUTH].der, CaKind.AUTH, rule)


@pytest.mark.parametrize("rule", [RevocationCheckingRule.CRL_REQUIRED,
                                  RevocationCheckingRule.OCSP_REQUIRED])
def test_a_revoked_certificate_is_refused(served, pair, rule):
    services = served.services
    serial = pair[CertKind.CARD_SIGN].serial
    services.revocation.revoke(REVOKE, serial, RevocationReason.KEY_COMPROMISE)
    services.ocsp.refresh()
    # The server's periodic publication would pick it up within the delta interval; publish
    # now so that the CRL check does not depend on timing.
    services.crls.publish(services.crls.scope(CaKind.SIGN, 1, "132217"))
    with pytest.raises(RevokedError):
        _validate(served, pair[CertKind.CARD_SIGN].der, CaKind.SIGN, rule)
