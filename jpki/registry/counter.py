"""What a station does at the counter besides issuing: identity proofing, PIN-reset
authorisation, and confirming (or abandoning) the delivery of certificates onto a card.

- A proofing record is made by the station that checked the documents, for one resident, and
  is **single-use** and short-lived: issuance, renewal and a PIN reset each consume one
  (reference §5: these happen only at the window, with identity verification).
- A certificate issued for a station is *delivered* once the station has written it onto the
  card and read it back; until then it is the station's to abandon, which revokes it with the
  J-LIS reason for "destroyed before delivery" (unspecified, §3.2). Certificates never confirmed
  are swept the same way after a timeout, so a card pulled out mid-enrolment leaves the CA with
  nothing it cannot account for.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from jpki.access.authz import Grant, Operation
from jpki.access.principals import Principal
from jpki.audit import AuditLog
from jpki.errors import CertificateNotFound, Conflict, Forbidden
from jpki.lifecycle.proofing import PROOFING_LIFETIME, consume_proofing
from jpki.lifecycle.residents import check_active_resident, load_active_resident
from jpki.lifecycle.revocation import RevocationResult, revoke_in
from jpki.model import Certificate, CertStatus, ProofingRecord, Resident, RevocationReason
from jpki.ports import Clock
from jpki.registry.ports import CounterUnitOfWork, CounterUnitOfWorkFactory
from jpki.registry.proofing import Assessment, Evidence, assess, evaluate
from jpki.validity import age_on, jst_date


class PinKind:
    AUTH = "auth"
    SIGN = "sign"


@dataclass(frozen=True)
class PinResetAuthorisation:
    resident_id: str
    pin: str
    proofing_id: str
    at: datetime


class CounterService:
    def __init__(self, uow_factory: CounterUnitOfWorkFactory, clock: Clock, audit: AuditLog,
                 undelivered_timeout: timedelta = timedelta(hours=24)) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit
        self.undelivered_timeout = undelivered_timeout

    def record_proofing(self, grant: Grant[Literal[Operation.PROOFING_RECORD]], resident_id: str,
                        evidence: Evidence) -> ProofingRecord:
        actor = grant.require(Operation.PROOFING_RECORD)
        now = self._clock.now()
        with self._uow() as uow:
            resident = load_active_resident(uow, resident_id, grant)
            pattern = evaluate(evidence, applicant_age=_age(resident, now), today=jst_date(now))
            shape = {
                "applicant_documents": sorted(d.kind.value for d in evidence.applicant_documents),
                "measures": sorted(m.value for m in evidence.measures),
                "proxy_documents": sorted(d.kind.value for d in evidence.proxy_documents),
                "proxy_measures": sorted(m.value for m in evidence.proxy_measures),
                "delegation_letter": evidence.delegation_letter,
                "hardship_proof": evidence.hardship_proof,
                "applicant_in_facility": evidence.applicant_in_facility,
            }
            record = ProofingRecord(id=uuid.uuid4().hex, resident_id=resident.id,
                                    station=actor.actor, presence=evidence.presence.value,
                                    pattern=pattern.value,
                                    evidence=json.dumps(shape, sort_keys=True),
                                    created_at=now, expires_at=now + PROOFING_LIFETIME)
            uow.proofings.add(record)
            self._audit.record(uow, actor=actor.actor, action="proofing.recorded",
                               subject=record.id,
                               payload={"resident": resident.id, "pattern": pattern.value,
                                        "presence": evidence.presence.value})
            uow.commit()
        return record

    def assess_proofing(self, grant: Grant[Literal[Operation.RESIDENT_READ]], resident_id: str,
                        evidence: Evidence) -> Assessment:
        """The table's verdict on documents shown for the resident today, recording nothing:
        the operator console's guide (api.console.counter). The same rule and the same age as
        :meth:`record_proofing`; reading the resident is all it needs (RESIDENT_READ)."""
        grant.require(Operation.RESIDENT_READ)
        now = self._clock.now()
        with self._uow() as uow:
            # A read: the same refusals as recording's, without its row lock.
            resident = check_active_resident(uow.residents.get(resident_id[:64]), resident_id,
                                             grant)
            return assess(evidence, applicant_age=_age(resident, now), today=jst_date(now))

    def authorise_pin_reset(self, grant: Grant[Literal[Operation.PIN_RESET]], resident_id: str,
                            pin: str, proofing_id: str) -> PinResetAuthorisation:
        """The CA's record that a PIN reset (RESET RETRY COUNTER on the card) was done after
        identity proofing; the station performs the reset on the card itself."""
        actor = grant.require(Operation.PIN_RESET)
        if pin not in (PinKind.AUTH, PinKind.SIGN):
            from jpki.errors import InvalidInput

            raise InvalidInput("pin is auth or sign", field="pin")
        now = self._clock.now()
        with self._uow() as uow:
            resident = load_active_resident(uow, resident_id, grant)
            consume_proofing(uow, actor, proofing_id, resident.id, f"pin_reset:{pin}", now)
            self._audit.record(uow, actor=actor.actor, action="card.pin_reset",
                               subject=resident.id, payload={"pin": pin,
                                                             "proofing": proofing_id})
            uow.commit()
        return PinResetAuthorisation(resident_id=resident.id, pin=pin, proofing_id=proofing_id,
                                     at=now)

    def confirm_delivery(self, grant: Grant[Literal[Operation.DELIVERY_CONFIRM]],
                         serial: str) -> datetime:
        actor = grant.require(Operation.DELIVERY_CONFIRM)
        with self._uow() as uow:
            cert = self._undelivered(uow, grant, actor, serial)
            if cert.delivered_at is None:
                if cert.revoked_at is not None:
                    raise Conflict("the certificate was revoked before its delivery",
                                   serial=serial)
                cert.delivered_at = self._clock.now()
                self._audit.record(uow, actor=actor.actor, action="certificate.delivered",
                                   subject=serial, payload={"kind": cert.kind.value})
                uow.commit()
            return cert.delivered_at

    def abandon_delivery(self, grant: Grant[Literal[Operation.DELIVERY_ABANDON]],
                         serial: str) -> RevocationResult:
        """The card never got the certificate: revoke it ("destroyed before delivery")."""
        actor = grant.require(Operation.DELIVERY_ABANDON)
        with self._uow() as uow:
            cert = self._undelivered(uow, grant, actor, serial)
            if cert.delivered_at is not None:
                raise Conflict("the certificate was delivered; revoke it through an operator",
                               serial=serial)
            now = self._clock.now()
            result = revoke_in(uow, self._audit, actor, cert, RevocationReason.UNSPECIFIED,
                               now, now, cause="not delivered")
            uow.commit()
        return result

    def sweep_undelivered(self, grant: Grant[Literal[Operation.DELIVERY_SWEEP]]) -> list[str]:
        """Revoke station-issued certificates never confirmed within the timeout."""
        actor = grant.require(Operation.DELIVERY_SWEEP)
        now = self._clock.now()
        with self._uow() as uow:
            stale = list(uow.certificates.undelivered_before(now - self.undelivered_timeout))
            for cert in stale:
                revoke_in(uow, self._audit, actor, cert, RevocationReason.UNSPECIFIED, now, now,
                          cause="delivery not confirmed")
            uow.commit()
        return [c.serial for c in stale]

    @staticmethod
    def _undelivered(uow: CounterUnitOfWork,
                     grant: Grant[Literal[Operation.DELIVERY_CONFIRM, Operation.DELIVERY_ABANDON]],
                     actor: Principal, serial: str) -> Certificate:
        """A certificate issued for a counter, which ``actor`` may confirm or abandon: a station
        only what it issued itself; a person at the resident's municipality (an operator — the
        console's counter clerk) what any station there issued, when the station's own
        confirmation never came (architecture §3.5)."""
        cert = uow.certificates.get_by_serial(serial, for_update=True)
        if cert is None or cert.status is not CertStatus.ISSUED:
            raise CertificateNotFound(f"no certificate with serial {serial}", serial=serial)
        resident = uow.residents.get(cert.resident_id)
        assert resident is not None  # a certificate's resident is never deleted
        grant.require_municipality(resident.municipality_code)
        if not cert.delivery_required or (actor.at_counter and cert.issued_by != actor.actor):
            raise Forbidden("only the station that issued a certificate, or the resident's "
                            "municipality, confirms or abandons its delivery", serial=serial)
        return cert


def _age(resident: Resident, now: datetime) -> int:
    return age_on(resident.birth_date, jst_date(now))
