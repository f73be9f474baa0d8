"""Smartphone certificates (移動端末設備用電子証明書): the central new function of the
Ministry's plan (reference §2).

One mobile signing and one mobile auth certificate per person, on one device at a time, applied
for online with a signature made by the card's signing key (reference §2):

1. The phone asks for a challenge (single-use, minutes).
2. It generates two key pairs in its secure element, signs a proof of possession with each
   (over the challenge, the device and the kind), and puts the challenge, the device, its
   platform label and both public keys into an *application*.
3. The holder signs the application with the card's signing key (its signing password): a CMS
   SignedData whose signer is the card signing certificate.
4. The CA checks all of it — the signature, that the signer certificate is ours, valid,
   unrevoked and the holder's *current* one, the challenge, both proofs, the keys — and issues
   both certificates through the same pipeline as card certificates. Each is **linked** to the
   card certificate of its kind and has **exactly its notAfter**; a distinct policy OID marks it
   as a mobile certificate (jpki/data/recipe.toml). A new device supersedes the old one's
   certificates in the same transaction that stores the new ones.

Afterwards: the holder revokes online (device change, sale, disposal) with the mobile auth key
or the card; a call-centre operator puts both certificates on hold when a phone is lost; the
holder lifts the suspension from the found phone — the auth certificate is released
(removeFromCRL in the next delta) and the signing certificate is revoked and re-issued to the
same device; revocation of the card certificate cascades (jpki.lifecycle.revocation); and a periodic
sweep revokes what a holder failed to and deals with silent devices (重層的な措置,
jpki.mobile.sweep).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from jpki.access.authz import Grant, Operation, authorize
from jpki.access.principals import Principal
from jpki.audit import AuditLog
from jpki.errors import CertificateNotFound, NotFound, ResidentNotFound, Unavailable
from jpki.issuance_port import (
    DeviceIssuance,
    DeviceIssued,
    DeviceOrder,
    IssuedCertificate,
)
from jpki.lifecycle.revocation import RevocationResult, release_hold, revoke_in
from jpki.mobile.ports import MobileUnitOfWorkFactory, MobileWork
from jpki.mobile.rules import (
    SignerRefused,
    active_resident,
    card_auth_to_link,
    check_card_signer,
    check_device_signer,
    check_holdable,
    check_no_enrolment,
    check_not_superseded,
    device_of_holder,
    device_requests,
    held_pair,
    holder_revocation_reason,
    issued_by_us,
    lift_linked_card,
    reissue_request,
    retry_after,
    revocable,
    superseded_devices,
    use_challenge,
)
from jpki.model import (
    Certificate,
    CertKind,
    DeviceStatus,
    MobileChallenge,
    MobileDevice,
    Resident,
    RevocationReason,
)
from jpki.ports import Clock
from jpki.protocol.cms import verify_signed_data
from jpki.protocol.mobile import (
    ChallengePurpose,
    HolderRequest,
    MobileApplication,
    MobileCheckIn,
    MobileError,
    MobileKind,
    MobileRevocation,
    MobileSuspensionLift,
    pop_message,
)
from jpki.public_keys import SubjectKey, load_subject_key
from jpki.rate_limits import RateLimited

CHALLENGE_LIFETIME = timedelta(minutes=5)
_DEVICE_ID = re.compile(r"[0-9a-f]{32}")
MOBILE_KINDS = (CertKind.MOBILE_SIGN, CertKind.MOBILE_AUTH)
# The protocol names the two mobile certificates by their wire strings (jpki.protocol.mobile).
WIRE_KIND = {CertKind.MOBILE_SIGN: MobileKind.SIGN, CertKind.MOBILE_AUTH: MobileKind.AUTH}
_PURPOSES = frozenset(p.value for p in ChallengePurpose)
R = TypeVar("R", bound=HolderRequest)


class ProofOfPossessionInvalid(MobileError):
    code = "mobile.pop_invalid"
    title = "A proof of possession does not verify"


class TooManyChallenges(RateLimited):
    code = "mobile.too_many_challenges"
    title = "This source holds too many unused challenges"


class ChallengesExhausted(Unavailable):
    code = "mobile.challenges_exhausted"
    title = "Too many unused challenges are outstanding; try again later"


@dataclass(frozen=True)
class MobileIssued:
    device_id: str
    certificates: list[IssuedCertificate]
    chain: list[bytes]  # the issuing CA certificates (DER)
    linked: dict[str, str]  # mobile serial → the card certificate's serial it is linked to


def _verify_pop(key: SubjectKey, signature: bytes, message: bytes, field: str) -> None:
    assert isinstance(key.key, rsa.RSAPublicKey)
    try:
        key.key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise ProofOfPossessionInvalid("a proof of possession does not verify",
                                       field=field) from exc


class _Application:
    """A mobile application as issuance takes it (jpki.issuance_port.DeviceApplication):
    ``verify`` runs inside the transaction that records the intents, ``settle`` inside the one
    that stores the certificates."""

    def __init__(self, verify: Callable[[MobileWork, datetime], DeviceOrder],
                 settle: Callable[[MobileWork, DeviceOrder, datetime], None] | None = None,
                 ) -> None:
        self._verify = verify
        self._settle = settle
        self.order: DeviceOrder | None = None

    def verify(self, uow: MobileWork, now: datetime) -> DeviceOrder:
        self.order = self._verify(uow, now)
        return self.order

    def settle(self, uow: MobileWork, now: datetime) -> None:
        if self._settle is not None and self.order is not None:
            self._settle(uow, self.order, now)


class MobileService:
    def __init__(self, uow_factory: MobileUnitOfWorkFactory, clock: Clock, audit: AuditLog,
                 issuance: DeviceIssuance,
                 max_outstanding: int = 10_000, max_per_source: int = 100) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit
        self._issuance = issuance
        self.max_outstanding = max_outstanding
        self.max_per_source = max_per_source

    # --- challenges -----------------------------------------------------------------------

    def new_challenge(self, purpose: str, source: str | None = None) -> tuple[bytes, datetime]:
        """A single-use challenge for ``purpose``, valid for CHALLENGE_LIFETIME. Anyone may ask
        (the phone has no credentials yet), so what is outstanding — neither used nor expired —
        is bounded: ``max_per_source`` for one ``source`` (429), ``max_outstanding`` in all (503),
        each with the seconds until the earliest of them expires. Under PostgreSQL's read
        committed, concurrent requests may overshoot a bound by their number; SQLite has one
        writer at a time."""
        if purpose not in _PURPOSES:
            raise MobileError("purpose is application, revocation, lift or check_in",
                              field="purpose")
        challenge = secrets.token_bytes(32)
        now = self._clock.now()
        with self._uow() as uow:
            if source is not None:
                held, earliest = uow.mobile.outstanding_challenges(now, source)
                if held >= self.max_per_source:
                    raise TooManyChallenges(
                        f"at most {self.max_per_source} unused challenges per source",
                        retry_after=retry_after(earliest, now))
            held, earliest = uow.mobile.outstanding_challenges(now)
            if held >= self.max_outstanding:
                raise ChallengesExhausted("too many unused challenges are outstanding",
                                          retry_after=retry_after(earliest, now))
            uow.mobile.add_challenge(MobileChallenge(
                digest=hashlib.sha256(challenge).hexdigest(), purpose=purpose, created_at=now,
                expires_at=now + CHALLENGE_LIFETIME, source=source))
            uow.commit()
        return challenge, now + CHALLENGE_LIFETIME

    def purge_challenges(self) -> int:
        """Delete the challenges that can no longer be used (expired, or used); the maintenance
        job runs this, so the table holds minutes of challenges, never more."""
        with self._uow() as uow:
            deleted = uow.mobile.delete_spent_challenges(self._clock.now())
            uow.commit()
        return deleted

    def _consume_challenge(self, uow: MobileWork, challenge: bytes, purpose: str,
                           now: datetime) -> None:
        use_challenge(uow.mobile.challenge(hashlib.sha256(challenge).hexdigest(),
                                           for_update=True), purpose, now)

    # --- who signed ----------------------------------------------------------------------

    @staticmethod
    def _our_certificate(uow: MobileWork, signer: x509.Certificate) -> Certificate:
        return issued_by_us(uow.certificates.get_by_serial(format(signer.serial_number, "x"),
                                                           for_update=True),
                            signer.public_bytes(Encoding.DER))

    def _current_card_certificate(self, uow: MobileWork, cert: Certificate,
                                  now: datetime) -> Resident:
        check_card_signer(cert, now)
        check_not_superseded(
            cert, uow.certificates.for_resident(cert.resident_id, [CertKind.CARD_SIGN]), now)
        return active_resident(uow.residents.get(cert.resident_id, for_update=True))

    # --- application ----------------------------------------------------------------------

    def apply(self, signed_der: bytes) -> MobileIssued:
        """Verify an application signed with the card and issue both mobile certificates."""
        verified = verify_signed_data(signed_der)
        doc = MobileApplication.parse(verified.content)
        challenge, device_ref, platform = doc.challenge, doc.device, doc.platform.value
        keys = {kind: load_subject_key(doc.public_key(WIRE_KIND[kind])) for kind in MOBILE_KINDS}
        if keys[CertKind.MOBILE_SIGN].sha256 == keys[CertKind.MOBILE_AUTH].sha256:
            raise MobileError("the two mobile keys must differ", field="auth_public_key")
        for kind, field in ((CertKind.MOBILE_SIGN, "sign_pop"), (CertKind.MOBILE_AUTH,
                                                                   "auth_pop")):
            _verify_pop(keys[kind], doc.pop(WIRE_KIND[kind]), pop_message(
                challenge, device_ref, WIRE_KIND[kind]), field)

        if doc.card_sign_serial.lower() != format(verified.signer.serial_number, "x"):
            # The application names the holder's card signing certificate; a signature by any
            # other certificate (another person's card) does not make it theirs.
            raise SignerRefused("the application is not signed by the card it names")
        def verify(uow: MobileWork, now: datetime) -> DeviceOrder:
            self._consume_challenge(uow, challenge, doc.PURPOSE, now)
            card_sign = self._our_certificate(uow, verified.signer)
            resident = self._current_card_certificate(uow, card_sign, now)
            card_auth = card_auth_to_link(
                card_sign, uow.certificates.for_resident(resident.id, [CertKind.CARD_AUTH]), now)
            history = uow.certificates.for_resident(resident.id, MOBILE_KINDS)
            check_no_enrolment(history)
            if uow.certificates.public_keys_in_use([k.sha256 for k in keys.values()]):
                raise MobileError("a mobile public key is already certified")
            device = MobileDevice(id=uuid.uuid4().hex, resident_id=resident.id,
                                  device_ref=device_ref, platform=platform,
                                  status=DeviceStatus.ACTIVE, created_at=now, last_seen_at=now)
            uow.mobile.add_device(device)
            actor = authorize(Principal.holder(resident.id), Operation.MOBILE_APPLY).principal
            self._audit.record(uow, actor=actor.actor, action="mobile.applied",
                               subject=device.id,
                               payload={"resident": resident.id, "platform": platform,
                                        "card_sign": card_sign.serial,
                                        "card_auth": card_auth.serial})
            return DeviceOrder(resident=resident, device_id=device.id,
                               requests=device_requests(keys, card_sign, card_auth, history))

        def supersede(uow: MobileWork, order: DeviceOrder, now: datetime) -> None:
            actor = authorize(Principal.holder(order.resident.id),
                              Operation.MOBILE_APPLY).principal
            # One device per person: the new one supersedes the others, in the transaction
            # that stores its certificates.
            for old in superseded_devices(uow.mobile.active_devices(order.resident.id),
                                          order.device_id):
                self._retire(uow, actor, old, DeviceStatus.REPLACED,
                             RevocationReason.SUPERSEDED, now, "new device")

        return self._issue(_Application(verify, supersede))

    def _issue(self, application: _Application) -> MobileIssued:
        """Hand a verified application to issuance (jpki.issuance_port), which records, signs
        and stores its certificates in transactions of its own."""
        issued: DeviceIssued = self._issuance.issue_for_device(application)
        order = application.order
        assert order is not None  # verify() ran, or issuance raised
        cards = {r.kind: r.linked_to.serial for r in order.requests}
        return MobileIssued(device_id=order.device_id, certificates=list(issued.certificates),
                            chain=list(issued.chain),
                            linked={c.serial: cards[c.kind] for c in issued.certificates})

    def _retire(self, uow: MobileWork, actor: Principal, device: MobileDevice,
                status: DeviceStatus, reason: RevocationReason, now: datetime,
                cause: str) -> list[RevocationResult]:
        device.status = status
        results = []
        for cert in uow.certificates.for_device(device.id):
            if revocable(cert, now):
                result = revoke_in(uow, self._audit, actor, cert, reason, now, now, cause)
                if result.changed:
                    results.append(result)
        self._audit.record(uow, actor=actor.actor, action=f"mobile.device_{status.value}",
                           subject=device.id, payload={"resident": device.resident_id,
                                                       "cause": cause})
        return results

    # --- the holder's own requests --------------------------------------------------------

    def _holder_request(self, uow: MobileWork, signed_der: bytes, document: type[R],
                        now: datetime) -> tuple[R, MobileDevice, Certificate]:
        """A request signed by the device's mobile auth key or by the holder's card signing
        key, about that device; returns (document, device, signer certificate)."""
        verified = verify_signed_data(signed_der)
        doc = document.parse(verified.content)
        self._consume_challenge(uow, doc.challenge, doc.PURPOSE, now)
        # A device id is what add_device made (uuid4().hex); anything else is no device, and is
        # not looked up (PostgreSQL cannot even compare a text with a NUL in it).
        found = uow.mobile.device(doc.device) if _DEVICE_ID.fullmatch(doc.device) else None
        signer = self._our_certificate(uow, verified.signer)
        device = device_of_holder(found, signer)
        if signer.kind is CertKind.MOBILE_AUTH:
            check_device_signer(device, signer, now)
        else:
            self._current_card_certificate(uow, signer, now)
        return doc, device, signer

    def revoke(self, signed_der: bytes) -> list[RevocationResult]:
        """The holder revokes a device's certificates (device change, sale, disposal)."""
        with self._uow() as uow:
            now = self._clock.now()
            doc, device, _ = self._holder_request(uow, signed_der, MobileRevocation, now)
            reason = holder_revocation_reason(doc.reason)
            actor = authorize(Principal.holder(device.resident_id),
                              Operation.MOBILE_REVOKE).principal
            results = self._retire(uow, actor, device, DeviceStatus.REVOKED, reason, now,
                                   doc.reason.value)
            uow.commit()
        return results

    def check_in(self, signed_der: bytes) -> tuple[str, datetime]:
        with self._uow() as uow:
            now = self._clock.now()
            _, device, signer = self._holder_request(uow, signed_der, MobileCheckIn, now)
            if signer.kind is not CertKind.MOBILE_AUTH:
                raise SignerRefused("a device checks in with its own auth key")
            device.last_seen_at = now
            device.flagged_at = None
            uow.commit()
        return device.id, now

    def lift_suspension(self, signed_der: bytes) -> MobileIssued:
        """The phone was found: release the auth hold (removeFromCRL), revoke the held signing
        certificate and issue a new one to the same device with the key the phone sent."""
        def verify(uow: MobileWork, now: datetime) -> DeviceOrder:
            doc, device, _ = self._holder_request(uow, signed_der, MobileSuspensionLift, now)
            auth, sign = held_pair(device, uow.certificates.for_device(device.id), now)
            key = load_subject_key(doc.sign_public_key)
            _verify_pop(key, doc.sign_pop,
                        pop_message(doc.challenge, device.device_ref, MobileKind.SIGN),
                        "sign_pop")
            if uow.certificates.public_keys_in_use([key.sha256]):
                raise MobileError("the new signing key is already certified")
            card_sign, resident = lift_linked_card(uow.certificates.get(sign.linked_id or 0),
                                                   uow.residents.get(device.resident_id), now)
            actor = authorize(Principal.holder(device.resident_id),
                              Operation.MOBILE_LIFT_SUSPENSION).principal
            # Signed with the phone's own key: the phone has been seen, so the sweep
            # (jpki.mobile.sweep) must not hold it again for its silence before.
            device.last_seen_at = now
            device.flagged_at = None
            release_hold(auth, now)
            # The release instant, which the next delta CRL's removeFromCRL entry carries
            # (RFC 5280 §5.3.1), is state `jpki audit verify --state` replays.
            self._audit.record(uow, actor=actor.actor, action="certificate.hold_released",
                               subject=auth.serial,
                               payload={"kind": auth.kind.value,
                                        "hold_released_at": now.isoformat()})
            revoke_in(uow, self._audit, actor, sign, RevocationReason.SUPERSEDED, now, now,
                      cause="suspension lifted: re-issued")
            return DeviceOrder(resident=resident, device_id=device.id,
                               requests=(reissue_request(key, card_sign, sign, auth),))

        return self._issue(_Application(verify))

    # --- the call centre -----------------------------------------------------------------

    def hold(self, grant: Grant[Literal[Operation.MOBILE_HOLD]],
             resident_id: str) -> list[RevocationResult]:
        """A lost phone: both mobile certificates of the active device on hold at once."""
        actor = grant.require(Operation.MOBILE_HOLD)
        with self._uow() as uow:
            now = self._clock.now()
            resident = uow.residents.get(resident_id, for_update=True)
            if resident is None:
                raise ResidentNotFound("no such resident", resident=resident_id[:64])
            results: list[RevocationResult] = []
            for device in uow.mobile.active_devices(resident.id):
                for cert in uow.certificates.for_device(device.id):
                    if revocable(cert, now):
                        result = revoke_in(uow, self._audit, actor, cert,
                                           RevocationReason.CERTIFICATE_HOLD, now, now,
                                           cause="lost phone (call centre)")
                        if result.changed:
                            results.append(result)
            if not results:
                raise NotFound("the holder has no mobile certificate to hold")
            uow.commit()
        return results

    def hold_certificate(self, grant: Grant[Literal[Operation.MOBILE_HOLD_CERTIFICATE]],
                         serial: str) -> RevocationResult:
        actor = grant.require(Operation.MOBILE_HOLD_CERTIFICATE)
        with self._uow() as uow:
            cert = uow.certificates.get_by_serial(serial, for_update=True)
            if cert is None:
                raise CertificateNotFound("no such certificate", serial=serial)
            check_holdable(cert, serial)
            now = self._clock.now()
            result = revoke_in(uow, self._audit, actor, cert, RevocationReason.CERTIFICATE_HOLD,
                               now, now, cause="lost phone (call centre)")
            uow.commit()
        return result
