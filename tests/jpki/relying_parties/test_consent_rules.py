"""The consent rules of jpki.relying_parties.consents one by one (reference §3.4; the module
docstring's checks 3-7, standing consents and withdrawal), with an in-memory unit of work and the
CMS verification replaced by the signature it would return: which refusal, with which detail and
context, and what is stored and audited. (The same rules end to end, with real CMS signatures
over HTTP: tests/api/test_relying_parties.py.)"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import DuplicateResource, JpkiError
from jpki.model import Certificate, CertKind, CertStatus, Consent, RegistrySource, RevocationReason
from jpki.protocol.consent import ConsentInvalid
from jpki.relying_parties import consents
from jpki.relying_parties.consents import (
    ConsentAlreadyWithdrawn,
    ConsentExpired,
    ConsentForAnotherParty,
    ConsentNotFound,
    ConsentPurposeMismatch,
    ConsentReplayed,
    ConsentService,
    ConsentSignerRefused,
    ConsentSignerRevoked,
    ConsentWithdrawn,
    check_standing,
    load_standing_consent,
    record_consent,
    valid_consent_id,
)
from jpki.relying_parties.service import PurposeUndeclared, RpContext

NOW = datetime(2026, 11, 27, 1, 0, 0, tzinfo=UTC)
RP = "rp_0123456789abcdef"
NONCE = "n0nce-of-the-rp_0001"
MAX = timedelta(days=365)
RP_PRINCIPAL = Principal(actor=f"client:{RP}", kind=PrincipalKind.RELYING_PARTY,
                         scopes=frozenset({"basic4"}))
CTX = RpContext(grant=authorize(RP_PRINCIPAL, Operation.RP_BASIC4), rp_id=RP,
                purposes=("account_opening", "age_check"))


def certificate(kind: CertKind = CertKind.CARD_SIGN, **changes: Any) -> Certificate:
    cert = Certificate(
        id=7, serial="5a17", kind=kind, resident_id="r1", card_id=1, ca_generation_id=1,
        status=CertStatus.ISSUED, not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=300), shard="132217",
        registry_source=RegistrySource.JUMINHYO, public_key_sha256="00" * 32,
        created_at=NOW, updated_at=NOW)
    return replace(cert, **changes)


@dataclass
class Signature:
    """What verify_holder_signature returns, for a CMS that verified."""

    content: bytes
    certificate: Certificate | None
    signed_at: datetime | None


def statement(**changes: Any) -> bytes:
    body: dict[str, Any] = {"type": "jpki-rp-consent/1", "relying_party": RP,
                            "items": ["address", "name"], "purpose": "account_opening",
                            "nonce": NONCE, "expires_at": "2027-11-27T00:00:00Z"}
    body.update(changes)
    return json.dumps(body).encode()


@dataclass
class FakeConsents:
    stored: dict[str, Consent] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    race: bool = False  # another submission of the same nonce commits first
    asked: list[tuple[str, bool]] = field(default_factory=list)

    def nonce_used(self, digest: str) -> bool:
        return digest in self.used

    def add(self, consent: Consent) -> None:
        if self.race:
            raise DuplicateResource("nonce")
        self.stored[consent.id] = consent

    def get(self, consent_id: str, *, for_update: bool = False) -> Consent | None:
        self.asked.append((consent_id, for_update))
        return self.stored.get(consent_id)


@dataclass
class FakeUow:
    consents: FakeConsents = field(default_factory=FakeConsents)
    committed: bool = False

    def commit(self) -> None:
        self.committed = True

    def __enter__(self) -> FakeUow:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass
class FakeAudit:
    records: list[dict[str, Any]] = field(default_factory=list)

    def record(self, uow: object, *, actor: str, action: str, subject: str,
               payload: dict[str, Any] | None = None) -> None:
        self.records.append({"uow": uow, "actor": actor, "action": action, "subject": subject,
                             "payload": payload})


@pytest.fixture
def signed(monkeypatch):
    """Make the next verified CMS be this content, signed by this certificate at this time."""
    def sign(content: bytes, cert: Certificate | None = None,
             at: datetime | None = NOW - timedelta(minutes=1)) -> None:
        sig = Signature(content, certificate() if cert is None else cert, at)
        monkeypatch.setattr(consents, "verify_holder_signature", lambda uow, der: sig)
    return sign


def record(uow: FakeUow | None = None, audit: FakeAudit | None = None,
           purpose: str = "account_opening", now: datetime = NOW) -> Consent:
    return record_consent(uow or FakeUow(), audit or FakeAudit(), CTX,  # type: ignore[arg-type]
                          b"cms", purpose, now, MAX)


def refusal(kind: type[JpkiError], **kwargs: Any) -> tuple[str, dict[str, Any]]:
    with pytest.raises(kind) as caught:
        record(**kwargs)
    assert type(caught.value) is kind
    return caught.value.detail, caught.value.context


# --- recording: checks 3-7 -------------------------------------------------------------------


def test_a_consent_is_stored_and_audited_as_signed(signed):
    signed(statement(), at=NOW + timedelta(minutes=2))  # a little ahead: stored as now
    uow, audit = FakeUow(), FakeAudit()
    consent = record(uow, audit)
    assert valid_consent_id(consent.id) and uow.consents.stored == {consent.id: consent}
    assert (consent.resident_id, consent.relying_party_id, consent.items, consent.purpose) == (
        "r1", RP, "name address", "account_opening")
    assert consent.nonce_digest == hashlib.sha256(NONCE.encode()).hexdigest()
    assert consent.expires_at == datetime(2027, 11, 27, tzinfo=UTC)
    assert (consent.signed_der, consent.signer_id, consent.signer_serial) == (b"cms", 7, "5a17")
    assert (consent.signed_at, consent.created_at, consent.withdrawn_at) == (NOW, NOW, None)
    (rec,) = audit.records
    assert rec == {"uow": uow, "actor": CTX.actor, "action": "consent.recorded",
                   "subject": consent.id,
                   "payload": {"relying_party": RP, "resident": "r1",
                               "items": ["name", "address"], "purpose": "account_opening",
                               "signer": "5a17", "expires_at": "2027-11-27T00:00:00+00:00"}}


def test_the_signing_time_is_stored_when_it_is_earlier(signed):
    signed(statement(), at=NOW - timedelta(minutes=1))
    assert record().signed_at == NOW - timedelta(minutes=1)


def test_an_unsaved_signer_is_stored_as_id_0(signed):
    signed(statement(), cert=certificate(id=None))
    assert record().signer_id == 0


def test_another_relying_party(signed):
    signed(statement(relying_party="rp_ffffffffffffffff"))
    assert refusal(ConsentForAnotherParty) == ("the consent names another relying party", {})


def test_an_undeclared_purpose(signed):
    signed(statement(purpose="marketing"))
    assert refusal(PurposeUndeclared, purpose="marketing")[1] == {"field": "purpose"}


def test_the_call_names_another_purpose(signed):
    signed(statement())
    assert refusal(ConsentPurposeMismatch, purpose="age_check") == (
        "the call's purpose must be the consented purpose", {"field": "purpose"})


def test_expired_at_its_expiry_instant(signed):
    signed(statement(expires_at="2026-11-27T01:00:00Z"))
    assert refusal(ConsentExpired) == ("the consent has expired", {})
    signed(statement(expires_at="2026-11-27T01:00:01Z"))
    assert record().expires_at == NOW + timedelta(seconds=1)


def test_at_most_the_maximum_lifetime(signed):
    signed(statement(expires_at=(NOW + MAX + timedelta(seconds=1)).isoformat()))
    assert refusal(ConsentInvalid) == ("a consent runs at most 365 days",
                                       {"field": "expires_at"})
    signed(statement(expires_at=(NOW + MAX).isoformat()))
    assert record().expires_at == NOW + MAX


@pytest.mark.parametrize("cert", [None, certificate(CertKind.CARD_AUTH),
                                  certificate(CertKind.MOBILE_AUTH)],
                         ids=["not ours", "card auth", "mobile auth"])
def test_only_a_signing_certificate_of_ours_may_sign(signed, monkeypatch, cert):
    sig = Signature(statement(), cert, NOW)
    monkeypatch.setattr(consents, "verify_holder_signature", lambda uow, der: sig)
    assert refusal(ConsentSignerRefused) == (
        "the statement must be signed with a card or phone signing certificate of this CA", {})


def test_a_mobile_signing_certificate_may_sign(signed):
    signed(statement(), cert=certificate(CertKind.MOBILE_SIGN))
    assert record().signer_serial == "5a17"


@pytest.mark.parametrize("changes", [
    {"revoked_at": NOW, "revocation_reason": RevocationReason.KEY_COMPROMISE},
    {"revoked_at": NOW - timedelta(days=1),
     "revocation_reason": RevocationReason.CERTIFICATE_HOLD},
    {"status": CertStatus.ABANDONED},
], ids=["revoked now", "held", "abandoned"])
def test_a_revoked_held_or_abandoned_signer(signed, changes):
    signed(statement(), cert=certificate(**changes))
    assert refusal(ConsentSignerRevoked) == (
        "the certificate that signed the consent is revoked", {"serial": "5a17"})


def test_a_revocation_scheduled_for_later_does_not_refuse_yet(signed):
    signed(statement(), cert=certificate(revoked_at=NOW + timedelta(days=1),
                                         revocation_reason=RevocationReason.SUPERSEDED))
    assert record().signer_serial == "5a17"


@pytest.mark.parametrize("at", [None, NOW + timedelta(minutes=6), NOW - timedelta(days=31)],
                         ids=["no signing time", "in the future", "before the certificate"])
def test_the_signing_time_must_be_inside_the_certificate_life(signed, at):
    signed(statement(), at=at)
    assert refusal(ConsentSignerRefused) == (
        "the signing time is missing or outside the certificate's validity",
        {"serial": "5a17"})


def test_a_nonce_counts_once(signed):
    signed(statement())
    uow = FakeUow()
    uow.consents.used.add(hashlib.sha256(NONCE.encode()).hexdigest())
    assert refusal(ConsentReplayed, uow=uow) == ("this consent was submitted before", {})
    racing = FakeUow(FakeConsents(race=True))
    audit = FakeAudit()
    assert refusal(ConsentReplayed, uow=racing, audit=audit) == (
        "this consent was submitted before", {})
    assert audit.records == []


# --- standing consents ---------------------------------------------------------------------------


def standing(**changes: Any) -> Consent:
    base = Consent(id="cs_" + "ab" * 12, resident_id="r1", relying_party_id=RP,
                   items="name", purpose="account_opening", nonce_digest="00",
                   expires_at=NOW + timedelta(days=1), signed_der=b"", signer_id=7,
                   signer_serial="5a17", signed_at=NOW, created_at=NOW)
    return replace(base, **changes)


def test_a_standing_consent_is_the_callers_not_withdrawn_not_expired():
    c = standing()
    assert check_standing(c, RP, NOW) is c
    for other, kind, detail, context in [
        (None, ConsentNotFound, "no such consent for this relying party", {}),
        (standing(relying_party_id="rp_ffffffffffffffff"), ConsentNotFound,
         "no such consent for this relying party", {}),
        (standing(withdrawn_at=NOW), ConsentWithdrawn, "the holder has withdrawn the consent",
         {"consent": c.id}),
        (standing(expires_at=NOW), ConsentExpired, "the consent has expired",
         {"consent": c.id}),
    ]:
        with pytest.raises(kind) as caught:
            check_standing(other, RP, NOW)
        assert (caught.value.detail, caught.value.context) == (detail, context)
    assert check_standing(standing(expires_at=NOW + timedelta(seconds=1)), RP, NOW)


def test_consent_ids_have_one_form():
    assert valid_consent_id("cs_" + "0a" * 12)
    for bad in ("cs_" + "0A" * 12, "cs_" + "0a" * 11, "cs_" + "0a" * 12 + "\n", 7, None):
        assert not valid_consent_id(bad)


def test_a_standing_consent_is_loaded_by_a_valid_id_only():
    c = standing()
    uow = FakeUow(FakeConsents(stored={c.id: c}))
    assert load_standing_consent(uow, RP, c.id, NOW, for_update=True) is c  # type: ignore[arg-type]
    assert uow.consents.asked == [(c.id, True)]
    assert load_standing_consent(uow, RP, c.id, NOW) is c  # type: ignore[arg-type]
    assert uow.consents.asked[-1] == (c.id, False)
    with pytest.raises(ConsentNotFound):
        load_standing_consent(uow, RP, "cs_nope", NOW)  # type: ignore[arg-type]
    assert len(uow.consents.asked) == 2  # a malformed id is never looked up


# --- withdrawal ---------------------------------------------------------------------------------


class Clock:
    def now(self) -> datetime:
        return NOW


def withdrawal(consent_id: str) -> bytes:
    return json.dumps({"type": "jpki-rp-consent-withdrawal/1", "consent_id": consent_id,
                       "nonce": NONCE}).encode()


def withdraw(uow: FakeUow, audit: FakeAudit | None = None) -> Consent:
    service = ConsentService(lambda: uow, Clock(), audit or FakeAudit())  # type: ignore[arg-type]
    return service.withdraw(b"cms")


def test_the_holder_withdraws_a_consent(signed):
    c = standing()
    signed(withdrawal(c.id))
    uow, audit = FakeUow(FakeConsents(stored={c.id: c})), FakeAudit()
    assert withdraw(uow, audit) is c
    assert c.withdrawn_at == NOW and uow.committed
    assert uow.consents.asked == [(c.id, True)]
    assert audit.records == [{"uow": uow, "actor": "holder:r1", "action": "consent.withdrawn",
                              "subject": c.id,
                              "payload": {"relying_party": RP, "signer": "5a17"}}]


def withdraw_refusal(uow: FakeUow, kind: type[JpkiError]) -> tuple[str, dict[str, Any]]:
    with pytest.raises(kind) as caught:
        withdraw(uow)
    assert not uow.committed
    return caught.value.detail, caught.value.context


def test_another_holders_or_a_missing_consent(signed):
    c = standing(resident_id="r2")
    signed(withdrawal(c.id))
    assert withdraw_refusal(FakeUow(FakeConsents(stored={c.id: c})), ConsentNotFound) == (
        "no such consent of this holder", {})
    assert withdraw_refusal(FakeUow(), ConsentNotFound) == ("no such consent of this holder", {})
    assert c.withdrawn_at is None


def test_withdrawing_twice(signed):
    c = standing(withdrawn_at=NOW - timedelta(days=1))
    signed(withdrawal(c.id))
    assert withdraw_refusal(FakeUow(FakeConsents(stored={c.id: c})), ConsentAlreadyWithdrawn) \
        == ("the consent is already withdrawn", {"consent": c.id})
    assert c.withdrawn_at == NOW - timedelta(days=1)


def test_a_withdrawal_signed_outside_the_certificate_life(signed):
    c = standing()
    signed(withdrawal(c.id), at=None)
    assert withdraw_refusal(FakeUow(FakeConsents(stored={c.id: c})), ConsentSignerRefused) == (
        "the signing time is missing or outside the certificate's validity", {"serial": "5a17"})
    assert c.withdrawn_at is None


def test_a_withdrawal_needs_a_signing_certificate(signed):
    c = standing()
    signed(withdrawal(c.id), cert=certificate(CertKind.CARD_AUTH))
    withdraw_refusal(FakeUow(FakeConsents(stored={c.id: c})), ConsentSignerRefused)
