"""Identity-proofing records: single-use and short-lived (reference §5). The counter records
them (jpki.registry.counter); issuance, renewal and a PIN reset each consume one."""

from __future__ import annotations

from datetime import datetime, timedelta

from jpki.access.principals import Principal
from jpki.errors import PolicyViolation
from jpki.model import ProofingRecord
from jpki.ports import UnitOfWork


class ProofingRequired(PolicyViolation):
    code = "proofing.required"
    title = "A valid identity-proofing record is required"


PROOFING_LIFETIME = timedelta(hours=2)


def consume_proofing(uow: UnitOfWork, actor: Principal, proofing_id: str | None,
                     resident_id: str, purpose: str, now: datetime) -> ProofingRecord:
    """Check and use up a proofing record inside the caller's transaction."""
    if not proofing_id:
        raise ProofingRequired("record the identity proofing first (proofing_id)")
    record = uow.proofings.get(proofing_id[:64], for_update=True)
    if record is None or record.resident_id != resident_id or record.station != actor.actor:
        # One answer for all three: a station cannot probe other stations' records.
        raise ProofingRequired("no such proofing record for this resident and station")
    if record.used_at is not None:
        raise ProofingRequired("this proofing record has been used already")
    if now >= record.expires_at:
        raise ProofingRequired("this proofing record has expired")
    record.used_at = now
    record.used_for = purpose
    return record
