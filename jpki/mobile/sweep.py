"""The layered measures over smartphones (重層的な措置, reference §2; architecture §4.5): what a
holder failed to do, done by the CA.

A run, by the maintenance loop (api.app) or `jpki mobile sweep`, in three passes:

1. **Revoke** the mobile certificates whose linked card certificate is no longer valid, or whose
   resident record has ended (the cascade of jpki.lifecycle.revocation does this as it
   happens; the sweep catches what went around it), with the card certificate's reason.
2. **Flag** the active devices that have not checked in (POST /v1/mobile/check-ins) for more
   than ``flag_after``: recorded on the device and audited by device id.
3. **Hold** the certificates of the active devices silent for more than ``hold_after`` (unless
   it is None): certificateHold, exactly as the call centre holds a lost phone's
   (jpki.lifecycle.revocation.revoke_in), so the holder releases it the same way — a
   suspension lift signed with the phone's held auth key (MobileService.lift_suspension), which
   also counts as the phone being seen.

Every pass works in batches, each its own transaction: the changes, their audit records and the
report's items commit together, so a run killed midway leaves every device either handled or
untouched, and a report (``running``, marked ``interrupted`` by the next run) that lists exactly
what was done. Each batch re-reads what it changes under a row lock and acts only on what still
qualifies, and a certificate already revoked or held is left alone, so a second run — or a
second process, should two ever run — changes nothing the first did: the run is idempotent.
Only device ids and serials are recorded: no personal data (architecture §9.7).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from jpki.access.authz import Grant, Operation
from jpki.access.principals import Principal
from jpki.audit import AuditLog
from jpki.errors import InvalidInput, NotFound
from jpki.lifecycle.revocation import revoke_in
from jpki.mobile.ports import SweepUnitOfWork, SweepUnitOfWorkFactory
from jpki.mobile.rules import sweep_reason
from jpki.model import (
    CertStatus,
    DeviceStatus,
    MobileDevice,
    MobileSweepReport,
    RevocationReason,
)
from jpki.ports import Clock

BATCH = 200
_SWEEP_ID = re.compile(r"[0-9a-f]{32}")
MAX_REPORTS = 100
T = TypeVar("T")


class SweepNotFound(NotFound):
    code = "mobile.sweep_not_found"
    title = "No such sweep report"


def _batches(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


class MobileSweep:
    def __init__(self, uow_factory: SweepUnitOfWorkFactory, clock: Clock, audit: AuditLog, *,
                 flag_after: timedelta = timedelta(days=90),
                 hold_after: timedelta | None = timedelta(days=180),
                 interval: timedelta = timedelta(hours=1)) -> None:
        if hold_after is not None and hold_after <= flag_after:
            raise ValueError("the hold threshold must lie beyond the flag threshold")
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit
        self.flag_after = flag_after
        self.hold_after = hold_after
        self.interval = interval

    # --- running --------------------------------------------------------------------------

    def due(self) -> bool:
        """Whether the maintenance loop should run the sweep now: no run has started within
        ``interval`` (by any process: the time is in the database, so a restart does not
        re-run it)."""
        with self._uow() as uow:
            last = uow.mobile_sweeps.last_started()
        return last is None or self._clock.now() - last >= self.interval

    def run(self, grant: Grant[Literal[Operation.MOBILE_SWEEP]]) -> MobileSweepReport:
        actor = grant.require(Operation.MOBILE_SWEEP)
        now = self._clock.now()
        report = MobileSweepReport(
            id=uuid.uuid4().hex, started_at=now, outcome="running",
            flag_after_days=self.flag_after.days,
            hold_after_days=self.hold_after.days if self.hold_after is not None else 0,
            actor=actor.actor)
        with self._uow() as uow:
            # Only one process runs the sweep (the maintenance lease): a run still marked
            # running was killed; what it did is committed and listed, the rest is this run's.
            uow.mobile_sweeps.interrupt_running()
            uow.mobile_sweeps.start(report)
            uow.commit()
        try:
            report.revoked = self._revoke(actor, report.id, now)
            report.flagged = self._flag(actor, report.id, now)
            report.held = self._hold(actor, report.id, now)
        except Exception:
            with self._uow() as uow:
                uow.mobile_sweeps.finish(report.id, "failed", self._clock.now())
                uow.commit()
            raise
        report.finished_at = self._clock.now()
        report.outcome = "ok"
        with self._uow() as uow:
            uow.mobile_sweeps.finish(report.id, report.outcome, report.finished_at)
            uow.commit()
        report.counts = {"revoked": len(report.revoked), "flagged": len(report.flagged),
                         "held": len(report.held)}
        return report

    def _in_batches(self, ids: Sequence[str], sweep_id: str, action: str,
                    step: Callable[[SweepUnitOfWork, str], bool],
                    audit: Callable[[SweepUnitOfWork, list[str]], None] | None = None) -> list[str]:
        """Apply ``step`` to each id, a batch per transaction; the ids it acted on are the
        report's items of ``action``, committed with the changes."""
        done: list[str] = []
        for batch in _batches(ids):
            with self._uow() as uow:
                acted = [i for i in batch if step(uow, i)]
                uow.mobile_sweeps.add_items(sweep_id, action, acted)
                if acted and audit is not None:
                    audit(uow, acted)
                uow.commit()
            done.extend(acted)
        return done

    def _revoke(self, actor: Principal, sweep_id: str, now: datetime) -> list[str]:
        with self._uow() as uow:
            candidates = uow.certificates.mobile_orphans(now)

        def step(uow: SweepUnitOfWork, serial: str) -> bool:
            cert = uow.certificates.get_by_serial(serial, for_update=True)
            if cert is None or not cert.is_valid(now):
                return False
            reason = sweep_reason(uow.certificates.get(cert.linked_id or 0),
                                  uow.residents.get(cert.resident_id), now)
            if reason is None:
                return False
            # Each revocation is audited by revoke_in (certificate.revoked, by serial).
            return revoke_in(uow, self._audit, actor, cert, reason, now, now,
                             cause="sweep: card certificate or record ended").changed

        return self._in_batches(candidates, sweep_id, "revoked", step)

    @staticmethod
    def _silent(uow: SweepUnitOfWork, device_id: str, before: datetime) -> MobileDevice | None:
        device = uow.mobile.device(device_id, for_update=True)
        # Re-read under the lock: a check-in committed since the candidates were listed wins.
        if device is None or device.status is not DeviceStatus.ACTIVE or \
                device.last_seen_at >= before:
            return None
        return device

    def _flag(self, actor: Principal, sweep_id: str, now: datetime) -> list[str]:
        before = now - self.flag_after
        with self._uow() as uow:
            candidates = uow.mobile.silent_device_ids(before, unflagged=True)

        def step(uow: SweepUnitOfWork, device_id: str) -> bool:
            device = self._silent(uow, device_id, before)
            if device is None or device.flagged_at is not None:
                return False
            device.flagged_at = now
            return True

        def audit(uow: SweepUnitOfWork, flagged: list[str]) -> None:
            self._audit.record(uow, actor=actor.actor, action="mobile.devices_flagged",
                               subject="mobile", payload={
                                   "devices": flagged, "silent_days": self.flag_after.days})

        return self._in_batches(candidates, sweep_id, "flagged", step, audit)

    def _hold(self, actor: Principal, sweep_id: str, now: datetime) -> list[str]:
        if self.hold_after is None:
            return []
        before = now - self.hold_after
        with self._uow() as uow:
            candidates = uow.mobile.silent_device_ids(before)

        def step(uow: SweepUnitOfWork, device_id: str) -> bool:
            device = self._silent(uow, device_id, before)
            if device is None:
                return False
            held = False
            for cert in uow.certificates.for_device(device.id):
                # What is valid now: a certificate already revoked or held stays as it is.
                if cert.status is CertStatus.ISSUED and cert.is_valid(now):
                    held |= revoke_in(uow, self._audit, actor, cert,
                                      RevocationReason.CERTIFICATE_HOLD, now, now,
                                      cause="silent device (sweep)").changed
            if device.flagged_at is None:
                device.flagged_at = now
            return held

        def audit(uow: SweepUnitOfWork, held: list[str]) -> None:
            self._audit.record(uow, actor=actor.actor, action="mobile.devices_held",
                               subject="mobile", payload={
                                   "devices": held, "silent_days": self.hold_after.days
                                   if self.hold_after is not None else 0})

        return self._in_batches(candidates, sweep_id, "held", step, audit)

    # --- the reports ----------------------------------------------------------------------

    def reports(self, grant: Grant[Literal[Operation.MOBILE_SWEEP_READ]],
                limit: int = 20) -> list[MobileSweepReport]:
        """The newest ``limit`` runs, newest first, with their counts."""
        grant.require(Operation.MOBILE_SWEEP_READ)
        if not 1 <= limit <= MAX_REPORTS:
            raise InvalidInput(f"limit is 1 to {MAX_REPORTS}", field="limit")
        with self._uow() as uow:
            return list(uow.mobile_sweeps.latest(limit))

    def report(self, grant: Grant[Literal[Operation.MOBILE_SWEEP_READ]],
               sweep_id: str) -> MobileSweepReport:
        """One run, with the serials it revoked and the devices it flagged and held."""
        grant.require(Operation.MOBILE_SWEEP_READ)
        with self._uow() as uow:
            found = (uow.mobile_sweeps.get(sweep_id) if _SWEEP_ID.fullmatch(sweep_id)
                     else None)
        if found is None:
            raise SweepNotFound("no such sweep report")
        return found
