"""Holders' consents to the latest basic 4 information (最新の利用者情報提供の同意; reference
§3.4), and their withdrawal.

**The statement** (jpki.protocol.consent.ConsentStatement). A holder consents by signing, with
the signing key of the card or of the phone (a CMS SignedData, jpki.protocol.cms, whose signer is
a card or mobile *signing* certificate), the UTF-8 JSON object::

    {"type": "jpki-rp-consent/1",
     "relying_party": "rp_…",                 # the relying party that may receive it
     "items": ["name", "address"],            # any of name, birth_date, sex, address
     "purpose": "account_opening",            # one of the relying party's declared purposes
     "nonce": "…",                            # 16-128 of [A-Za-z0-9_-], chosen by the RP
     "expires_at": "2027-11-27T00:00:00Z"}    # with a time zone; at most consent_max_days ahead

Nothing else may be in it. The relying party submits it (POST /v1/basic4 with ``consent``).

**The checks, each with its own refusal** (and the order they run in):

1. the CMS verifies (``cms.invalid``: unsigned, forged, altered, not CMS);
2. the statement is well formed (``consent.invalid``);
3. it names the submitting relying party (``consent.wrong_relying_party``);
4. its purpose is one the relying party declared (``rp.purpose_undeclared``) and the one the
   call names (``consent.purpose_mismatch``);
5. it has not expired (``consent.expired``), and does not run longer than allowed;
6. the signer certificate is a signing certificate we issued, byte for byte, and the signing
   time is inside its valid life (``consent.signer_refused``), and it is not revoked or held
   now (``consent.signer_revoked``);
7. its nonce was never used (``consent.replayed``; unique in the database, so two concurrent
   submissions of the same statement store one).

Then it is stored: the signed bytes as submitted, the signer, the items, the purpose, the nonce's
SHA-256 and the expiry.

**Standing consents.** Later calls name the consent by id; it must belong to the calling relying
party (another party's id is ``consent.not_found``, as if it did not exist), not be withdrawn
(``consent.withdrawn``) and not be expired (``consent.expired``).

**Withdrawal** (POST /v1/consents/withdrawals, signed by the holder, no client credentials): the
holder signs ``{"type": "jpki-rp-consent-withdrawal/1", "consent_id": "cs_…", "nonce": "…"}``
with any of their signing certificates, while it was valid (the one that signed the consent, or
a newer one after a move revoked it). From then on every call under the consent is refused.
A consent of another holder is ``consent.not_found``; withdrawing twice ``consent.already_
withdrawn``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from jpki.audit import AuditLog
from jpki.errors import (
    Conflict,
    DuplicateResource,
    Forbidden,
    NotFound,
    PolicyViolation,
)
from jpki.model import Certificate, CertStatus, Consent
from jpki.ports import Clock
from jpki.protocol.consent import CONSENT_ID, ConsentInvalid, ConsentStatement, ConsentWithdrawal
from jpki.relying_parties.holder_signatures import (
    HolderSignature,
    signed_while_valid,
    verify_holder_signature,
)
from jpki.relying_parties.ports import (
    ConsentRecording,
    ConsentsUnitOfWorkFactory,
    StandingConsentWork,
)
from jpki.relying_parties.service import RpContext


class ConsentForAnotherParty(Forbidden):
    code = "consent.wrong_relying_party"
    title = "The consent names another relying party"


class ConsentPurposeMismatch(PolicyViolation):
    code = "consent.purpose_mismatch"
    title = "The call's purpose is not the consented purpose"


class ConsentExpired(PolicyViolation):
    code = "consent.expired"
    title = "The consent has expired"


class ConsentWithdrawn(PolicyViolation):
    code = "consent.withdrawn"
    title = "The holder has withdrawn the consent"


class ConsentSignerRefused(PolicyViolation):
    code = "consent.signer_refused"
    title = "The statement is not signed by a signing certificate valid when it was signed"


class ConsentSignerRevoked(PolicyViolation):
    code = "consent.signer_revoked"
    title = "The certificate that signed the consent is revoked"


class ConsentReplayed(Conflict):
    code = "consent.replayed"
    title = "This consent (its nonce) was submitted before"


class ConsentNotFound(NotFound):
    code = "consent.not_found"
    title = "No such consent"


class ConsentAlreadyWithdrawn(Conflict):
    code = "consent.already_withdrawn"
    title = "The consent is already withdrawn"


def _signing_certificate(signature: HolderSignature) -> Certificate:
    cert = signature.certificate
    if cert is None or not cert.kind.is_signing:
        raise ConsentSignerRefused("the statement must be signed with a card or phone signing "
                                   "certificate of this CA")
    return cert


def record_consent(uow: ConsentRecording, audit: AuditLog, ctx: RpContext, der: bytes, purpose: str,
                   now: datetime, max_lifetime: timedelta) -> Consent:
    """Checks 1-7 of the module docstring, then stage the consent in ``uow``."""
    signature = verify_holder_signature(uow, der)
    statement = ConsentStatement.parse(signature.content)
    if statement.relying_party != ctx.rp_id:
        raise ConsentForAnotherParty("the consent names another relying party")
    ctx.require_purpose(statement.purpose)
    if purpose != statement.purpose:
        raise ConsentPurposeMismatch("the call's purpose must be the consented purpose",
                                     field="purpose")
    if statement.expires_at <= now:
        raise ConsentExpired("the consent has expired")
    if statement.expires_at > now + max_lifetime:
        raise ConsentInvalid(f"a consent runs at most {max_lifetime.days} days",
                             field="expires_at")
    cert = _signing_certificate(signature)
    if cert.status is CertStatus.ABANDONED or cert.is_revoked(now):
        raise ConsentSignerRevoked("the certificate that signed the consent is revoked",
                                   serial=cert.serial)
    if not signed_while_valid(signature, now):
        raise ConsentSignerRefused("the signing time is missing or outside the certificate's "
                                   "validity", serial=cert.serial)
    assert signature.signed_at is not None
    digest = hashlib.sha256(statement.nonce.encode("ascii")).hexdigest()
    if uow.consents.nonce_used(digest):
        raise ConsentReplayed("this consent was submitted before")
    consent = Consent(id="cs_" + secrets.token_hex(12), resident_id=cert.resident_id,
                      relying_party_id=ctx.rp_id, items=" ".join(statement.items),
                      purpose=statement.purpose, nonce_digest=digest,
                      expires_at=statement.expires_at, signed_der=der, signer_id=cert.id or 0,
                      signer_serial=cert.serial, signed_at=min(signature.signed_at, now),
                      created_at=now)
    try:
        uow.consents.add(consent)
    except DuplicateResource as exc:
        raise ConsentReplayed("this consent was submitted before") from exc
    audit.record(uow, actor=ctx.actor, action="consent.recorded", subject=consent.id,
                 payload={"relying_party": ctx.rp_id, "resident": consent.resident_id,
                          "items": list(statement.items), "purpose": statement.purpose,
                          "signer": cert.serial,
                          "expires_at": statement.expires_at.isoformat()})
    return consent


class _Standing(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def relying_party_id(self) -> str: ...
    @property
    def withdrawn_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime: ...


S = TypeVar("S", bound=_Standing)


def valid_consent_id(value: object) -> bool:
    return isinstance(value, str) and CONSENT_ID.fullmatch(value) is not None


def check_standing(consent: S | None, rp_id: str, now: datetime) -> S:
    """A consent the calling relying party may use now: its own, not withdrawn, not expired."""
    if consent is None or consent.relying_party_id != rp_id:
        raise ConsentNotFound("no such consent for this relying party")
    if consent.withdrawn_at is not None:
        raise ConsentWithdrawn("the holder has withdrawn the consent", consent=consent.id)
    if consent.expires_at <= now:
        raise ConsentExpired("the consent has expired", consent=consent.id)
    return consent


def load_standing_consent(uow: StandingConsentWork, rp_id: str, consent_id: str, now: datetime,
                          *, for_update: bool = False) -> Consent:
    consent = uow.consents.get(consent_id, for_update=for_update) \
        if valid_consent_id(consent_id) else None
    return check_standing(consent, rp_id, now)


class ConsentService:
    """The holder's side: withdrawal."""

    def __init__(self, uow_factory: ConsentsUnitOfWorkFactory, clock: Clock,
                 audit: AuditLog) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    def withdraw(self, der: bytes) -> Consent:
        with self._uow() as uow:
            now = self._clock.now()
            signature = verify_holder_signature(uow, der)
            withdrawal = ConsentWithdrawal.parse(signature.content)
            cert = _signing_certificate(signature)
            consent = uow.consents.get(withdrawal.consent_id, for_update=True)
            if consent is None or consent.resident_id != cert.resident_id:
                raise ConsentNotFound("no such consent of this holder")
            if not signed_while_valid(signature, now):
                raise ConsentSignerRefused("the signing time is missing or outside the "
                                           "certificate's validity", serial=cert.serial)
            if consent.withdrawn_at is not None:
                raise ConsentAlreadyWithdrawn("the consent is already withdrawn",
                                              consent=consent.id)
            consent.withdrawn_at = now
            self._audit.record(uow, actor=f"holder:{consent.resident_id}",
                               action="consent.withdrawn", subject=consent.id,
                               payload={"relying_party": consent.relying_party_id,
                                        "signer": cert.serial})
            uow.commit()
        return consent
