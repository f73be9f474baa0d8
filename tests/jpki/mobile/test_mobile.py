"""Smartphone certificates (移動端末設備用電子証明書): every rule of reference §2 and its
refusals."""

from __future__ import annotations

import base64
import threading
from datetime import date, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from sqlalchemy import text

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import (
    InvalidPublicKey,
    NotFound,
    WeakPublicKey,
    WrongRole,
)
from jpki.issuance.service import KeyRequest
from jpki.lifecycle.cards import CardSpec
from jpki.mobile.rules import (
    CardCertificateNotHoldable,
    ChallengeInvalid,
    EnrolmentInProgress,
    SignerRefused,
)
from jpki.mobile.service import MobileError, ProofOfPossessionInvalid
from jpki.model import CaKind, CertKind, RevocationReason
from jpki.registry.cards import CardEvent
from jpki.registry.residents import EventKind, ResidentEvent
from jpki.revocation.crls import DELTA, FULL
from jpki.serials import serial_hex
from tests.checkers import pkilint_certificate
from tests.phone_kit import Phone, signed, spki

pytestmark = pytest.mark.hsm

OPERATOR = Principal(actor="client:test-operator", kind=PrincipalKind.OPERATOR)
REVOKE = authorize(OPERATOR, Operation.CERTIFICATE_REVOKE)
CALLCENTRE = Principal(actor="client:test-callcentre", kind=PrincipalKind.CALL_CENTRE)
HOLD = authorize(CALLCENTRE, Operation.MOBILE_HOLD)
HOLD_CERTIFICATE = authorize(CALLCENTRE, Operation.MOBILE_HOLD_CERTIFICATE)
CA_OPERATOR = Principal.local_operator("test")
ISSUE = authorize(CA_OPERATOR, Operation.CERTIFICATE_ISSUE)
MOBILE_SWEEP = authorize(CA_OPERATOR, Operation.MOBILE_SWEEP)
READ_CERTIFICATE = authorize(CA_OPERATOR, Operation.CERTIFICATE_READ)
RENEW = authorize(CA_OPERATOR, Operation.CERTIFICATE_RENEW)


@pytest.fixture(scope="module")
def private_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(65537, 2048) for _ in range(24)]


@pytest.fixture
def keys(private_keys):
    return list(private_keys)  # a fresh pool per test; tests pop from it


class Holder:
    """A resident with a card (keys known to the test) and helpers to act as their phone."""

    def __init__(self, services, clock, resident_id, card_keys, certs) -> None:
        self.services, self.clock, self.id = services, clock, resident_id
        self.card_keys, self.certs = card_keys, certs

    @property
    def card_sign(self):
        return self.certs[CertKind.CARD_SIGN]

    def challenge(self, purpose="application") -> bytes:
        return self.services.mobile.new_challenge(purpose)[0]

    def sign_as_card(self, document: dict) -> bytes:
        return signed(document, self.card_sign.der, self.card_keys[CertKind.CARD_SIGN],
                      self.clock.now())

    def apply(self, phone: Phone, **overrides):
        doc = phone.application(self.challenge(), self.card_sign.serial, **overrides)
        result = self.services.mobile.apply(self.sign_as_card(doc))
        phone.device_id = result.device_id
        phone.certs = {c.kind: c.der for c in result.certificates}
        return result

    def sign_as_phone(self, phone: Phone, document: dict) -> bytes:
        return signed(document, phone.certs[CertKind.MOBILE_AUTH],
                      phone.keys[CertKind.MOBILE_AUTH], self.clock.now())

    def request(self, phone: Phone, kind: str, purpose: str, *, as_card: bool = False,
                **fields) -> bytes:
        doc = {"type": kind, "challenge": base64.b64encode(self.challenge(purpose)).decode(),
               "device": phone.device_id, **fields}
        return self.sign_as_card(doc) if as_card else self.sign_as_phone(phone, doc)


@pytest.fixture
def holder(services, new_resident, keys, clock):
    def make(name: str = "山田 太郎"):
        rid = new_resident(name=name)
        card_keys = {CertKind.CARD_AUTH: keys.pop(), CertKind.CARD_SIGN: keys.pop()}
        issued = services.issuance.issue(ISSUE, rid, [
            KeyRequest(k, spki(card_keys[k]).replace(b"", b"")) for k in card_keys])
        return Holder(services, clock, rid, card_keys, {c.kind: c for c in issued})

    return make


def state(services, serial):
    view = services.certificates.show(READ_CERTIFICATE, serial)
    return view.status, view.revocation_reason


def ocsp_status(services, der, ca=CaKind.SIGN):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding

    with services.uow() as uow:
        issuer = x509.load_der_x509_certificate(uow.cas.current(ca).certificate_der)
    req = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_der_x509_certificate(der), issuer, hashes.SHA1()).build()
    services.ocsp.refresh()
    return ocsp.load_der_ocsp_response(
        services.ocsp.respond(req.public_bytes(Encoding.DER)).der)


# --- application --------------------------------------------------------------------------


def test_an_application_signed_with_the_card_issues_both_linked_certificates(
        services, holder, keys):
    h = holder()
    phone = Phone("pixel-1")
    phone.new_keys(keys)
    result = h.apply(phone)
    certs = {c.kind: c for c in result.certificates}
    assert set(certs) == {CertKind.MOBILE_SIGN, CertKind.MOBILE_AUTH}
    card = h.certs
    # Exactly the notAfter of the card certificate of the same kind, and linked to it.
    assert certs[CertKind.MOBILE_SIGN].not_after == card[CertKind.CARD_SIGN].not_after
    assert certs[CertKind.MOBILE_AUTH].not_after == card[CertKind.CARD_AUTH].not_after
    assert result.linked == {certs[CertKind.MOBILE_SIGN].serial: card[CertKind.CARD_SIGN].serial,
                             certs[CertKind.MOBILE_AUTH].serial: card[CertKind.CARD_AUTH].serial}
    sign = x509.load_der_x509_certificate(certs[CertKind.MOBILE_SIGN].der)
    auth = x509.load_der_x509_certificate(certs[CertKind.MOBILE_AUTH].der)
    # Distinguishable from card certificates: their own policy OIDs (jpki/data/recipe.toml).
    assert [p.policy_identifier.dotted_string for p in sign.extensions.get_extension_for_class(
        x509.CertificatePolicies).value] == ["1.2.392.200149.8.5.1.1.40"]
    assert [p.policy_identifier.dotted_string for p in auth.extensions.get_extension_for_class(
        x509.CertificatePolicies).value] == ["1.2.392.200149.8.5.1.3.40"]
    assert sign.public_key() == phone.keys[CertKind.MOBILE_SIGN].public_key()
    # The signing one carries the basic 4 information like the card's.
    card_san = x509.load_der_x509_certificate(card[CertKind.CARD_SIGN].der).extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value
    assert sign.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == card_san
    for der in (certs[CertKind.MOBILE_SIGN].der, certs[CertKind.MOBILE_AUTH].der):
        assert pkilint_certificate(der) == []
    view = services.certificates.show(READ_CERTIFICATE, certs[CertKind.MOBILE_SIGN].serial)
    assert view.sibling == certs[CertKind.MOBILE_AUTH].serial
    assert ocsp_status(services, certs[CertKind.MOBILE_SIGN].der).certificate_status is \
        ocsp.OCSPCertStatus.GOOD


def test_a_new_device_supersedes_the_old_one_in_the_same_transaction(services, holder, keys):
    h = holder()
    first, second = Phone("old-phone"), Phone("new-phone", platform="JPKIAPIOSTOKEN")
    first.new_keys(keys)
    second.new_keys(keys)
    old = h.apply(first)
    h.apply(second)
    for cert in old.certificates:
        assert state(services, cert.serial) == ("revoked", "superseded")
    with services.uow() as uow:
        assert [d.device_ref for d in uow.mobile.active_devices(h.id)] == ["new-phone"]


# --- refusals --------------------------------------------------------------------------------


def _refused(services, h, document, error, *, signer=None):
    with services.uow() as uow:
        head = uow.audit.head()
    der = h.sign_as_card(document) if signer is None else signer(document)
    with pytest.raises(error):
        services.mobile.apply(der)
    with services.uow() as uow:
        assert uow.audit.head() == head
        assert uow.certificates.for_resident(h.id, [CertKind.MOBILE_SIGN,
                                                    CertKind.MOBILE_AUTH]) == []


def test_replayed_expired_and_misused_challenges(services, holder, keys, clock):
    h = holder()
    phone = Phone("p")
    phone.new_keys(keys)
    challenge = h.challenge()
    doc = phone.application(challenge, h.card_sign.serial)
    services.mobile.apply(h.sign_as_card(doc))
    other = holder("佐藤 花子")
    phone2 = Phone("p2")
    phone2.new_keys(keys)
    _refused(services, other, phone2.application(challenge, other.card_sign.serial),
             ChallengeInvalid)  # replayed
    stale = other.challenge()
    clock.advance(minutes=6)
    _refused(services, other, phone2.application(stale, other.card_sign.serial),
             ChallengeInvalid)  # expired
    _refused(services, other, phone2.application(other.challenge("revocation"),
                                                 other.card_sign.serial), ChallengeInvalid)
    _refused(services, other, phone2.application(b"\x00" * 32, other.card_sign.serial),
             ChallengeInvalid)  # never issued


def test_signed_by_another_persons_card(services, holder, keys):
    victim, other = holder(), holder("佐藤 花子")
    phone = Phone("p")
    phone.new_keys(keys)
    doc = phone.application(victim.challenge(), victim.card_sign.serial)
    _refused(services, victim, doc, SignerRefused, signer=other.sign_as_card)


@pytest.mark.parametrize("what", ["revoked", "expired", "superseded", "auth_key", "foreign"])
def test_refused_signers(services, holder, keys, clock, what):
    h = holder()
    phone = Phone("p")
    phone.new_keys(keys)
    signer = None
    if what == "revoked":
        services.revocation.revoke(REVOKE, h.card_sign.serial, RevocationReason.KEY_COMPROMISE)
    elif what == "expired":
        clock.set(h.card_sign.not_after + timedelta(seconds=1))
    elif what == "superseded":
        clock.set(h.card_sign.not_after - timedelta(days=30))
        new_key = keys.pop()
        services.issuance.renew(RENEW, h.id, [KeyRequest(
            CertKind.CARD_SIGN, spki(new_key))])
        old = h.card_sign
        # the old certificate is revoked as superseded: refused either way
        doc = phone.application(h.challenge(), old.serial)
        _refused(services, h, doc, SignerRefused)
        return
    elif what == "auth_key":
        auth = h.certs[CertKind.CARD_AUTH]

        def signer(document):
            return signed(document, auth.der, h.card_keys[CertKind.CARD_AUTH], clock.now())

        doc = phone.application(h.challenge(), auth.serial)
        _refused(services, h, doc, SignerRefused, signer=signer)
        return
    else:  # a certificate that merely looks like ours
        from datetime import UTC, datetime

        from cryptography.hazmat.primitives import hashes

        key = h.card_keys[CertKind.CARD_SIGN]
        real = x509.load_der_x509_certificate(h.card_sign.der)
        fake = (x509.CertificateBuilder().subject_name(real.subject).issuer_name(real.issuer)
                .public_key(key.public_key()).serial_number(real.serial_number)
                .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
                .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC)).sign(key, hashes.SHA256()))
        from cryptography.hazmat.primitives.serialization import Encoding

        def signer(document):
            return signed(document, fake.public_bytes(Encoding.DER), key, clock.now())

    doc = phone.application(h.challenge(), h.card_sign.serial)
    _refused(services, h, doc, SignerRefused, signer=signer)


def test_bad_keys_and_proofs(services, holder, keys):
    h = holder()
    phone = Phone("p")
    phone.new_keys(keys)
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the point of the test
    b64 = lambda k: base64.b64encode(spki(k)).decode()  # noqa: E731
    cases = [
        ({"sign_public_key": b64(weak)}, WeakPublicKey),
        ({"auth_public_key": base64.b64encode(b"\x30\x03\x02\x01\x01").decode()},
         InvalidPublicKey),
        ({"auth_public_key": b64(phone.keys[CertKind.MOBILE_SIGN])}, MobileError),
        ({"platform": "JPKIAPICCTOKEN2"}, MobileError),
        ({"device": ""}, MobileError),
    ]
    for overrides, error in cases:
        _refused(services, h, phone.application(h.challenge(), h.card_sign.serial, **overrides),
                 error)
    # A proof of possession made with another key, or for the other kind, or another device.
    challenge = h.challenge()
    for pop in (phone.pop(challenge, CertKind.MOBILE_SIGN, key=keys.pop()),
                phone.pop(challenge, CertKind.MOBILE_AUTH,
                          key=phone.keys[CertKind.MOBILE_SIGN]),
                phone.pop(challenge, CertKind.MOBILE_SIGN, device="another")):
        _refused(services, h, phone.application(challenge, h.card_sign.serial, sign_pop=pop),
                 ProofOfPossessionInvalid)


def test_a_third_device_racing_a_second_is_refused(services, holder, keys, monkeypatch):
    h = holder()
    second, third = Phone("second"), Phone("third")
    second.new_keys(keys)
    third.new_keys(keys)
    entered, release = threading.Event(), threading.Event()
    real_sign = services.issuance._sign_all

    def slow_sign(batch, **kwargs):
        entered.set()
        release.wait(10)
        return real_sign(batch, **kwargs)

    monkeypatch.setattr(services.issuance, "_sign_all", slow_sign)
    worker = threading.Thread(target=h.apply, args=(second,))
    worker.start()
    assert entered.wait(10)  # the second device's intent is recorded, its signing under way
    try:
        with pytest.raises(EnrolmentInProgress):
            h.apply(third)
    finally:
        release.set()
        worker.join(10)
    with services.uow() as uow:
        assert [d.device_ref for d in uow.mobile.active_devices(h.id)] == ["second"]


# --- cascade ----------------------------------------------------------------------------------


def test_card_revocation_cascades_to_the_linked_mobile_certificate(services, holder, keys,
                                                                   operator):
    h = holder()
    phone = Phone("p")
    phone.new_keys(keys)
    mobile = {c.kind: c for c in h.apply(phone).certificates}
    outcome = services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), h.id, ResidentEvent(
        EventKind.ADDRESS, address="東京都清瀬市元町"))
    revoked = {r.serial for r in outcome.revocations}
    # The signing ones (card and mobile) in the same transaction; the auth ones stay.
    assert revoked == {h.card_sign.serial, mobile[CertKind.MOBILE_SIGN].serial}
    assert state(services, mobile[CertKind.MOBILE_SIGN].serial) == ("revoked",
                                                                    "affiliationChanged")
    assert state(services, mobile[CertKind.MOBILE_AUTH].serial) == ("good", None)
    # A new card revokes the card's certificates, and with them the mobile auth one.
    services.cards.register(
        authorize(operator, Operation.CARD_REGISTER), h.id, CardSpec(number="NEWCARD00001"))
    assert state(services, mobile[CertKind.MOBILE_AUTH].serial) == ("revoked", "superseded")


def test_renewing_the_card_certificate_revokes_the_mobile_one(services, holder, keys, clock):
    h = holder()
    phone = Phone("p")
    phone.new_keys(keys)
    mobile = {c.kind: c for c in h.apply(phone).certificates}
    clock.set(h.certs[CertKind.CARD_AUTH].not_after - timedelta(days=30))
    services.issuance.renew(RENEW, h.id, [KeyRequest(CertKind.CARD_AUTH,
                                                            spki(keys.pop()))])
    assert state(services, mobile[CertKind.MOBILE_AUTH].serial) == ("revoked", "superseded")


# --- the holder, the call centre, the lost phone ----------------------------------------------


@pytest.mark.parametrize(("as_card", "reason", "expected"), [
    (False, "sale", "cessationOfOperation"), (True, "disposal", "cessationOfOperation"),
    (False, "device_change", "superseded")])
def test_the_holder_revokes_online(services, holder, keys, as_card, reason, expected):
    h = holder()
    phone = Phone("p")
    phone.new_keys(keys)
    mobile = h.apply(phone).certificates
    results = services.mobile.revoke(h.request(phone, "jpki-mobile-revocation/1", "revocation",
                                               as_card=as_card, reason=reason))
    assert {r.serial for r in results} == {c.serial for c in mobile}
    for cert in mobile:
        assert state(services, cert.serial) == ("revoked", expected)
    assert state(services, h.card_sign.serial) == ("good", None)


def test_lost_phone_hold_and_lift(services, holder, keys, clock):
    h = holder()
    phone = Phone("p")
    phone.new_keys(keys)
    mobile = {c.kind: c for c in h.apply(phone).certificates}
    clock.advance(minutes=1)
    services.crls.publish(services.crls.scope(CaKind.AUTH, 1, "132217"), FULL)
    with pytest.raises(WrongRole):  # an operator may not (the call centre's alone)
        authorize(OPERATOR, Operation.MOBILE_HOLD)
    held = services.mobile.hold(HOLD, h.id)
    assert {r.serial for r in held} == {c.serial for c in mobile.values()}
    for kind, cert in mobile.items():
        resp = ocsp_status(services, cert.der, CaKind.SIGN if kind.is_signing else CaKind.AUTH)
        assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert resp.revocation_reason is x509.ReasonFlags.certificate_hold
    # Found: the holder lifts the suspension from the phone (auth key still proves possession).
    clock.advance(minutes=10)
    new_sign = keys.pop()
    challenge = h.challenge("lift")
    doc = {"type": "jpki-mobile-lift/1", "challenge": base64.b64encode(challenge).decode(),
           "device": phone.device_id,
           "sign_public_key": base64.b64encode(spki(new_sign)).decode(),
           "sign_pop": phone.pop(challenge, CertKind.MOBILE_SIGN, key=new_sign)}
    services.ocsp.refresh()  # the server's poll, as it runs before the lift
    lifted = services.mobile.lift_suspension(h.sign_as_phone(phone, doc))
    assert state(services, mobile[CertKind.MOBILE_AUTH].serial) == ("good", None)
    # The next poll finds the release and re-signs the cached "on hold" response (RFC 6960
    # §2.2: a released hold is "good" again).
    assert services.ocsp.refresh() >= 1
    resp = ocsp_status(services, mobile[CertKind.MOBILE_AUTH].der, CaKind.AUTH)
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert state(services, mobile[CertKind.MOBILE_SIGN].serial) == ("revoked", "superseded")
    (reissued,) = lifted.certificates
    assert reissued.kind is CertKind.MOBILE_SIGN
    assert reissued.not_after == h.card_sign.not_after
    assert lifted.linked == {reissued.serial: h.card_sign.serial}
    view = services.certificates.show(READ_CERTIFICATE, reissued.serial)
    assert view.predecessor == mobile[CertKind.MOBILE_SIGN].serial
    assert view.sibling == mobile[CertKind.MOBILE_AUTH].serial
    # The released hold is removed in the next delta CRL (RFC 5280 §5.3.1).
    clock.advance(minutes=1)
    delta = x509.load_der_x509_crl((services.crls.directory / services.crls.publish(
        services.crls.scope(CaKind.AUTH, 1, "132217"), DELTA).path).read_bytes())
    entry = delta.get_revoked_certificate_by_serial_number(
        int(mobile[CertKind.MOBILE_AUTH].serial, 16))
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is \
        x509.ReasonFlags.remove_from_crl


def test_the_call_centre_may_not_hold_card_certificates(services, holder):
    h = holder()
    with pytest.raises(CardCertificateNotHoldable):
        services.mobile.hold_certificate(HOLD_CERTIFICATE, h.card_sign.serial)
    assert state(services, h.card_sign.serial) == ("good", None)
    with pytest.raises(NotFound):
        services.mobile.hold(HOLD, h.id)  # no phone, nothing to hold


# --- 重層的な措置 -----------------------------------------------------------------------------


def test_the_sweep_revokes_what_the_holder_did_not(services, holder, keys, clock):
    h = holder()
    phone = Phone("p")
    phone.new_keys(keys)
    mobile = {c.kind: c for c in h.apply(phone).certificates}
    # The card certificate revoked behind the cascade's back (an old record, an import…).
    with services.uow.engine.begin() as conn:
        conn.execute(text("UPDATE certificates SET revoked_at = created_at, "
                          "revocation_reason = 1 WHERE serial = :s"), {"s": h.card_sign.serial})
    report = services.mobile_sweep.run(MOBILE_SWEEP)
    assert report.revoked == [mobile[CertKind.MOBILE_SIGN].serial]
    assert state(services, mobile[CertKind.MOBILE_SIGN].serial) == ("revoked", "keyCompromise")
    assert state(services, mobile[CertKind.MOBILE_AUTH].serial) == ("good", None)
    # A device silent for 90 days is flagged; a check-in signed by the phone clears it.
    clock.advance(days=91)
    assert services.mobile_sweep.run(MOBILE_SWEEP).flagged == [phone.device_id]
    services.mobile.check_in(h.request(phone, "jpki-mobile-check-in/1", "check_in"))
    with services.uow() as uow:
        assert uow.mobile.device(phone.device_id).flagged_at is None


def test_death_revokes_the_mobile_certificates_too(services, holder, keys, operator):
    h = holder()
    phone = Phone("p")
    phone.new_keys(keys)
    mobile = h.apply(phone).certificates
    services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT),
        h.id, ResidentEvent(EventKind.DEATH, date=date(2026, 11, 26)))
    for cert in mobile:
        assert state(services, cert.serial)[0] == "revoked"
    with services.uow() as uow:
        services.audit.verify(uow)


def test_card_loss_holds_the_mobile_certificates_too(services, holder, keys, operator):
    h = holder()
    phone = Phone("p")
    phone.new_keys(keys)
    mobile = h.apply(phone).certificates
    with services.uow() as uow:
        number = uow.cards.active_for_resident(h.id).number
    services.cards.record_event(authorize(operator, Operation.CARD_EVENT), number, CardEvent.LOST)
    for cert in mobile:
        assert state(services, cert.serial) == ("revoked", "certificateHold")
    assert serial_hex(int(mobile[0].serial, 16)) == mobile[0].serial
