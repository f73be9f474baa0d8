"""Work a counter clerk gives an enrolment station, and its live status.

At a municipal counter the clerk checks the applicant's documents and the station — the PC
with the card reader and the PIN pad — generates the keys on the card and writes the
certificates (reference §5; devices.station). The clerk works in the console, the station at
the desk: a *task* joins them. The clerk queues one for a chosen station (:meth:`create`: the
resident, issue or renew, and the identity proofing the clerk checked — document types and
measures, never the documents' contents); the station claims its oldest queued task
(:meth:`claim`), records the proofing with the CA as it always does (PROOFING_RECORD stays the
station's), runs the enrolment, and reports each step (:meth:`report`); the console shows the
steps as they come (:meth:`view`).

The task itself authorises nothing: the station's own calls are authorised as ever, so a task
cannot make a station issue what it could not issue without one. The holder's PINs never pass
through a task: the holder types them on the station's PIN pad.

Rules:
- a task names an active station whose municipality scopes cover the resident's (a station
  without scopes serves every municipality; a post office only where designated), and one
  task per resident is open (queued or claimed) at a time;
- the evidence must already satisfy a pattern (jpki.registry.proofing.evaluate), so a clerk
  learns at once what the station would be refused;
- only the station named claims or reports, a step at a time from a fixed list, and a task
  ends once (done, with the serials issued; or failed, with the problem code);
- a queued task may be cancelled by a clerk of the resident's municipality; a claimed one is
  the station's to finish (its enrolment abandons what it cannot deliver, jpki.registry.counter).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Literal

from jpki.access.authz import Grant, Operation
from jpki.access.principals import MUNICIPALITY_SCOPE, POST_OFFICE_STATION
from jpki.audit import AuditLog
from jpki.errors import Conflict, InvalidInput, NotFound
from jpki.lifecycle.residents import load_active_resident
from jpki.model import ApiClient, ClientRole, ClientStatus, StationTask
from jpki.ports import Clock
from jpki.registry.ports import StationTasksUnitOfWork, StationTasksUnitOfWorkFactory
from jpki.registry.proofing import Document, Evidence, evaluate
from jpki.validity import age_on, jst_date

# Issue or renew the card's certificates, or reset its user-authentication PIN or signing
# password (reference §4.5: at the counter, after identity proofing).
KINDS = ("issue", "renew", "pin_auth", "pin_sign")
# What a station reports, in the order of an enrolment (devices.station.workflow).
STEPS = ("claimed", "pin_format", "proofing", "issuer_auth", "keygen", "issue", "write", "pins",
         "verify", "delivery")
# The steps each kind of task goes through (a PIN reset writes no certificate).
STEPS_OF = {"issue": STEPS, "renew": STEPS,
            "pin_auth": ("claimed", "pin_format", "proofing", "issuer_auth", "pins", "verify"),
            "pin_sign": ("claimed", "pin_format", "proofing", "issuer_auth", "pins", "verify")}
OPEN = ("queued", "claimed")
_SERIAL = re.compile(r"[0-9a-f]{1,40}")
_CODE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_CERT_KINDS = frozenset({"card_sign", "card_auth"})


class StationTaskNotFound(NotFound):
    code = "station_task.not_found"
    title = "No such station task"


class StationTaskOpen(Conflict):
    code = "station_task.open"
    title = "The resident already has a task waiting at a station"


class StationTaskState(Conflict):
    code = "station_task.state"
    title = "The task is not in a state that allows this"


class StationUnavailable(InvalidInput):
    code = "station_task.station_unavailable"
    title = "The station cannot take this task"


@dataclass(frozen=True)
class Report:
    """One report from the station: the step it is at, or how the task ended."""

    step: str
    outcome: Literal["running", "done", "failed"] = "running"
    error_code: str | None = None
    serials: dict[str, str] | None = None


def evidence_document(evidence: Evidence) -> dict[str, object]:
    """The evidence as the station records it with the CA (POST /v1/stations/proofings, less
    the resident)."""
    def documents(docs: tuple[Document, ...]) -> list[dict[str, object]]:
        return [{"type": d.kind.value, "has_photo": d.has_photo,
                 "issued_on": d.issued_on.isoformat() if d.issued_on else None} for d in docs]

    return {"presence": evidence.presence.value,
            "applicant_documents": documents(evidence.applicant_documents),
            "measures": sorted(m.value for m in evidence.measures),
            "proxy_documents": documents(evidence.proxy_documents),
            "proxy_measures": sorted(m.value for m in evidence.proxy_measures),
            "delegation_letter": evidence.delegation_letter,
            "hardship_proof": evidence.hardship_proof,
            "applicant_in_facility": evidence.applicant_in_facility}


def _serves(client: ApiClient, municipality: str | None) -> bool:
    """An active station; with ``municipality``, one whose scopes cover it (a station without
    municipality scopes serves every one; a post office only where it was designated)."""
    if client.role is not ClientRole.STATION or client.status is not ClientStatus.ACTIVE:
        return False
    if municipality is None:
        return True
    scoped = {s.removeprefix(MUNICIPALITY_SCOPE) for s in client.scope_set
              if s.startswith(MUNICIPALITY_SCOPE)}
    if scoped or client.station_kind == POST_OFFICE_STATION:
        return municipality in scoped
    return True


class StationTasks:
    def __init__(self, uow_factory: StationTasksUnitOfWorkFactory,
                 clock: Clock, audit: AuditLog) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    # --- the clerk ------------------------------------------------------------------------

    def create(self, grant: Grant[Literal[Operation.STATION_TASK_CREATE]], resident_id: str, *,
               station: str, kind: str, evidence: Evidence) -> StationTask:
        actor = grant.require(Operation.STATION_TASK_CREATE)
        if kind not in KINDS:
            raise InvalidInput("a task issues, renews or resets a PIN", field="kind")
        now = self._clock.now()
        with self._uow() as uow:
            resident = load_active_resident(uow, resident_id, grant)
            evaluate(evidence, applicant_age=age_on(resident.birth_date, jst_date(now)),
                     today=jst_date(now))
            client = uow.clients.get_by_client_id(station[:64])
            if client is None or not _serves(client, None):
                raise StationUnavailable("no active station has this id", field="station")
            if not _serves(client, resident.municipality_code):
                raise StationUnavailable("the station does not serve the resident's "
                                         "municipality", field="station")
            if uow.station_tasks.open_for(resident.id):
                raise StationTaskOpen()
            task = StationTask(id=uuid.uuid4().hex, station=f"client:{client.client_id}",
                               resident_id=resident.id, kind=kind,
                               proofing=json.dumps(evidence_document(evidence), sort_keys=True),
                               status="queued", created_by=actor.actor, created_at=now,
                               updated_at=now)
            uow.station_tasks.add(task)
            self._audit.record(uow, actor=actor.actor, action="station_task.created",
                               subject=resident.id,
                               payload={"task": task.id, "station": task.station, "kind": kind})
            uow.commit()
        return task

    def stations(self, grant: Grant[Literal[Operation.STATION_TASK_CREATE]],
                 resident_id: str) -> list[tuple[str, str]]:
        """(client id, name) of the active stations that serve the resident's municipality."""
        grant.require(Operation.STATION_TASK_CREATE)
        with self._uow() as uow:
            resident = load_active_resident(uow, resident_id[:32], grant)
            return [(c.client_id, c.name) for c in uow.clients.all()
                    if _serves(c, resident.municipality_code)]

    def cancel(self, grant: Grant[Literal[Operation.STATION_TASK_CREATE]],
               task_id: str) -> StationTask:
        actor = grant.require(Operation.STATION_TASK_CREATE)
        now = self._clock.now()
        with self._uow() as uow:
            task = self._visible(uow, grant, task_id, for_update=True)
            if task.status != "queued":
                raise StationTaskState("only a task no station has claimed can be cancelled")
            uow.station_tasks.update(task.id, now, status="cancelled")
            self._audit.record(uow, actor=actor.actor, action="station_task.cancelled",
                               subject=task.resident_id, payload={"task": task.id})
            uow.commit()
            return self._get(uow, task.id)

    def view(self, grant: Grant[Literal[Operation.STATION_TASK_READ]],
             task_id: str) -> StationTask:
        grant.require(Operation.STATION_TASK_READ)
        with self._uow() as uow:
            return self._visible(uow, grant, task_id)

    def of_resident(self, grant: Grant[Literal[Operation.STATION_TASK_READ]],
                    resident_id: str) -> list[StationTask]:
        grant.require(Operation.STATION_TASK_READ)
        with self._uow() as uow:
            resident = uow.residents.get(resident_id)
            if resident is None:
                return []
            grant.require_municipality(resident.municipality_code)
            return list(uow.station_tasks.of_resident(resident.id))

    # --- the station --------------------------------------------------------------------

    def claim(self, grant: Grant[Literal[Operation.STATION_TASK_WORK]]) -> StationTask | None:
        """The calling station's oldest queued task, now claimed; None if it has none."""
        actor = grant.require(Operation.STATION_TASK_WORK)
        now = self._clock.now()
        with self._uow() as uow:
            task = uow.station_tasks.next_queued(actor.actor)
            if task is None:
                return None
            uow.station_tasks.update(task.id, now, status="claimed", step="claimed")
            self._audit.record(uow, actor=actor.actor, action="station_task.claimed",
                               subject=task.resident_id, payload={"task": task.id})
            uow.commit()
            return self._get(uow, task.id)

    def report(self, grant: Grant[Literal[Operation.STATION_TASK_WORK]], task_id: str,
               report: Report) -> StationTask:
        actor = grant.require(Operation.STATION_TASK_WORK)
        if report.step not in STEPS:
            raise InvalidInput("not a step of an enrolment", field="step")
        serials = self._checked(report)
        now = self._clock.now()
        with self._uow() as uow:
            task = uow.station_tasks.get(task_id[:32], for_update=True)
            if task is None or task.station != actor.actor:
                # Another station's task is as unknown as a task that does not exist.
                raise StationTaskNotFound()
            if task.status != "claimed":
                raise StationTaskState("the task has ended")
            issues = task.kind in ("issue", "renew")
            if report.outcome == "done" and issues != bool(serials):
                raise InvalidInput("a finished issuance names the serials it issued; a PIN "
                                   "reset none", field="serials")
            if report.outcome == "running":
                uow.station_tasks.update(task.id, now, step=report.step)
            else:
                uow.station_tasks.update(
                    task.id, now, step=report.step,
                    status="done" if report.outcome == "done" else "failed",
                    error_code=report.error_code,
                    serials=json.dumps(serials, sort_keys=True) if serials else None)
                self._audit.record(uow, actor=actor.actor, action=f"station_task.{report.outcome}",
                                   subject=task.resident_id,
                                   payload={"task": task.id, "step": report.step,
                                            "code": report.error_code,
                                            "serials": sorted((serials or {}).values())})
            uow.commit()
            return self._get(uow, task.id)

    # --- shared -------------------------------------------------------------------------

    @staticmethod
    def _checked(report: Report) -> dict[str, str] | None:
        if report.outcome == "failed":
            if report.error_code is None or not _CODE.fullmatch(report.error_code) or \
                    len(report.error_code) > 64:
                raise InvalidInput("a failed task names its problem code", field="error_code")
            if report.serials:
                raise InvalidInput("a failed task issued nothing it kept", field="serials")
            return None
        if report.error_code is not None:
            raise InvalidInput("only a failed task has a problem code", field="error_code")
        if report.outcome == "running":
            if report.serials:
                raise InvalidInput("serials come with the end of the task", field="serials")
            return None
        serials = report.serials or {}
        if not serials:
            return None  # a PIN reset issues nothing (the service checks the kind)
        if not set(serials) <= _CERT_KINDS or \
                not all(_SERIAL.fullmatch(v) for v in serials.values()):
            raise InvalidInput("a finished task names the serials it issued", field="serials")
        return dict(serials)

    @staticmethod
    def _visible(uow: StationTasksUnitOfWork, grant: Grant[Literal[Operation.STATION_TASK_CREATE,
                                                         Operation.STATION_TASK_READ]],
                 task_id: str, *, for_update: bool = False) -> StationTask:
        task = uow.station_tasks.get(task_id[:32], for_update=for_update)
        if task is None:
            raise StationTaskNotFound()
        resident = uow.residents.get(task.resident_id)
        assert resident is not None  # residents are never deleted
        grant.require_municipality(resident.municipality_code)
        return task

    @staticmethod
    def _get(uow: StationTasksUnitOfWork, task_id: str) -> StationTask:
        task = uow.station_tasks.get(task_id)
        assert task is not None
        return task
