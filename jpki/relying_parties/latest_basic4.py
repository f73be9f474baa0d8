"""The latest basic 4 information, under a holder's consent (最新の利用者情報（基本4情報）提供;
reference §3.4; POST /v1/basic4, scope ``basic4``).

A relying party either submits a consent the holder signed (jpki.relying_parties.consents: verified,
stored) or
names one it holds; both return **only the consented items** of the holder's current resident
record — which a move, a name change or a correction has updated since the consent was signed —
and the serial of the holder's **current signing certificate**:

- from the certificate that signed the consent, follow the old→new links
(jpki.relying_parties.linkage) to the
  newest issued one; if it is valid now, that is the current signing certificate;
- a consent signed with the phone whose mobile line has ended (the phone was not re-enrolled
  after a move) falls back to the line of the card signing certificate the mobile one was
  linked to;
- otherwise there is none, and nothing is returned: J-LIS returns nothing while the signing
  certificate is revoked and no new one has been issued (§3.4).

**Not available** — ``basic4.not_available`` (404), one answer with one text for every case: no
valid current signing certificate, the resident record ended (death), and a resident under **DV
support measures** (architecture §4), who is never disclosed. The DV case is additionally audited
under its own action, ``basic4.withheld_dv``, in a unit of work of its own; the answer and the
generic refusal record are the same as for the other cases, so the relying party cannot tell
why. A refused call stores nothing, not even a newly submitted consent.

Every answer is audited (``basic4.provided``: relying party, resident id, consent, items,
purpose, current serial) before anything is returned; never the values themselves. A new consent
is stored and audited in the transaction that reads the record. A standing one is read — the
consent under a lock, so that a withdrawal committed in between still refuses the call — and
audited in the transaction of a group commit shared with concurrent calls (jpki.group_audit):
the consent, the resident record and the signing certificate in one statement
(``consents.standing``), and only a line that was renewed, or a phone's line that ended, walked
further. So the consent is checked on every call, in the transaction that records the
disclosure: a withdrawal takes effect at once. The HTTP layer submits that work to the group
commit's writer without lending the call a thread (:meth:`LatestBasic4Service.provide_standing`,
api.rp_calls) and answers once the record has committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal, NoReturn

from jpki.access.authz import Operation
from jpki.audit import AuditLog, JsonValue
from jpki.errors import InvalidInput, NotFound
from jpki.group_audit import Check, GroupAudit
from jpki.model import Certificate, Consent, ResidentStatus, StandingConsent
from jpki.ports import Clock, DisclosureReads, LineReads
from jpki.relying_parties.consents import (
    ConsentPurposeMismatch,
    check_standing,
    record_consent,
    valid_consent_id,
)
from jpki.relying_parties.holder_signatures import valid_at
from jpki.relying_parties.linkage import successors_of
from jpki.relying_parties.ports import Basic4UnitOfWork, Basic4UnitOfWorkFactory
from jpki.relying_parties.service import RpContext

_NOT_AVAILABLE = "no information can be provided under this consent now"


class Basic4NotAvailable(NotFound):
    code = "basic4.not_available"
    title = "The information is not available"


class ConsentMissing(InvalidInput):
    code = "basic4.consent_missing"
    title = "Send a signed consent (consent) or a consent id (consent_id)"


@dataclass(frozen=True)
class Basic4Answer:
    consent_id: str
    current_signing_serial: str
    expires_at: datetime
    # Personal data: kept out of repr (non-negotiable 7).
    items: dict[str, str | int] = field(repr=False)
    resident_id: str = ""


def current_signing_certificate(uow: LineReads, signer_id: int,
                                now: datetime) -> Certificate | None:
    signer = uow.certificates.get(signer_id)
    if signer is None:
        return None
    lines = [signer]
    if signer.kind.is_mobile and signer.linked_id is not None:
        card = uow.certificates.get(signer.linked_id)
        if card is not None:
            lines.append(card)
    for start in lines:
        chain = successors_of(uow, start)
        last = chain[-1] if chain else start
        if valid_at(last, now):
            return last
    return None


class LatestBasic4Service:
    def __init__(self, uow_factory: Basic4UnitOfWorkFactory, clock: Clock, audit: AuditLog,
                 consent_max_lifetime: timedelta = timedelta(days=365), *,
                 group: GroupAudit) -> None:
        self._uow = uow_factory
        self._group = group
        self._clock = clock
        self._audit = audit
        self.consent_max_lifetime = consent_max_lifetime

    def provide(self, ctx: RpContext[Literal[Operation.RP_BASIC4]], purpose: str, *,
                consent: bytes | None = None,
                consent_id: str | None = None) -> Basic4Answer:
        ctx.grant.require(Operation.RP_BASIC4)
        purpose = ctx.require_purpose(purpose)
        if (consent is None) == (consent_id is None):
            raise ConsentMissing("send exactly one of consent and consent_id", field="consent")
        if consent is not None:
            # A new consent: verified and stored in the transaction that discloses.
            with self._uow() as uow:
                now = self._clock.now()
                record = record_consent(uow, self._audit, ctx, consent, purpose, now,
                                        self.consent_max_lifetime)
                outcome = self._evaluate(uow, record, now)
                if isinstance(outcome, Basic4Answer):
                    self._audit_provided(uow, ctx, record, purpose, outcome)
                    uow.commit()
                    return outcome
                # Leaving without commit: the consent submitted with this call is not kept.
            self._refuse(ctx, purpose, outcome, None)
        assert consent_id is not None
        # A standing consent: read, evaluated and audited in the transaction of a group commit
        # shared with concurrent calls (jpki.group_audit), the consent locked — so that a
        # withdrawal committed in between still wins — and only then answered.
        disclose, answers, withheld = self._standing(ctx, purpose, consent_id)
        try:
            # The subject is the consent's id: a call naming no consent of this relying party
            # is refused by disclose() before anything is staged.
            self._group.record(actor=ctx.actor, action="basic4.provided", subject=consent_id,
                               check=disclose)
        except Basic4NotAvailable:
            if withheld:
                self._record_withheld(ctx, purpose, withheld[0], consent_id)
            raise
        return answers[0]

    def provide_standing(self, ctx: RpContext[Literal[Operation.RP_BASIC4]], purpose: str,
                         consent_id: str,
                         done: Callable[[Basic4Answer | None, BaseException | None], None]
                         ) -> None:
        """:meth:`provide` under a standing consent without blocking, for the HTTP layer's
        event loop: the same reads, evaluation and audit record, in the group commit's
        transaction on its writer thread. ``done(answer, None)`` once the disclosure's record
        has committed — only then may the answer leave — or ``done(None, error)`` when the
        call is refused (for a resident under DV support measures, after the withholding's own
        record has committed). Called on the writer's thread. Bad input raises here."""
        ctx.grant.require(Operation.RP_BASIC4)
        purpose = ctx.require_purpose(purpose)
        disclose, answers, withheld = self._standing(ctx, purpose, consent_id)

        def committed(error: BaseException | None) -> None:
            if error is None:
                done(answers[0], None)
            elif isinstance(error, Basic4NotAvailable) and withheld:
                self._group.submit(actor=ctx.actor, action="basic4.withheld_dv",
                                   subject=withheld[0],
                                   payload=self._withheld(ctx, purpose, consent_id),
                                   done=lambda failed: done(None, failed or error))
            else:
                done(None, error)

        self._group.submit(actor=ctx.actor, action="basic4.provided", subject=consent_id,
                           check=disclose, done=committed)

    def _standing(self, ctx: RpContext, purpose: str, consent_id: str
                  ) -> tuple[Check, list[Basic4Answer], list[str]]:
        """The check that reads and evaluates a standing consent inside the group commit's
        transaction, and where it leaves the answer (or the DV-protected resident's id)."""
        now = self._clock.now()
        rp_id = ctx.rp_id
        answers: list[Basic4Answer] = []
        withheld: list[str] = []

        def disclose(uow: DisclosureReads) -> dict[str, JsonValue]:
            # One statement: the consent (locked), the resident, the signer certificate.
            record = check_standing(
                uow.consents.standing(consent_id, for_update=True)
                if valid_consent_id(consent_id) else None, rp_id, now)
            if purpose != record.purpose:
                raise ConsentPurposeMismatch("the call's purpose must be the consented "
                                             "purpose", field="purpose")
            outcome = self._evaluate_standing(uow, record, now)
            if not isinstance(outcome, Basic4Answer):
                if outcome is not None:
                    withheld.append(outcome)
                raise Basic4NotAvailable(_NOT_AVAILABLE)
            answers.append(outcome)
            return self._provided(ctx, record, purpose, outcome)

        return disclose, answers, withheld

    @staticmethod
    def _evaluate_standing(uow: LineReads, record: StandingConsent,
                           now: datetime) -> Basic4Answer | str | None:
        """:meth:`_evaluate` on a standing consent as read in one statement."""
        if record.dv_support:
            return record.resident_id
        signer = record.signer
        if not record.has_successor and (
                signer.is_valid(now) or not (signer.kind.is_mobile and signer.linked_id)):
            # The signer is the end of its line: it is the current one, or there is none.
            current = signer.serial if signer.is_valid(now) else None
        else:  # a renewed line, or a phone's line that ended: walk them (rare)
            found = current_signing_certificate(uow, signer.id, now)
            current = found.serial if found is not None else None
        if record.resident_status is not ResidentStatus.ACTIVE or current is None:
            return None
        values: dict[str, str | int | date] = {
            "name": record.name, "birth_date": record.birth_date, "sex": record.sex,
            "address": record.address}
        items: dict[str, str | int] = {k: (v.isoformat() if isinstance(v, date) else v)
                                       for k, v in values.items() if k in record.item_list}
        return Basic4Answer(consent_id=record.id, current_signing_serial=current,
                            expires_at=record.expires_at, items=items,
                            resident_id=record.resident_id)

    @staticmethod
    def _evaluate(uow: Basic4UnitOfWork, record: Consent,
                  now: datetime) -> Basic4Answer | str | None:
        """The answer; or the id of a resident under DV support measures; or None when there
        is nothing to give (no valid current signing certificate, the record ended)."""
        resident = uow.residents.get(record.resident_id)
        if resident is None:
            return None
        if resident.dv_support:
            return resident.id
        current = current_signing_certificate(uow, record.signer_id, now)
        if resident.status is not ResidentStatus.ACTIVE or current is None:
            return None
        values: dict[str, str | int | date] = {
            "name": resident.name, "birth_date": resident.birth_date, "sex": resident.sex,
            "address": resident.address}
        items: dict[str, str | int] = {k: (v.isoformat() if isinstance(v, date) else v)
                                       for k, v in values.items() if k in record.item_list}
        return Basic4Answer(consent_id=record.id, current_signing_serial=current.serial,
                            expires_at=record.expires_at, items=items,
                            resident_id=resident.id)

    def _audit_provided(self, uow: Basic4UnitOfWork, ctx: RpContext, record: Consent, purpose: str,
                        answer: Basic4Answer) -> None:
        self._audit.record(uow, actor=ctx.actor, action="basic4.provided", subject=record.id,
                           payload=self._provided(ctx, record, purpose, answer))

    @staticmethod
    def _provided(ctx: RpContext, record: Consent | StandingConsent, purpose: str,
                  answer: Basic4Answer) -> dict[str, JsonValue]:
        return {"relying_party": ctx.rp_id, "resident": answer.resident_id,
                "items": list(record.item_list), "purpose": purpose,
                "current": answer.current_signing_serial}

    def _refuse(self, ctx: RpContext, purpose: str, withheld: str | None,
                consent_id: str | None) -> NoReturn:
        if withheld is not None:
            self._record_withheld(ctx, purpose, withheld, consent_id)
        raise Basic4NotAvailable(_NOT_AVAILABLE)

    def _record_withheld(self, ctx: RpContext, purpose: str, resident_id: str,
                         consent_id: str | None) -> None:
        """architecture §4: the refusal of a DV-protected resident is audited — identifiers only,
        in a unit of work of its own (the call itself changes nothing)."""
        self._group.record(actor=ctx.actor, action="basic4.withheld_dv", subject=resident_id,
                           payload=self._withheld(ctx, purpose, consent_id))

    @staticmethod
    def _withheld(ctx: RpContext, purpose: str,
                  consent_id: str | None) -> dict[str, JsonValue]:
        return {"relying_party": ctx.rp_id, "consent": consent_id, "purpose": purpose}
