"""Relying-party services below HTTP: the status lookup gives OCSP's truth in every state a
certificate can be in, admission refuses in its documented order, and the token buckets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import MissingScope, WrongRole
from jpki.lifecycle.revocation import apply_revocation, release_hold
from jpki.model import CaKind, CertKind, CertStatus, ClientStatus, RevocationReason
from jpki.rate_limits import RateLimited, TokenBuckets
from jpki.registry.cards import CardEvent
from jpki.relying_parties.service import (
    PurposeUndeclared,
    RelyingPartyNotRegistered,
    RelyingPartySuspended,
)
from jpki.relying_parties.status_lookup import BatchTooLarge
from tests.holder_kit import CA_OPERATOR, new_holder

pytestmark = pytest.mark.hsm

CALLCENTRE = Principal(actor="client:test-callcentre", kind=PrincipalKind.CALL_CENTRE)
HOLD = authorize(CALLCENTRE, Operation.MOBILE_HOLD)


@pytest.fixture(scope="module")
def key_pool() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(65537, 2048) for _ in range(16)]


def rp_context(services, scopes=("status",), purposes=("test",),
               operation=Operation.RP_STATUS):
    new = services.relying_parties.register(
        authorize(CA_OPERATOR, Operation.RP_REGISTER), name="Status RP",
        kind="platform_operator", purposes=list(purposes), scopes=list(scopes))
    principal = services.clients.authenticate(new.client_id, new.client_secret)
    return services.relying_parties.admit(principal, operation), new


def ocsp_answer(services, serial: str, ca: CaKind):
    with services.uow() as uow:
        issuer = x509.load_der_x509_certificate(uow.cas.current(ca).certificate_der)
    name_hash = hashes.Hash(hashes.SHA1())
    name_hash.update(issuer.subject.public_bytes())
    key_hash = hashes.Hash(hashes.SHA1())
    spki = issuer.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    key_hash.update(_subject_public_key_bits(spki))
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash.finalize(), key_hash.finalize(), int(serial, 16), hashes.SHA1()).build()
    services.ocsp.refresh()
    return ocsp.load_der_ocsp_response(services.ocsp.respond(
        request.public_bytes(Encoding.DER)).der)


def _subject_public_key_bits(spki: bytes) -> bytes:
    from asn1crypto import keys

    return bytes(keys.PublicKeyInfo.load(spki)["public_key"].contents[1:])


def test_the_status_lookup_gives_ocsps_answer_in_every_state(services, key_pool) -> None:
    pool = list(key_pool)
    now = services.clock.now()
    good, revoked, lost, mobile, scheduled, odd = (new_holder(services, pool)
                                                   for _ in range(6))
    services.revocation.revoke(
        authorize(Principal(actor="client:op", kind=PrincipalKind.OPERATOR),
                  Operation.CERTIFICATE_REVOKE),
        revoked.serial(), RevocationReason.KEY_COMPROMISE)
    services.cards.record_event(
        authorize(Principal(actor="client:op", kind=PrincipalKind.OPERATOR), Operation.CARD_EVENT),
        lost.certs[CertKind.CARD_SIGN].card_number, CardEvent.LOST)
    mobile.enrol_phone()
    services.mobile.hold(HOLD, mobile.resident_id)
    with services.uow() as uow:
        released = uow.certificates.get_by_serial(mobile.mobile_serials[CertKind.MOBILE_AUTH])
        release_hold(released, now)
        later = uow.certificates.get_by_serial(scheduled.serial())
        apply_revocation(later, RevocationReason.CESSATION_OF_OPERATION,
                         now + timedelta(days=1), now)
        abandoned = uow.certificates.get_by_serial(odd.serial())
        # As IssuanceService.abandon_stale leaves one: abandoned, revoked (unspecified).
        apply_revocation(abandoned, RevocationReason.UNSPECIFIED, now, now)
        abandoned.status = CertStatus.ABANDONED
        pending = uow.certificates.get_by_serial(odd.serial(CertKind.CARD_AUTH))
        pending.status = CertStatus.PENDING
        uow.commit()
    services.clock.advance(seconds=30)
    cases = {
        good.serial(): ("good", None), good.serial(CertKind.CARD_AUTH): ("good", None),
        revoked.serial(): ("revoked", "keyCompromise"),
        lost.serial(): ("revoked", "certificateHold"),
        mobile.mobile_serials[CertKind.MOBILE_SIGN]: ("revoked", "certificateHold"),
        mobile.mobile_serials[CertKind.MOBILE_AUTH]: ("good", None),  # hold released
        scheduled.serial(): ("good", None),  # revoked tomorrow
        odd.serial(): ("revoked", "unspecified"),  # abandoned intent
        odd.serial(CertKind.CARD_AUTH): ("good", None),  # an intent still being signed
        "7fffffffffffffff0003": ("unknown", None),
    }
    ctx, _ = rp_context(services)
    answer = services.status_lookup.lookup(ctx, "test", list(cases))
    for result in answer.results:
        assert (result.status, result.reason) == cases[result.serial], result
        ca = CaKind.SIGN if result.usage in ("sign", None) else CaKind.AUTH
        single = ocsp_answer(services, result.serial, ca)
        expected = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                    "unknown": ocsp.OCSPCertStatus.UNKNOWN}[result.status]
        assert single.certificate_status is expected, result
        if result.status == "revoked":
            assert single.revocation_time_utc == result.revoked_at
            reason = single.revocation_reason
            assert (reason.name if reason else "unspecified") == \
                {"keyCompromise": "key_compromise", "certificateHold": "certificate_hold",
                 "unspecified": "unspecified"}[result.reason or ""]
    forms = {r.serial: (r.form, r.usage) for r in answer.results}
    assert forms[mobile.mobile_serials[CertKind.MOBILE_SIGN]] == ("mobile", "sign")
    assert forms[good.serial(CertKind.CARD_AUTH)] == ("card", "auth")

    # Past its notAfter, an unrevoked certificate is still "good" (as OCSP says) and expired.
    services.clock.set(good.certs[CertKind.CARD_SIGN].not_after + timedelta(seconds=1))
    (late,) = services.status_lookup.lookup(ctx, "test", [good.serial()]).results
    assert (late.status, late.expired) == ("good", True)


def test_admission_refuses_in_order(services) -> None:
    ctx, new = rp_context(services, scopes=("status",))
    principal = ctx.principal
    with pytest.raises(WrongRole):
        services.relying_parties.admit(Principal(actor="client:x", kind=PrincipalKind.STATION),
                                       Operation.RP_STATUS)
    with pytest.raises(RelyingPartyNotRegistered):
        services.relying_parties.admit(
            Principal(actor="client:x", kind=PrincipalKind.RELYING_PARTY), Operation.RP_STATUS)
    with pytest.raises(MissingScope):
        services.relying_parties.admit(principal, Operation.RP_BASIC4)
    with pytest.raises(PurposeUndeclared):
        ctx.require_purpose("marketing")
    with pytest.raises(BatchTooLarge):
        services.status_lookup.lookup(ctx, "test", ["1"] * 1001)
    services.relying_parties.set_status(
        authorize(CA_OPERATOR, Operation.RP_SET_STATUS), new.relying_party.id,
        ClientStatus.SUSPENDED)
    # The principal was authenticated before the suspension: admission re-reads the party.
    with pytest.raises(RelyingPartySuspended):
        services.relying_parties.admit(principal, Operation.RP_STATUS)
    services.relying_parties.set_status(
        authorize(CA_OPERATOR, Operation.RP_SET_STATUS), new.relying_party.id, ClientStatus.ACTIVE)
    services.relying_parties.buckets = TokenBuckets(services.limits, "rp", 1, 1,
                                                    clock=lambda: 0.0)
    services.relying_parties.admit(principal, Operation.RP_STATUS)
    with pytest.raises(RateLimited):
        services.relying_parties.admit(principal, Operation.RP_STATUS)


def test_a_standing_consent_answers_alike_blocking_or_not(services, key_pool) -> None:
    """LatestBasic4Service.provide (blocking: the CLI, tests) and provide_standing (the HTTP
    layer's event loop) read, decide and audit a standing consent alike, in every state of the
    holder's certificate line: current, revoked by a move, re-issued, and a phone's line that
    ended (followed to the card's)."""
    import threading

    from jpki.relying_parties.consents import ConsentService, ConsentWithdrawn
    from jpki.relying_parties.latest_basic4 import Basic4NotAvailable
    from tests.holder_kit import consent_statement, withdrawal_statement

    ctx, _ = rp_context(services, scopes=("basic4",), operation=Operation.RP_BASIC4)
    pool = list(key_pool)
    card = new_holder(services, pool)
    phone = new_holder(services, pool, name="佐藤 花子")
    phone.enrol_phone()
    now = services.clock.now()
    consents = {
        "card": services.latest_basic4.provide(
            ctx, "test", consent=card.sign(consent_statement(ctx.rp_id, now))).consent_id,
        "phone": services.latest_basic4.provide(
            ctx, "test", consent=phone.sign(consent_statement(ctx.rp_id, now),
                                            kind=CertKind.MOBILE_SIGN)).consent_id}

    def both(consent_id: str) -> tuple[object, object]:
        try:
            blocking: object = services.latest_basic4.provide(ctx, "test",
                                                              consent_id=consent_id)
        except Exception as exc:  # compared below
            blocking = type(exc)
        settled: list[object] = []
        finished = threading.Event()

        def done(answer, error) -> None:
            settled.append(type(error) if error is not None else answer)
            finished.set()

        services.latest_basic4.provide_standing(ctx, "test", consent_id, done)
        assert finished.wait(30)
        return blocking, settled[0]

    def serials(consent_id: str) -> tuple[object, ...]:
        """The current signing serial each way, or the refusal's type."""
        return tuple(getattr(a, "current_signing_serial", a) for a in both(consent_id))

    assert serials(consents["card"]) == (card.serial(), card.serial())
    assert serials(consents["phone"]) == (phone.mobile_serials[CertKind.MOBILE_SIGN],) * 2
    services.clock.advance(minutes=1)
    for holder in (card, phone):
        holder.move("東京都清瀬市梅園一丁目１番１号")  # the phone's line ends with the card's
    assert serials(consents["card"]) == (Basic4NotAvailable, Basic4NotAvailable)
    assert serials(consents["phone"]) == (Basic4NotAvailable, Basic4NotAvailable)
    for holder in (card, phone):
        holder.issue(CertKind.CARD_SIGN)
    assert serials(consents["card"]) == (card.serial(), card.serial())
    assert serials(consents["phone"]) == (phone.serial(), phone.serial())
    ConsentService(services.uow, services.clock, services.audit).withdraw(
        card.sign(withdrawal_statement(consents["card"])))
    assert serials(consents["card"]) == (ConsentWithdrawn, ConsentWithdrawn)
    with services.uow() as uow:
        assert services.audit.verify(uow).records > 0


def test_a_purpose_is_the_whole_text_with_no_trailing_line_feed() -> None:
    """A refused call's audit record keeps a purpose only when all of it is a purpose code:
    "$" alone would let a final line feed through into the record."""
    from jpki.relying_parties.service import valid_purpose

    assert valid_purpose("account_opening")
    assert not valid_purpose("account_opening\n")
    assert not valid_purpose("Account")
    assert not valid_purpose(7)
