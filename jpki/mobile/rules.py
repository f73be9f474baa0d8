"""The rules of smartphone certificates (reference §2), apart from the transactions, the CMS and
the HSM that jpki.mobile.service runs them in: each takes the records the service read and
answers, or refuses with the error the holder sees.

- **The signer.** An application is signed with the holder's *current* card signing certificate:
  one this CA issued (byte for byte), of the card's signing kind, valid now, not superseded by a
  newer valid one, of a resident whose record is active. A later request about a device may also
  be signed with that device's own mobile auth certificate — even while it is on hold, since
  lifting a hold is how the holder proves the phone was found.
- **Linkage.** The mobile auth certificate is linked to the card auth certificate of the same
  card, the mobile signing certificate to the card signing certificate that signed; each takes
  its card certificate's notAfter (jpki.issuance.mobile), and old→new runs from the holder's
  newest mobile certificate of the same kind.
- **One device per person**, so one mobile signing and one mobile auth certificate: no second
  application while one is being signed, and a new device supersedes every other active one.
- **Suspension.** The call centre holds mobile certificates only; a lift needs both certificates
  of the active device on hold, the linked card signing certificate still valid, and re-issues
  the signing certificate (old→new from the held one, signing↔auth with the released auth one).
- **Revoked with the card.** What the card's revocation did not reach, the sweep does: a mobile
  certificate whose resident record ended, or whose card certificate is no longer valid (with the
  card's reason where it has one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from jpki.errors import Conflict, Forbidden, NotFound, PolicyViolation, ResidentInactive
from jpki.issuance_port import LinkedRequest
from jpki.model import (
    Certificate,
    CertKind,
    CertStatus,
    DeviceStatus,
    MobileChallenge,
    MobileDevice,
    Resident,
    ResidentStatus,
    RevocationReason,
)
from jpki.protocol.mobile import DeviceRevocationReason, MobileError
from jpki.public_keys import SubjectKey


class ChallengeInvalid(MobileError):
    code = "mobile.challenge_invalid"
    title = "The challenge is unknown, used or expired"


class SignerRefused(PolicyViolation):
    code = "mobile.signer_refused"
    title = "The request is not signed by a valid, current certificate of the holder"


class EnrolmentInProgress(Conflict):
    code = "mobile.enrolment_in_progress"
    title = "Another device's application for this holder is being processed"


class CardCertificateNotHoldable(Forbidden):
    code = "mobile.card_hold_refused"
    title = "The call centre may hold mobile certificates only"


def retry_after(earliest: datetime | None, now: datetime) -> int:
    """Seconds until the earliest outstanding challenge expires (at least 1)."""
    return max(1, math.ceil((earliest - now).total_seconds())) if earliest is not None else 1


def use_challenge(record: MobileChallenge | None, purpose: str, now: datetime) -> None:
    """Mark a challenge used: single use, before its expiry instant, for its own purpose."""
    # One answer for unknown, replayed, expired or misused: nothing to learn from it.
    if record is None or record.used_at is not None or now >= record.expires_at or \
            record.purpose != purpose:
        raise ChallengeInvalid("the challenge is unknown, used, expired or for another "
                               "purpose")
    record.used_at = now


def issued_by_us(cert: Certificate | None, signer_der: bytes) -> Certificate:
    """The certificate of ours with the signer's serial, if it is byte for byte the signer."""
    # Byte-for-byte the certificate we issued: same serial is not enough.
    if cert is None or cert.der is None or cert.der != signer_der:
        raise SignerRefused("the signer certificate was not issued by this CA")
    return cert


def check_card_signer(cert: Certificate, now: datetime) -> None:
    """The card's signing certificate, valid now (reference §2: applied for with the card's
    signing key)."""
    if cert.kind is not CertKind.CARD_SIGN:
        raise SignerRefused("the application must be signed with the card's signing key")
    if not cert.is_valid(now):
        raise SignerRefused("the card signing certificate is revoked, expired or not "
                            "issued", serial=cert.serial)


def check_not_superseded(cert: Certificate, card_signs: Iterable[Certificate],
                         now: datetime) -> None:
    """No valid card signing certificate of the holder is newer than ``cert``."""
    if any(c.is_valid(now) and c.created_at > cert.created_at for c in card_signs):
        raise SignerRefused("the card signing certificate has been superseded",
                            serial=cert.serial)


def active_resident(resident: Resident | None) -> Resident:
    if resident is None or resident.status is not ResidentStatus.ACTIVE:
        raise ResidentInactive("the holder's resident record has ended")
    return resident


def card_auth_to_link(card_sign: Certificate, card_auths: Iterable[Certificate],
                      now: datetime) -> Certificate:
    """The valid card auth certificate on the card whose signing key signed."""
    card_auth = next((c for c in card_auths
                      if c.is_valid(now) and c.card_id == card_sign.card_id), None)
    if card_auth is None:
        raise SignerRefused("the card has no valid auth certificate to link to")
    return card_auth


def check_no_enrolment(history: Iterable[Certificate]) -> None:
    """One device per person: no application while another one's certificates are pending."""
    if any(c.status is CertStatus.PENDING for c in history):
        raise EnrolmentInProgress("another application for this holder is in progress")


def predecessor(history: Iterable[Certificate], kind: CertKind) -> Certificate | None:
    """The holder's newest mobile certificate of ``kind``: old→new runs from it."""
    return max((c for c in history if c.kind is kind), key=lambda c: c.created_at,
               default=None)


def device_requests(keys: Mapping[CertKind, SubjectKey], card_sign: Certificate,
                    card_auth: Certificate, history: Sequence[Certificate],
                    ) -> tuple[LinkedRequest, ...]:
    """Each mobile certificate linked to the card certificate of its use, whose notAfter it
    takes (jpki.issuance.mobile); old→new from the holder's previous device."""
    return tuple(LinkedRequest(kind, keys[kind], linked_to=card,
                               predecessor=predecessor(history, kind))
                 for kind, card in ((CertKind.MOBILE_AUTH, card_auth),
                                    (CertKind.MOBILE_SIGN, card_sign)))


def superseded_devices(active: Iterable[MobileDevice], new_id: str) -> list[MobileDevice]:
    """One device per person: every active device but the new one."""
    return [d for d in active if d.id != new_id]


def revocable(cert: Certificate, now: datetime) -> bool:
    """Issued and not expired: what retiring or holding a device revokes (a held or revoked one
    too — revoke_in decides what changes)."""
    return cert.status is CertStatus.ISSUED and cert.not_after >= now


def device_of_holder(device: MobileDevice | None, signer: Certificate) -> MobileDevice:
    if device is None or device.resident_id != signer.resident_id:
        raise NotFound("no such device for this holder")
    return device


def check_device_signer(device: MobileDevice, signer: Certificate, now: datetime) -> None:
    """A request about a device signed with a mobile auth key: that device's, usable now."""
    if signer.device_id != device.id:
        raise SignerRefused("signed with another device's key")
    # A held auth certificate still proves the holder has the phone (lifting a hold).
    usable = signer.status is CertStatus.ISSUED and signer.not_after >= now and (
        not signer.is_revoked(now)
        or signer.revocation_reason is RevocationReason.CERTIFICATE_HOLD)
    if not usable:
        raise SignerRefused("the mobile auth certificate is revoked or expired")


def holder_revocation_reason(reason: DeviceRevocationReason) -> RevocationReason:
    """A device change supersedes; a sale or disposal ends the certificates' use."""
    return RevocationReason.SUPERSEDED if reason is DeviceRevocationReason.DEVICE_CHANGE \
        else RevocationReason.CESSATION_OF_OPERATION


def held_pair(device: MobileDevice, certs: Iterable[Certificate],
              now: datetime) -> tuple[Certificate, Certificate]:
    """The (auth, sign) certificates a lift releases and re-issues: the active device's two,
    both on hold."""
    if device.status is not DeviceStatus.ACTIVE:
        raise Conflict("the device is no longer active")
    by_kind = {c.kind: c for c in certs if revocable(c, now)}
    auth, sign = by_kind.get(CertKind.MOBILE_AUTH), by_kind.get(CertKind.MOBILE_SIGN)
    held = [c for c in (auth, sign) if c is not None
            and c.revocation_reason is RevocationReason.CERTIFICATE_HOLD]
    if auth is None or sign is None or len(held) != 2:
        raise Conflict("the device's certificates are not on hold")
    return auth, sign


def lift_linked_card(card_sign: Certificate | None, resident: Resident | None,
                     now: datetime) -> tuple[Certificate, Resident]:
    """A lift re-issues only while the card signing certificate it is linked to is valid."""
    if card_sign is None or not card_sign.is_valid(now) or resident is None:
        raise SignerRefused("the linked card signing certificate is no longer valid")
    return card_sign, resident


def reissue_request(key: SubjectKey, card_sign: Certificate, sign: Certificate,
                    auth: Certificate) -> LinkedRequest:
    """Re-issued to the same device: old→new from the held one, signing↔auth with the
    released auth certificate."""
    return LinkedRequest(CertKind.MOBILE_SIGN, key, linked_to=card_sign, predecessor=sign,
                         partner=auth)


def check_holdable(cert: Certificate, serial: str) -> None:
    if not cert.kind.is_mobile:
        raise CardCertificateNotHoldable("card certificates are not held by the call "
                                         "centre", serial=serial)


def sweep_reason(card: Certificate | None, resident: Resident | None,
                 now: datetime) -> RevocationReason | None:
    """Why the sweep revokes a valid mobile certificate, or None to keep it: its resident
    record ended (cessation), or its card certificate is no longer valid (the card's reason,
    else cessation)."""
    if resident is None or resident.status is not ResidentStatus.ACTIVE:
        return RevocationReason.CESSATION_OF_OPERATION
    if card is None or not card.is_valid(now):
        return (card.revocation_reason if card is not None and
                card.revocation_reason is not None
                else RevocationReason.CESSATION_OF_OPERATION)
    return None
