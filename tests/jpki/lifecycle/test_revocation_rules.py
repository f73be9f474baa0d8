"""The revocation transitions of jpki.lifecycle.revocation, one rule per test (RFC 5280 §5.3.1,
reference §3.2), on plain certificates with an in-memory unit of work and audit log: what the
rule does to the certificate, to its CRL entry, to its audit record and to linked mobile
certificates. (The same rules through the service, the store and the audit chain:
tests/jpki/revocation/test_revocation_audit.py.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jpki.access.principals import Principal
from jpki.errors import HoldNotReleasable
from jpki.lifecycle.crl_entries import crl_entry
from jpki.lifecycle.revocation import (
    RevocationResult,
    apply_revocation,
    release_hold,
    resulting_reason,
    revoke_in,
)
from jpki.model import Certificate, CertKind, CertStatus, RegistrySource, RevocationReason

R = RevocationReason
NOW = datetime(2026, 11, 27, 1, 0, 0, tzinfo=UTC)
DEPARTURE = NOW + timedelta(days=10)  # an emigration revocation scheduled for this instant
ACTOR = Principal.local_operator("test")


def cert(kind: CertKind = CertKind.CARD_SIGN, *, id_: int | None = 1, serial: str = "a1",
         not_after: datetime = NOW + timedelta(days=365), linked_id: int | None = None,
         status: CertStatus = CertStatus.ISSUED) -> Certificate:
    return Certificate(
        id=id_, serial=serial, kind=kind, resident_id="r1", card_id=1, ca_generation_id=1,
        status=status, not_before=NOW - timedelta(days=30), not_after=not_after, shard="131016",
        registry_source=RegistrySource.JUMINHYO, public_key_sha256="00" * 32,
        created_at=NOW, updated_at=NOW, linked_id=linked_id)


def revoked(reason: RevocationReason, at: datetime, recorded_at: datetime = NOW,
            **kwargs: Any) -> Certificate:
    c = cert(**kwargs)
    assert apply_revocation(c, reason, at, recorded_at)
    return c


@dataclass
class Record:
    uow: object
    actor: str
    action: str
    subject: str
    payload: Mapping[str, Any]


@dataclass
class FakeAudit:
    records: list[Record] = field(default_factory=list)

    def record(self, uow: object, *, actor: str, action: str, subject: str,
               payload: Mapping[str, Any] | None = None) -> None:
        self.records.append(Record(uow, actor, action, subject, dict(payload or {})))


@dataclass
class FakeCertificates:
    linked: dict[int, list[Certificate]] = field(default_factory=dict)

    def linked_to(self, cert_id: int) -> Sequence[Certificate]:
        return self.linked.get(cert_id, [])


@dataclass
class FakeUow:
    certificates: FakeCertificates = field(default_factory=FakeCertificates)


def revoke(c: Certificate, reason: RevocationReason, at: datetime = NOW,
           recorded_at: datetime = NOW, uow: FakeUow | None = None,
           audit: FakeAudit | None = None, cause: str = "request") -> RevocationResult:
    return revoke_in(uow or FakeUow(), audit or FakeAudit(), ACTOR, c,  # type: ignore[arg-type]
                     reason, at, recorded_at, cause=cause)


# --- a first revocation -----------------------------------------------------------------------


def test_a_first_revocation_sets_date_reason_record_time_and_crl_entry():
    c = cert()
    assert apply_revocation(c, R.KEY_COMPROMISE, NOW, NOW + timedelta(seconds=1))
    assert (c.revoked_at, c.revocation_reason) == (NOW, R.KEY_COMPROMISE)
    assert c.revocation_recorded_at == NOW + timedelta(seconds=1)
    assert c.crl_entry == crl_entry("a1", NOW, R.KEY_COMPROMISE)


def test_remove_from_crl_is_not_a_revocation_reason():
    c = cert()
    with pytest.raises(ValueError, match=r"^removeFromCRL is not a revocation reason$"):
        apply_revocation(c, R.REMOVE_FROM_CRL, NOW, NOW)
    assert c.revoked_at is None


def test_a_reason_without_a_date_is_treated_as_not_revoked():
    """A certificate whose row lacks either half of a revocation is revoked afresh."""
    c = cert()
    c.revocation_reason = R.SUPERSEDED
    assert apply_revocation(c, R.KEY_COMPROMISE, NOW, NOW)
    assert (c.revoked_at, c.revocation_reason) == (NOW, R.KEY_COMPROMISE)


# --- an abandoned certificate ---------------------------------------------------------------


def test_revoking_an_abandoned_certificate_changes_and_audits_nothing():
    """An abandoned intent is already reported revoked (unspecified: destroyed before delivery,
    reference §3.2); a later revocation — even keyCompromise — leaves it and audits nothing."""
    c = cert(status=CertStatus.ABANDONED)
    c.revoked_at, c.revocation_reason = NOW - timedelta(days=1), R.UNSPECIFIED
    c.revocation_recorded_at = NOW - timedelta(days=1)
    audit = FakeAudit()
    result = revoke(c, R.KEY_COMPROMISE, audit=audit)
    assert not result.changed and result.all() == []
    assert (c.revoked_at, c.revocation_reason) == (NOW - timedelta(days=1), R.UNSPECIFIED)
    assert c.revocation_recorded_at == NOW - timedelta(days=1)
    assert audit.records == []


# --- revoking again -------------------------------------------------------------------------


def test_revoking_again_with_another_reason_changes_nothing():
    c = revoked(R.CESSATION_OF_OPERATION, NOW - timedelta(days=1))
    before = c.crl_entry
    assert not apply_revocation(c, R.SUPERSEDED, NOW, NOW)
    assert (c.revoked_at, c.revocation_reason) == (NOW - timedelta(days=1),
                                                   R.CESSATION_OF_OPERATION)
    assert c.crl_entry == before and c.revocation_recorded_at == NOW


def test_a_hold_made_permanent_keeps_the_hold_date():
    c = revoked(R.CERTIFICATE_HOLD, NOW - timedelta(days=3), NOW - timedelta(days=3))
    assert apply_revocation(c, R.SUPERSEDED, NOW, NOW)
    assert (c.revoked_at, c.revocation_reason) == (NOW - timedelta(days=3), R.SUPERSEDED)
    assert c.revocation_recorded_at == NOW  # what a delta CRL keys on
    assert c.crl_entry == crl_entry("a1", NOW - timedelta(days=3), R.SUPERSEDED)


def test_a_second_hold_changes_nothing():
    c = revoked(R.CERTIFICATE_HOLD, NOW - timedelta(days=3), NOW - timedelta(days=3))
    assert not apply_revocation(c, R.CERTIFICATE_HOLD, NOW, NOW)
    assert c.revocation_recorded_at == NOW - timedelta(days=3)


def test_a_compromise_found_later_replaces_the_reason_not_the_date():
    c = revoked(R.AFFILIATION_CHANGED, NOW - timedelta(days=3), NOW - timedelta(days=3))
    assert apply_revocation(c, R.KEY_COMPROMISE, NOW, NOW)
    assert (c.revoked_at, c.revocation_reason) == (NOW - timedelta(days=3), R.KEY_COMPROMISE)
    assert c.crl_entry == crl_entry("a1", NOW - timedelta(days=3), R.KEY_COMPROMISE)
    assert not apply_revocation(c, R.KEY_COMPROMISE, NOW, NOW)  # found twice: once


@pytest.mark.parametrize(("old", "requested", "expected"), [
    (None, R.SUPERSEDED, R.SUPERSEDED),
    (R.CERTIFICATE_HOLD, R.SUPERSEDED, R.SUPERSEDED),
    (R.CERTIFICATE_HOLD, R.CERTIFICATE_HOLD, R.CERTIFICATE_HOLD),
    (R.CERTIFICATE_HOLD, R.KEY_COMPROMISE, R.KEY_COMPROMISE),
    (R.SUPERSEDED, R.KEY_COMPROMISE, R.KEY_COMPROMISE),
    (R.KEY_COMPROMISE, R.SUPERSEDED, R.KEY_COMPROMISE),
    (R.KEY_COMPROMISE, R.CERTIFICATE_HOLD, R.KEY_COMPROMISE),
    (R.SUPERSEDED, R.CERTIFICATE_HOLD, R.SUPERSEDED),
    (R.SUPERSEDED, R.CESSATION_OF_OPERATION, R.SUPERSEDED),
])
def test_resulting_reason(old, requested, expected):
    assert resulting_reason(old, requested) is expected


# --- a scheduled revocation brought forward -------------------------------------------------


def test_a_scheduled_revocation_is_brought_forward_and_keeps_its_reason():
    """Emigration schedules the signing certificate's revocation for the departure date
    (reference §3.2); an earlier revocation brings the date forward, and the certificate keeps
    the reason it was scheduled with."""
    c = revoked(R.CESSATION_OF_OPERATION, DEPARTURE)
    later = NOW + timedelta(hours=1)
    assert apply_revocation(c, R.SUPERSEDED, later, later)
    assert (c.revoked_at, c.revocation_reason) == (later, R.CESSATION_OF_OPERATION)
    assert c.revocation_recorded_at == later
    assert c.crl_entry == crl_entry("a1", later, R.CESSATION_OF_OPERATION)


def test_a_scheduled_revocation_is_never_pushed_back():
    c = revoked(R.CESSATION_OF_OPERATION, DEPARTURE)
    assert not apply_revocation(c, R.SUPERSEDED, DEPARTURE + timedelta(days=1), NOW)
    assert c.revoked_at == DEPARTURE


def test_the_same_instant_again_changes_nothing():
    c = revoked(R.CESSATION_OF_OPERATION, DEPARTURE)
    assert not apply_revocation(c, R.SUPERSEDED, DEPARTURE, NOW)
    assert c.revoked_at == DEPARTURE


def test_a_revocation_in_effect_is_never_backdated():
    """Only a date still in the future is brought forward: a revocation that has taken effect
    keeps its date, whatever earlier date a later request names."""
    c = revoked(R.CESSATION_OF_OPERATION, NOW - timedelta(days=1))
    assert not apply_revocation(c, R.SUPERSEDED, NOW - timedelta(days=2), NOW)
    assert c.revoked_at == NOW - timedelta(days=1)


def test_a_revocation_taking_effect_at_this_instant_is_not_brought_forward():
    """revoked_at == recorded_at: already in effect, not scheduled (`>`, not `>=`)."""
    c = revoked(R.CESSATION_OF_OPERATION, NOW + timedelta(hours=1))
    at = NOW + timedelta(hours=1)
    assert not apply_revocation(c, R.SUPERSEDED, NOW, at)
    assert c.revoked_at == at


def test_brought_forward_and_compromised_at_once():
    c = revoked(R.CESSATION_OF_OPERATION, DEPARTURE)
    assert apply_revocation(c, R.KEY_COMPROMISE, NOW, NOW)
    assert (c.revoked_at, c.revocation_reason) == (NOW, R.KEY_COMPROMISE)
    assert c.crl_entry == crl_entry("a1", NOW, R.KEY_COMPROMISE)


def test_linked_mobile_certificates_follow_a_card_revocation_brought_forward():
    """A mobile certificate is revoked with its card certificate (reference §2), with the card's
    resulting reason and date — not the reason the later request named."""
    card = revoked(R.CESSATION_OF_OPERATION, DEPARTURE)
    mobile = revoked(R.CESSATION_OF_OPERATION, DEPARTURE, kind=CertKind.MOBILE_SIGN, id_=2,
                     serial="b2", linked_id=1)
    uow = FakeUow(FakeCertificates({1: [mobile]}))
    result = revoke(card, R.SUPERSEDED, uow=uow)
    assert result.changed and result.reason is R.CESSATION_OF_OPERATION
    assert result.revoked_at == NOW
    (m,) = result.cascaded
    assert (m.serial, m.reason, m.revoked_at, m.changed) == ("b2", R.CESSATION_OF_OPERATION,
                                                             NOW, True)
    assert (mobile.revoked_at, mobile.revocation_reason) == (NOW, R.CESSATION_OF_OPERATION)
    assert [r.serial for r in result.all()] == ["a1", "b2"]


def test_an_unrevoked_mobile_certificate_takes_the_card_reason_not_the_requested_one():
    card = revoked(R.CESSATION_OF_OPERATION, DEPARTURE)
    mobile = cert(CertKind.MOBILE_SIGN, id_=2, serial="b2", linked_id=1)
    revoke(card, R.SUPERSEDED, uow=FakeUow(FakeCertificates({1: [mobile]})))
    assert (mobile.revoked_at, mobile.revocation_reason) == (NOW, R.CESSATION_OF_OPERATION)


def test_a_mobile_certificate_takes_the_hold_date_of_a_card_hold_made_permanent():
    held_at = NOW - timedelta(days=2)
    card = revoked(R.CERTIFICATE_HOLD, held_at, held_at)
    mobile = cert(CertKind.MOBILE_SIGN, id_=2, serial="b2", linked_id=1)
    revoke(card, R.SUPERSEDED, uow=FakeUow(FakeCertificates({1: [mobile]})))
    assert (mobile.revoked_at, mobile.revocation_reason) == (held_at, R.SUPERSEDED)


# --- the audit record and the mobile cascade ------------------------------------------------


def test_the_revocation_audit_record_names_kind_reasons_date_and_cause():
    audit = FakeAudit()
    c = cert(kind=CertKind.CARD_AUTH)
    revoke(c, R.KEY_COMPROMISE, at=NOW, audit=audit, cause="resident event")
    (rec,) = audit.records
    assert (rec.actor, rec.action, rec.subject) == (ACTOR.actor, "certificate.revoked", "a1")
    assert rec.payload == {"kind": "card_auth", "reason": "keyCompromise",
                           "revoked_at": NOW.isoformat(), "revocation_reason": "keyCompromise",
                           "cause": "resident event"}


def test_the_audit_record_of_a_hold_made_permanent_keeps_the_hold_date():
    """"reason" is what was asked; "revoked_at" and "revocation_reason" the resulting state,
    which `jpki audit verify --state` replays (jpki.lifecycle.audit_state)."""
    held_at = NOW - timedelta(days=2)
    c = revoked(R.CERTIFICATE_HOLD, held_at, held_at)
    audit = FakeAudit()
    revoke(c, R.SUPERSEDED, audit=audit)
    (rec,) = audit.records
    assert rec.payload["reason"] == "superseded"
    assert rec.payload["revocation_reason"] == "superseded"
    assert rec.payload["revoked_at"] == held_at.isoformat()


def test_the_audit_record_of_a_revocation_brought_forward_keeps_the_reason():
    c = revoked(R.CESSATION_OF_OPERATION, DEPARTURE)
    audit = FakeAudit()
    revoke(c, R.SUPERSEDED, audit=audit)
    (rec,) = audit.records
    assert (rec.payload["reason"], rec.payload["revocation_reason"]) == (
        "superseded", "cessationOfOperation")
    assert rec.payload["revoked_at"] == NOW.isoformat()


def test_nothing_changed_nothing_audited_nothing_cascaded():
    card = revoked(R.SUPERSEDED, NOW - timedelta(days=1))
    mobile = cert(CertKind.MOBILE_AUTH, id_=2, serial="b2", linked_id=1)
    audit = FakeAudit()
    result = revoke(card, R.AFFILIATION_CHANGED, uow=FakeUow(FakeCertificates({1: [mobile]})),
                    audit=audit)
    assert (result.changed, result.cascaded, audit.records) == (False, (), [])
    assert (result.reason, result.revoked_at) == (R.SUPERSEDED, NOW - timedelta(days=1))
    assert mobile.revoked_at is None


def test_the_cascade_revokes_linked_mobile_certificates_and_audits_each():
    card = cert(CertKind.CARD_AUTH)
    mobile = cert(CertKind.MOBILE_AUTH, id_=2, serial="b2", linked_id=1)
    audit = FakeAudit()
    uow = FakeUow(FakeCertificates({1: [mobile]}))
    result = revoke(card, R.KEY_COMPROMISE, uow=uow, audit=audit)
    assert [r.subject for r in audit.records] == ["a1", "b2"]
    assert all(r.uow is uow for r in audit.records)  # one transaction: the caller's
    assert audit.records[1].payload == {
        "kind": "mobile_auth", "reason": "keyCompromise", "revoked_at": NOW.isoformat(),
        "revocation_reason": "keyCompromise", "cause": "linked card certificate a1"}
    assert result.cascaded[0].reason is R.KEY_COMPROMISE


def test_the_cascade_takes_a_mobile_certificate_expiring_at_this_instant_but_no_expired_one():
    """`not_after >= recorded_at`: a certificate is valid through its notAfter second (RFC 5280
    §4.1.2.5), so one expiring now is still revoked; one already expired is left alone."""
    card = cert(CertKind.CARD_SIGN)
    at_edge = cert(CertKind.MOBILE_SIGN, id_=2, serial="b2", linked_id=1, not_after=NOW)
    expired = cert(CertKind.MOBILE_SIGN, id_=3, serial="b3", linked_id=1,
                   not_after=NOW - timedelta(seconds=1))
    result = revoke(card, R.SUPERSEDED, uow=FakeUow(FakeCertificates({1: [at_edge, expired]})))
    assert [r.serial for r in result.cascaded] == ["b2"]
    assert at_edge.revocation_reason is R.SUPERSEDED and expired.revoked_at is None


def test_a_mobile_certificate_cascades_to_nothing():
    mobile = cert(CertKind.MOBILE_SIGN, id_=2, serial="b2", linked_id=1)
    other = cert(CertKind.MOBILE_AUTH, id_=3, serial="b3", linked_id=2)
    result = revoke(mobile, R.SUPERSEDED, uow=FakeUow(FakeCertificates({2: [other]})))
    assert result.cascaded == () and other.revoked_at is None


def test_an_unsaved_card_certificate_cascades_to_nothing():
    card = cert(CertKind.CARD_SIGN, id_=None)
    mobile = cert(CertKind.MOBILE_SIGN, id_=2, serial="b2", linked_id=None)
    uow = FakeUow(FakeCertificates({None: [mobile]}))  # type: ignore[dict-item]
    assert revoke(card, R.SUPERSEDED, uow=uow).cascaded == ()
    assert mobile.revoked_at is None


# --- releasing a hold -----------------------------------------------------------------------


def test_a_mobile_hold_is_released():
    c = revoked(R.CERTIFICATE_HOLD, NOW - timedelta(days=1), kind=CertKind.MOBILE_AUTH)
    release_hold(c, NOW)
    assert (c.revoked_at, c.revocation_reason, c.crl_entry) == (None, None, None)
    assert c.revocation_recorded_at == NOW and c.hold_released_at == NOW


def test_a_card_hold_is_never_released():
    c = revoked(R.CERTIFICATE_HOLD, NOW - timedelta(days=1), kind=CertKind.CARD_AUTH)
    with pytest.raises(HoldNotReleasable) as info:
        release_hold(c, NOW)
    assert info.value.detail == "a card certificate's hold is never released"
    assert info.value.context == {"serial": "a1"}
    assert c.revocation_reason is R.CERTIFICATE_HOLD


def test_only_a_hold_is_released():
    c = revoked(R.SUPERSEDED, NOW - timedelta(days=1), kind=CertKind.MOBILE_AUTH)
    with pytest.raises(HoldNotReleasable) as info:
        release_hold(c, NOW)
    assert info.value.detail == "the certificate is not on hold"
    assert info.value.context == {"serial": "a1"}
    assert c.revocation_reason is R.SUPERSEDED
