"""The linkage rules of jpki.relying_parties.linkage one by one (reference §3.3), with an
in-memory unit of work and the CMS verification replaced by the signature it would return: the
old→new chain, the current serial, the signing↔auth sibling, the evidence each call needs and
what is audited. (The same rules end to end, with real CMS signatures over HTTP:
tests/api/test_relying_parties.py.)"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import InternalError, JpkiError
from jpki.model import Certificate, CertKind, CertStatus, Consent, RegistrySource, RevocationReason
from jpki.relying_parties import linkage
from jpki.relying_parties.consents import ConsentNotFound
from jpki.relying_parties.linkage import (
    MAX_CHAIN,
    LinkageAnswer,
    LinkageEvidenceMissing,
    LinkageEvidenceRefused,
    LinkageService,
    sibling_serial,
    successors_of,
)
from jpki.relying_parties.service import PurposeUndeclared, RpContext
from jpki.serials import InvalidSerial

NOW = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)
RP = "rp_0123456789abcdef"
PRINCIPAL = Principal(actor=f"client:{RP}", kind=PrincipalKind.RELYING_PARTY,
                      scopes=frozenset({"linkage"}))
CTX = RpContext(grant=authorize(PRINCIPAL, Operation.RP_LINKAGE), rp_id=RP,
                purposes=("account_opening",))
CMS = b"the cms the relying party verified"


def cert(id: int, serial: str, kind: CertKind = CertKind.CARD_SIGN, **changes: Any,
         ) -> Certificate:
    base = Certificate(
        id=id, serial=serial, kind=kind, resident_id="r1", card_id=1, ca_generation_id=1,
        status=CertStatus.ISSUED, not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=300), shard="132217",
        registry_source=RegistrySource.JUMINHYO, public_key_sha256="00" * 32,
        created_at=NOW, updated_at=NOW)
    return replace(base, **changes)


@dataclass
class FakeCertificates:
    by_id: dict[int, Certificate] = field(default_factory=dict)
    next_of: dict[int, int] = field(default_factory=dict)  # old id → new id
    asked: list[int] = field(default_factory=list)

    def get(self, cert_id: int) -> Certificate | None:
        return self.by_id.get(cert_id)

    def issued_successor_of(self, cert_id: int) -> Certificate | None:
        self.asked.append(cert_id)
        nxt = self.next_of.get(cert_id)
        return self.by_id.get(nxt) if nxt is not None else None


@dataclass
class FakeUow:
    certificates: FakeCertificates
    committed: bool = False

    def commit(self) -> None:
        self.committed = True

    def __enter__(self) -> FakeUow:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def line(*certs: Certificate) -> FakeUow:
    """Certificates linked old→new in the order given."""
    fake = FakeCertificates(by_id={c.id: c for c in certs if c.id is not None})
    for old, new in pairwise(certs):
        assert old.id is not None and new.id is not None
        fake.next_of[old.id] = new.id
    return FakeUow(fake)


@dataclass
class FakeAudit:
    records: list[dict[str, Any]] = field(default_factory=list)

    def record(self, uow: object, *, actor: str, action: str, subject: str,
               payload: dict[str, Any] | None = None) -> None:
        self.records.append({"uow": uow, "actor": actor, "action": action, "subject": subject,
                             "payload": payload})


class Clock:
    def now(self) -> datetime:
        return NOW


@dataclass
class Signature:
    """What verify_holder_signature returns for a CMS that verified."""

    signer_serial: str
    certificate: Certificate | None
    signed_at: datetime | None


@pytest.fixture
def signed(monkeypatch):
    def sign(signer: Certificate | None, serial: str | None = None,
             at: datetime | None = NOW - timedelta(minutes=1)) -> None:
        sig = Signature(serial or (signer.serial if signer else "ff"), signer, at)
        def verify(uow: object, der: bytes) -> Signature:
            # The signer is looked up in the call's own transaction.
            assert isinstance(uow, FakeUow) and der == CMS
            return sig
        monkeypatch.setattr(linkage, "verify_holder_signature", verify)
    return sign


def consent(signer_id: int = 1, **changes: Any) -> Consent:
    base = Consent(id="cs_" + "ab" * 12, resident_id="r1", relying_party_id=RP, items="name",
                   purpose="account_opening", nonce_digest="00",
                   expires_at=NOW + timedelta(days=1), signed_der=b"", signer_id=signer_id,
                   signer_serial="a1", signed_at=NOW, created_at=NOW)
    return replace(base, **changes)


@pytest.fixture
def consented(monkeypatch):
    asked: list[tuple[Any, ...]] = []

    def hold(held: Consent) -> list[tuple[Any, ...]]:
        def load(uow: object, rp_id: str, consent_id: str, now: datetime) -> Consent:
            assert isinstance(uow, FakeUow)  # read in the call's own transaction
            asked.append((rp_id, consent_id, now))
            if consent_id != held.id:
                raise ConsentNotFound("no such consent for this relying party")
            return held
        monkeypatch.setattr(linkage, "load_standing_consent", load)
        return asked
    return hold


def link(uow: FakeUow, serial: str, audit: FakeAudit | None = None, *,
         purpose: str = "account_opening", **evidence: Any) -> LinkageAnswer:
    service = LinkageService(lambda: uow, Clock(), audit or FakeAudit())  # type: ignore[arg-type]
    return service.link(CTX, purpose, serial, **evidence)


def refusal(kind: type[JpkiError], uow: FakeUow, serial: str, **kwargs: Any,
            ) -> tuple[str, dict[str, Any]]:
    audit = FakeAudit()
    with pytest.raises(kind) as caught:
        link(uow, serial, audit, **kwargs)
    assert type(caught.value) is kind
    assert audit.records == [] and not uow.committed
    return caught.value.detail, caught.value.context


def test_the_refusals_codes():
    assert (LinkageEvidenceMissing.code, LinkageEvidenceMissing.title) == (
        "linkage.evidence_missing",
        "Send the signature you verified (signed_data) or a consent (consent_id)")
    assert (LinkageEvidenceRefused.code, LinkageEvidenceRefused.title) == (
        "linkage.evidence_refused",
        "The evidence does not show a valid signature by this certificate")


# --- the old→new chain -------------------------------------------------------------------


def test_successors_are_followed_oldest_first():
    a, b, c = cert(1, "a1"), cert(2, "a2"), cert(3, "a3")
    uow = line(a, b, c)
    assert successors_of(uow, a) == [b, c]  # type: ignore[arg-type]
    assert uow.certificates.asked == [1, 2, 3]
    assert successors_of(uow, c) == []  # type: ignore[arg-type]


def test_a_cycle_ends_the_chain():
    a, b = cert(1, "a1"), cert(2, "a2")
    uow = line(a, b)
    uow.certificates.next_of[2] = 1  # b → a: corrupt data, never a loop
    assert successors_of(uow, a) == [b]  # type: ignore[arg-type]
    uow.certificates.next_of[2] = 2
    assert successors_of(uow, a) == [b]  # type: ignore[arg-type]


def test_an_unsaved_certificate_asks_for_id_0():
    uow = line(cert(1, "a1"))
    assert successors_of(uow, cert(None, "a0")) == []  # type: ignore[arg-type]
    assert uow.certificates.asked == [0]


def test_the_chain_is_bounded():
    certs = [cert(i, format(i, "x")) for i in range(1, MAX_CHAIN + 3)]
    uow = line(*certs)
    assert MAX_CHAIN == 64
    assert successors_of(uow, certs[0]) == certs[1:MAX_CHAIN + 1]  # type: ignore[arg-type]


def test_the_sibling_is_the_signing_auth_partner():
    sign, auth = cert(1, "a1", sibling_id=2), cert(2, "b2", CertKind.CARD_AUTH, sibling_id=1)
    uow = line(sign, auth)
    assert sibling_serial(uow, sign) == "b2"  # type: ignore[arg-type]
    assert sibling_serial(uow, None) is None  # type: ignore[arg-type]
    assert sibling_serial(uow, cert(3, "a3")) is None  # type: ignore[arg-type]
    assert sibling_serial(uow, cert(3, "a3", sibling_id=9)) is None  # type: ignore[arg-type]


# --- with a signature as evidence ----------------------------------------------------------


def test_renewed_twice_the_newest_is_current_with_its_sibling(signed):
    first = cert(1, "a1", sibling_id=11, **{"revoked_at": NOW - timedelta(days=1),
                                             "revocation_reason": RevocationReason.SUPERSEDED})
    second, third = cert(2, "a2"), cert(3, "a3", sibling_id=13)
    uow = line(first, second, third)
    uow.certificates.by_id[11] = cert(11, "b1", CertKind.CARD_AUTH)
    uow.certificates.by_id[13] = cert(13, "b3", CertKind.CARD_AUTH)
    signed(replace(first, revoked_at=None, revocation_reason=None),
           at=NOW - timedelta(days=2))  # signed before the revocation
    audit = FakeAudit()
    answer = link(uow, "0xA1", audit, signed_data=CMS)
    assert answer == LinkageAnswer(serial="a1", form="card", usage="sign", status="good",
                                   successors=["a2", "a3"], current_serial="a3", sibling="b1",
                                   current_sibling="b3")
    assert uow.committed
    assert audit.records == [{
        "uow": uow, "actor": CTX.actor, "action": "rp.linkage", "subject": "a1",
        "payload": {"relying_party": RP, "purpose": "account_opening", "current": "a3",
                    "evidence": "signature", "consent": None,
                    "evidence_sha256": hashlib.sha256(CMS).hexdigest()}}]


def test_a_certificate_with_no_successor_is_its_own_current(signed):
    only = cert(1, "a1", CertKind.MOBILE_AUTH, sibling_id=2)
    uow = line(only)
    uow.certificates.by_id[2] = cert(2, "b2", CertKind.MOBILE_SIGN)
    signed(only)
    assert link(uow, "a1", signed_data=CMS) == LinkageAnswer(
        serial="a1", form="mobile", usage="auth", status="good", successors=[],
        current_serial="a1", sibling="b2", current_sibling="b2")


@pytest.mark.parametrize("changes", [
    {"revoked_at": NOW, "revocation_reason": RevocationReason.KEY_COMPROMISE},
    {"revoked_at": NOW - timedelta(days=1), "revocation_reason": RevocationReason.CERTIFICATE_HOLD},
    {"not_after": NOW - timedelta(seconds=1)},
], ids=["revoked", "held", "expired"])
def test_a_chain_ending_in_an_invalid_certificate_has_no_current(signed, changes):
    first = cert(1, "a1", CertKind.MOBILE_SIGN)
    last = cert(2, "a2", CertKind.MOBILE_SIGN, sibling_id=3, **changes)
    uow = line(first, last)
    uow.certificates.by_id[3] = cert(3, "b3", CertKind.MOBILE_AUTH)
    signed(first)
    audit = FakeAudit()
    answer = link(uow, "a1", audit, signed_data=CMS)
    assert (answer.form, answer.usage, answer.successors, answer.current_serial,
            answer.current_sibling) == ("mobile", "sign", ["a2"], None, None)
    assert audit.records[0]["payload"]["current"] is None


def test_the_status_is_the_given_certificates_now(signed):
    held = cert(1, "a1", CertKind.CARD_AUTH, revoked_at=NOW - timedelta(days=1),
                revocation_reason=RevocationReason.CERTIFICATE_HOLD)
    uow = line(held)
    signed(held, at=NOW - timedelta(days=2))
    answer = link(uow, "a1", signed_data=CMS)
    assert (answer.status, answer.usage, answer.current_serial) == ("revoked", "auth", None)


def test_the_signature_must_be_by_the_certificate_asked_about(signed):
    signer = cert(1, "a1")
    uow = line(signer, cert(2, "a2"))
    signed(signer, serial="a1")
    detail = ("the signature was not made by this certificate while it was valid", {})
    assert refusal(LinkageEvidenceRefused, uow, "a2", signed_data=CMS) == detail
    signed(signer, at=None)
    assert refusal(LinkageEvidenceRefused, uow, "a1", signed_data=CMS) == detail
    signed(signer, at=NOW + timedelta(minutes=6))
    assert refusal(LinkageEvidenceRefused, uow, "a1", signed_data=CMS) == detail
    signed(None, serial="a1")  # a certificate we did not issue with that serial
    assert refusal(LinkageEvidenceRefused, uow, "a1", signed_data=CMS) == detail


def test_a_signature_made_after_the_revocation_does_not_count(signed):
    revoked = cert(1, "a1", revoked_at=NOW - timedelta(days=1),
                   revocation_reason=RevocationReason.KEY_COMPROMISE)
    signed(revoked, at=NOW - timedelta(hours=1))
    assert refusal(LinkageEvidenceRefused, line(revoked), "a1", signed_data=CMS)[0] == (
        "the signature was not made by this certificate while it was valid")


# --- evidence and call checks --------------------------------------------------------------


def test_exactly_one_kind_of_evidence(signed, consented):
    signed(cert(1, "a1"))
    consented(consent())
    detail = ("send exactly one of signed_data and consent_id", {"field": "evidence"})
    assert refusal(LinkageEvidenceMissing, line(cert(1, "a1")), "a1") == detail
    assert refusal(LinkageEvidenceMissing, line(cert(1, "a1")), "a1", signed_data=CMS,
                   consent_id=consent().id) == detail


def test_the_purpose_and_serial_are_checked_first(signed):
    signed(cert(1, "a1"))
    assert refusal(PurposeUndeclared, line(cert(1, "a1")), "a1", purpose="marketing",
                   signed_data=CMS)[1] == {"field": "purpose"}
    with pytest.raises(InvalidSerial):
        link(line(cert(1, "a1")), "zz", signed_data=CMS)


def test_the_grant_must_be_for_linkage():
    status = RpContext(grant=authorize(replace(PRINCIPAL, scopes=frozenset({"status"})),
                                       Operation.RP_STATUS), rp_id=RP,
                       purposes=("account_opening",))
    service = LinkageService(lambda: line(), Clock(), FakeAudit())  # type: ignore[arg-type]
    with pytest.raises(InternalError):
        service.link(status, "account_opening", "a1", signed_data=CMS)  # type: ignore[arg-type]


# --- with a consent as evidence ------------------------------------------------------------


def test_a_consent_covers_its_signer_and_the_signers_successors(consented):
    signer, second, third = cert(1, "a1"), cert(2, "a2", sibling_id=9), cert(3, "a3")
    uow = line(signer, second, third)
    uow.certificates.by_id[9] = cert(9, "b9", CertKind.CARD_AUTH)
    held = consent(signer_id=1)
    asked = consented(held)
    audit = FakeAudit()
    answer = link(uow, "a2", audit, consent_id=held.id)
    assert asked == [(RP, held.id, NOW)]
    assert (answer.serial, answer.successors, answer.current_serial, answer.sibling) == (
        "a2", ["a3"], "a3", "b9")
    assert audit.records[0]["subject"] == "a2"
    assert audit.records[0]["payload"] == {
        "relying_party": RP, "purpose": "account_opening", "current": "a3",
        "evidence": "consent", "consent": held.id, "evidence_sha256": None}
    assert link(line(signer, second, third), "a1", consent_id=held.id).successors == [
        "a2", "a3"]
    assert link(line(signer, second, third), "a3", consent_id=held.id).successors == []


def test_a_consent_does_not_cover_other_certificates(consented):
    signer, second = cert(1, "a1"), cert(2, "a2")
    predecessor, unrelated = cert(5, "a5"), cert(6, "a6")
    uow = line(predecessor, signer, second)
    uow.certificates.by_id[6] = unrelated
    consented(consent(signer_id=1))
    detail = ("the consent does not cover this certificate", {})
    for serial in ("a5", "a6", "ff"):
        assert refusal(LinkageEvidenceRefused, uow, serial, consent_id=consent().id) == detail


def test_a_consent_whose_signer_is_gone(consented):
    consented(consent(signer_id=42))
    assert refusal(LinkageEvidenceRefused, line(cert(1, "a1")), "a1",
                   consent_id=consent().id) == (
        "the consent does not cover this certificate", {})


def test_a_consent_the_relying_party_does_not_hold(consented):
    consented(consent())
    assert refusal(ConsentNotFound, line(cert(1, "a1")), "a1", consent_id="cs_" + "cd" * 12) \
        == ("no such consent for this relying party", {})
