"""The smartphone-certificate rules of jpki.mobile.rules one by one (reference §2): the signer,
the challenge, linkage, one device per person, suspension and its lift, and what the sweep
revokes with the card — on plain records, each refusal with its detail and context. (The same
rules end to end, with the HSM, real CMS and the phone protocol:
tests/jpki/mobile/test_mobile.py.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from jpki.errors import Conflict, JpkiError, NotFound, ResidentInactive
from jpki.issuance_port import LinkedRequest
from jpki.mobile import rules
from jpki.mobile.rules import (
    CardCertificateNotHoldable,
    ChallengeInvalid,
    EnrolmentInProgress,
    SignerRefused,
)
from jpki.model import (
    Certificate,
    CertKind,
    CertStatus,
    DeviceStatus,
    MobileChallenge,
    MobileDevice,
    RegistrySource,
    Resident,
    ResidentStatus,
    RevocationReason,
)
from jpki.protocol.mobile import DeviceRevocationReason

NOW = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DEVICE = "0123456789abcdef0123456789abcdef"


def cert(kind: CertKind = CertKind.CARD_SIGN, **changes: Any) -> Certificate:
    base = Certificate(
        id=1, serial="a1", kind=kind, resident_id="r1", card_id=1, ca_generation_id=1,
        status=CertStatus.ISSUED, not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=300), shard="132217",
        registry_source=RegistrySource.JUMINHYO, public_key_sha256="00" * 32,
        created_at=NOW - timedelta(days=30), updated_at=NOW, der=b"der-a1")
    return replace(base, **changes)


def resident(status: ResidentStatus = ResidentStatus.ACTIVE) -> Resident:
    return Resident(id="r1", municipality_code="132217", registry_source=RegistrySource.JUMINHYO,
                    status=status, dv_support=False, created_at=NOW, updated_at=NOW,
                    name="山田 太郎", birth_date=date(1980, 1, 1), sex=1, address="東京都")


def device(**changes: Any) -> MobileDevice:
    base = MobileDevice(id=DEVICE, resident_id="r1", device_ref="phone", platform="JPKIAPIOSTOKEN",
                        status=DeviceStatus.ACTIVE, created_at=NOW, last_seen_at=NOW)
    return replace(base, **changes)


def refused(kind: type[JpkiError], call: Any, *args: Any) -> tuple[str, dict[str, Any]]:
    with pytest.raises(kind) as caught:
        call(*args)
    assert type(caught.value) is kind
    return caught.value.detail, caught.value.context


HELD = {"revoked_at": NOW - timedelta(days=1),
        "revocation_reason": RevocationReason.CERTIFICATE_HOLD}
REVOKED = {"revoked_at": NOW - timedelta(days=1),
           "revocation_reason": RevocationReason.KEY_COMPROMISE}


# --- the refusals' codes ---------------------------------------------------------------------


def test_each_refusal_has_its_code_and_status():
    assert (ChallengeInvalid.code, ChallengeInvalid.title) == (
        "mobile.challenge_invalid", "The challenge is unknown, used or expired")
    assert (SignerRefused.code, SignerRefused.title) == (
        "mobile.signer_refused",
        "The request is not signed by a valid, current certificate of the holder")
    assert (EnrolmentInProgress.code, EnrolmentInProgress.title) == (
        "mobile.enrolment_in_progress",
        "Another device's application for this holder is being processed")
    assert (CardCertificateNotHoldable.code, CardCertificateNotHoldable.title) == (
        "mobile.card_hold_refused", "The call centre may hold mobile certificates only")


# --- challenges --------------------------------------------------------------------------------


def challenge(**changes: Any) -> MobileChallenge:
    base = MobileChallenge(digest="d", purpose="application", created_at=NOW - timedelta(minutes=1),
                           expires_at=NOW + SECOND)
    return replace(base, **changes)


def test_a_challenge_is_used_once_before_its_expiry_for_its_purpose():
    record = challenge()
    rules.use_challenge(record, "application", NOW)
    assert record.used_at == NOW
    detail = "the challenge is unknown, used, expired or for another purpose"
    for bad, purpose in [(None, "application"), (record, "application"),
                         (challenge(expires_at=NOW), "application"),
                         (challenge(), "revocation")]:
        assert refused(ChallengeInvalid, rules.use_challenge, bad, purpose, NOW) == (detail, {})
    assert record.used_at == NOW


def test_retry_after_is_the_seconds_until_the_earliest_expiry_at_least_one():
    assert rules.retry_after(NOW + timedelta(seconds=90), NOW) == 90
    assert rules.retry_after(NOW + timedelta(seconds=1.2), NOW) == 2
    assert rules.retry_after(NOW, NOW) == 1
    assert rules.retry_after(NOW - timedelta(seconds=30), NOW) == 1
    assert rules.retry_after(None, NOW) == 1


# --- the signer ----------------------------------------------------------------------------


def test_the_signer_is_ours_byte_for_byte():
    ours = cert()
    assert rules.issued_by_us(ours, b"der-a1") is ours
    detail = ("the signer certificate was not issued by this CA", {})
    assert refused(SignerRefused, rules.issued_by_us, None, b"der-a1") == detail
    assert refused(SignerRefused, rules.issued_by_us, cert(der=None), b"der-a1") == detail
    assert refused(SignerRefused, rules.issued_by_us, ours, b"der-forged") == detail


def test_only_the_cards_signing_certificate_applies():
    rules.check_card_signer(cert(), NOW)
    for kind in (CertKind.CARD_AUTH, CertKind.MOBILE_SIGN, CertKind.MOBILE_AUTH):
        assert refused(SignerRefused, rules.check_card_signer, cert(kind), NOW) == (
            "the application must be signed with the card's signing key", {})


@pytest.mark.parametrize("changes", [
    REVOKED, HELD, {"status": CertStatus.PENDING}, {"status": CertStatus.ABANDONED},
    {"not_after": NOW - SECOND}, {"not_before": NOW + SECOND}],
    ids=["revoked", "held", "pending", "abandoned", "expired", "not yet valid"])
def test_the_card_signing_certificate_must_be_valid_now(changes):
    assert refused(SignerRefused, rules.check_card_signer, cert(**changes), NOW) == (
        "the card signing certificate is revoked, expired or not issued", {"serial": "a1"})


def test_valid_at_its_edges():
    rules.check_card_signer(cert(not_after=NOW), NOW)
    rules.check_card_signer(cert(not_before=NOW), NOW)
    rules.check_card_signer(cert(revoked_at=NOW + SECOND,
                                 revocation_reason=RevocationReason.SUPERSEDED), NOW)


def test_a_newer_valid_card_signing_certificate_supersedes():
    signer = cert()
    older = cert(id=2, serial="a0", created_at=signer.created_at - SECOND)
    same_time = cert(id=3, serial="a2", created_at=signer.created_at)
    newer_revoked = cert(id=4, serial="a3", created_at=signer.created_at + SECOND, **REVOKED)
    rules.check_not_superseded(signer, [signer, older, same_time, newer_revoked], NOW)
    newer = cert(id=5, serial="a4", created_at=signer.created_at + SECOND)
    assert refused(SignerRefused, rules.check_not_superseded, signer, [older, newer], NOW) == (
        "the card signing certificate has been superseded", {"serial": "a1"})


def test_the_holder_record_must_be_active():
    active = resident()
    assert rules.active_resident(active) is active
    for bad in (None, resident(ResidentStatus.DECEASED)):
        assert refused(ResidentInactive, rules.active_resident, bad) == (
            "the holder's resident record has ended", {})


def test_a_mobile_auth_signer_must_be_that_devices_and_usable():
    phone = device()
    rules.check_device_signer(phone, cert(CertKind.MOBILE_AUTH, device_id=DEVICE), NOW)
    # Held: it still proves the holder has the phone; a revocation dated later does not count.
    rules.check_device_signer(phone, cert(CertKind.MOBILE_AUTH, device_id=DEVICE, **HELD), NOW)
    rules.check_device_signer(phone, cert(CertKind.MOBILE_AUTH, device_id=DEVICE,
                                          not_after=NOW), NOW)
    rules.check_device_signer(phone, cert(CertKind.MOBILE_AUTH, device_id=DEVICE,
                                          revoked_at=NOW + SECOND,
                                          revocation_reason=RevocationReason.KEY_COMPROMISE), NOW)
    assert refused(SignerRefused, rules.check_device_signer, phone,
                   cert(CertKind.MOBILE_AUTH, device_id="f" * 32), NOW) == (
        "signed with another device's key", {})
    for changes in (REVOKED, {"status": CertStatus.ABANDONED}, {"not_after": NOW - SECOND},
                    {"revoked_at": NOW, "revocation_reason": RevocationReason.SUPERSEDED}):
        assert refused(SignerRefused, rules.check_device_signer, phone,
                       cert(CertKind.MOBILE_AUTH, device_id=DEVICE, **changes), NOW) == (
            "the mobile auth certificate is revoked or expired", {})


def test_a_device_request_names_a_device_of_the_signer():
    phone = device()
    assert rules.device_of_holder(phone, cert()) is phone
    for bad, signer in [(None, cert()), (phone, cert(resident_id="r2"))]:
        assert refused(NotFound, rules.device_of_holder, bad, signer) == (
            "no such device for this holder", {})


# --- linkage -------------------------------------------------------------------------------


def test_the_card_auth_certificate_of_the_same_card_is_linked():
    card_sign = cert(card_id=7)
    other_card = cert(CertKind.CARD_AUTH, id=2, serial="b1", card_id=8)
    invalid = cert(CertKind.CARD_AUTH, id=3, serial="b2", card_id=7, **REVOKED)
    good = cert(CertKind.CARD_AUTH, id=4, serial="b3", card_id=7)
    later = cert(CertKind.CARD_AUTH, id=5, serial="b4", card_id=7)
    assert rules.card_auth_to_link(card_sign, [other_card, invalid, good, later], NOW) is good
    assert refused(SignerRefused, rules.card_auth_to_link, card_sign, [other_card, invalid],
                   NOW) == ("the card has no valid auth certificate to link to", {})


def test_old_to_new_runs_from_the_newest_mobile_certificate_of_the_kind():
    old_sign = cert(CertKind.MOBILE_SIGN, id=10, created_at=NOW - timedelta(days=20))
    new_sign = cert(CertKind.MOBILE_SIGN, id=11, created_at=NOW - timedelta(days=10))
    newest_auth = cert(CertKind.MOBILE_AUTH, id=12, created_at=NOW)
    history = [old_sign, new_sign, newest_auth]
    assert rules.predecessor(history, CertKind.MOBILE_SIGN) is new_sign
    assert rules.predecessor([new_sign, old_sign], CertKind.MOBILE_SIGN) is new_sign
    assert rules.predecessor(history, CertKind.MOBILE_AUTH) is newest_auth
    assert rules.predecessor([newest_auth], CertKind.MOBILE_SIGN) is None


def test_each_mobile_certificate_is_linked_to_the_card_certificate_of_its_use():
    card_sign, card_auth = cert(id=1), cert(CertKind.CARD_AUTH, id=2)
    keys: Any = {CertKind.MOBILE_SIGN: "sign key", CertKind.MOBILE_AUTH: "auth key"}
    previous = cert(CertKind.MOBILE_AUTH, id=9)
    assert rules.device_requests(keys, card_sign, card_auth, [previous]) == (
        LinkedRequest(CertKind.MOBILE_AUTH, keys[CertKind.MOBILE_AUTH], linked_to=card_auth,
                      predecessor=previous),
        LinkedRequest(CertKind.MOBILE_SIGN, keys[CertKind.MOBILE_SIGN], linked_to=card_sign,
                      predecessor=None))


# --- one device per person -----------------------------------------------------------------


def test_no_second_application_while_one_is_pending():
    rules.check_no_enrolment([cert(CertKind.MOBILE_SIGN), cert(CertKind.MOBILE_AUTH, **REVOKED),
                              cert(CertKind.MOBILE_AUTH, status=CertStatus.ABANDONED)])
    assert refused(EnrolmentInProgress, rules.check_no_enrolment,
                   [cert(CertKind.MOBILE_SIGN), cert(CertKind.MOBILE_AUTH,
                                                     status=CertStatus.PENDING)]) == (
        "another application for this holder is in progress", {})


def test_a_new_device_supersedes_every_other_active_one():
    old, older, new = device(id="1" * 32), device(id="2" * 32), device()
    assert rules.superseded_devices([old, new, older], DEVICE) == [old, older]
    assert rules.superseded_devices([new], DEVICE) == []


def test_retiring_or_holding_reaches_issued_unexpired_certificates():
    assert rules.revocable(cert(CertKind.MOBILE_SIGN), NOW)
    assert rules.revocable(cert(CertKind.MOBILE_SIGN, not_after=NOW), NOW)
    assert rules.revocable(cert(CertKind.MOBILE_SIGN, **HELD), NOW)
    assert not rules.revocable(cert(CertKind.MOBILE_SIGN, not_after=NOW - SECOND), NOW)
    assert not rules.revocable(cert(CertKind.MOBILE_SIGN, status=CertStatus.PENDING), NOW)


def test_the_holders_reason_becomes_the_revocation_reason():
    assert rules.holder_revocation_reason(DeviceRevocationReason.DEVICE_CHANGE) is \
        RevocationReason.SUPERSEDED
    for reason in (DeviceRevocationReason.SALE, DeviceRevocationReason.DISPOSAL):
        assert rules.holder_revocation_reason(reason) is \
            RevocationReason.CESSATION_OF_OPERATION


# --- suspension ----------------------------------------------------------------------------


def test_the_call_centre_holds_mobile_certificates_only():
    for kind in (CertKind.MOBILE_SIGN, CertKind.MOBILE_AUTH):
        rules.check_holdable(cert(kind), "a1")
    for kind in (CertKind.CARD_SIGN, CertKind.CARD_AUTH):
        assert refused(CardCertificateNotHoldable, rules.check_holdable, cert(kind), "A1") == (
            "card certificates are not held by the call centre", {"serial": "A1"})


def pair(**changes: Any) -> list[Certificate]:
    return [cert(CertKind.MOBILE_AUTH, id=20, serial="c0", **{**HELD, **changes}),
            cert(CertKind.MOBILE_SIGN, id=21, serial="c1", **{**HELD, **changes})]


def test_a_lift_takes_both_held_certificates_of_the_active_device():
    auth, sign = pair()
    expired = cert(CertKind.MOBILE_SIGN, id=19, not_after=NOW - SECOND)
    assert rules.held_pair(device(), [sign, auth, expired], NOW) == (auth, sign)
    at_expiry = pair(not_after=NOW)
    assert rules.held_pair(device(), at_expiry, NOW) == tuple(at_expiry)


def test_a_lift_refuses_what_is_not_a_held_pair():
    assert refused(Conflict, rules.held_pair, device(status=DeviceStatus.REPLACED), pair(),
                   NOW) == ("the device is no longer active", {})
    detail = ("the device's certificates are not on hold", {})
    auth, sign = pair()
    for certs in ([auth], [sign], pair(**REVOKED), [auth, replace(sign, **REVOKED)],
                  [replace(auth, revoked_at=None, revocation_reason=None), sign],
                  pair(not_after=NOW - SECOND), pair(status=CertStatus.PENDING)):
        assert refused(Conflict, rules.held_pair, device(), certs, NOW) == detail


def test_a_lift_needs_the_linked_card_signing_certificate_valid():
    card, holder = cert(), resident()
    assert rules.lift_linked_card(card, holder, NOW) == (card, holder)
    for bad_card, bad_holder in [(None, holder), (cert(**REVOKED), holder), (card, None)]:
        assert refused(SignerRefused, rules.lift_linked_card, bad_card, bad_holder, NOW) == (
            "the linked card signing certificate is no longer valid", {})


def test_a_lift_reissues_the_signing_certificate_linked_three_ways():
    card_sign, (auth, sign) = cert(), pair()
    key: Any = "new key"
    assert rules.reissue_request(key, card_sign, sign, auth) == LinkedRequest(
        CertKind.MOBILE_SIGN, key, linked_to=card_sign, predecessor=sign, partner=auth)


# --- revoked with the card ---------------------------------------------------------------


def test_the_sweep_keeps_a_mobile_certificate_whose_card_and_record_stand():
    assert rules.sweep_reason(cert(), resident(), NOW) is None
    assert rules.sweep_reason(cert(not_after=NOW), resident(), NOW) is None


def test_the_sweep_revokes_when_the_record_ended_whatever_the_card():
    for holder in (None, resident(ResidentStatus.DECEASED)):
        assert rules.sweep_reason(cert(), holder, NOW) is RevocationReason.CESSATION_OF_OPERATION
        assert rules.sweep_reason(cert(**REVOKED), holder, NOW) is \
            RevocationReason.CESSATION_OF_OPERATION


def test_the_sweep_takes_the_cards_reason_when_the_card_is_no_longer_valid():
    assert rules.sweep_reason(cert(**REVOKED), resident(), NOW) is RevocationReason.KEY_COMPROMISE
    assert rules.sweep_reason(cert(**HELD), resident(), NOW) is RevocationReason.CERTIFICATE_HOLD
    for card in (None, cert(not_after=NOW - SECOND), cert(status=CertStatus.ABANDONED)):
        assert rules.sweep_reason(card, resident(), NOW) is \
            RevocationReason.CESSATION_OF_OPERATION
