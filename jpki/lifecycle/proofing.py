"""Identity-proofing records: single-use and short-lived (reference §5). The counter records
them (jpki.registry.counter); issuance, renewal and a PIN reset each consume one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from jpki.access.principals import Principal
from jpki.errors import PolicyViolation
from jpki.model import ProofingFacts, ProofingRecord


class ProofingRequired(PolicyViolation):
    code = "proofing.required"
    title = "A valid identity-proofing record is required"


PROOFING_LIFETIME = timedelta(hours=2)

P = TypeVar("P", ProofingRecord, ProofingFacts)


def proofing_key(proofing_id: str | None) -> str:
    """The id a proofing record is looked up by; empty when none was given (refused)."""
    return proofing_id[:64] if proofing_id else ""


def check_proofing(record: P | None, actor: Principal, resident_id: str,
                   now: datetime) -> P:
    """The rule on a record already read (locked) in the caller's transaction: the same
    refusals whether it is the entity (:func:`consume_proofing`) or issuance's plain value
    (jpki.issuance.card, which marks it used with one statement per batch)."""
    if record is None or record.resident_id != resident_id or record.station != actor.actor:
        # One answer for all three: a station cannot probe other stations' records.
        raise ProofingRequired("no such proofing record for this resident and station")
    if record.used_at is not None:
        raise ProofingRequired("this proofing record has been used already")
    if now >= record.expires_at:
        raise ProofingRequired("this proofing record has expired")
    return record


def require_proofing_id(proofing_id: str | None) -> str:
    if not proofing_id:
        raise ProofingRequired("record the identity proofing first (proofing_id)")
    return proofing_key(proofing_id)


class ProofingReads(Protocol):
    def get(self, proofing_id: str, *, for_update: bool = False) -> ProofingRecord | None: ...


class ProofingWork(Protocol):
    """What :func:`consume_proofing` reads and changes (architecture §2.3: narrow ports)."""

    @property
    def proofings(self) -> ProofingReads: ...


def consume_proofing(uow: ProofingWork, actor: Principal, proofing_id: str | None,
                     resident_id: str, purpose: str, now: datetime) -> ProofingRecord:
    """Check and use up a proofing record inside the caller's transaction."""
    key = require_proofing_id(proofing_id)
    record = check_proofing(uow.proofings.get(key, for_update=True), actor, resident_id, now)
    record.used_at = now
    record.used_for = purpose
    return record
