"""DV support measures (DV等支援措置), set and lifted by two people.

A resident under support measures is someone a perpetrator is looking for: the flag decides that
the latest basic 4 information is never disclosed to relying parties
(jpki.relying_parties.latest_basic4) and that the console masks the address from every role that
does not keep the registry of the resident's municipality. One person's mistake — or one
compromised account — must not be enough to set it or to lift it. So a counter *asks*
(:meth:`DvSupport.request`: set or lift, and the category of the reason), and a supervisor — a
national operator, and another person than the one who asked — *decides*
(:meth:`DvSupport.decide`). Only an approval changes the resident; it records who asked, who
approved and why (the category; never an account of anyone's situation, which has no place in an
audit record), in the same transaction as the change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from jpki.access.authz import Grant, Operation
from jpki.audit import AuditLog
from jpki.errors import Conflict, Forbidden, InvalidInput, NotFound
from jpki.lifecycle.residents import load_active_resident
from jpki.model import DvRequest, Resident
from jpki.ports import Clock
from jpki.registry.ports import DvFilingWork, DvSupportUnitOfWorkFactory


class DvCategory(StrEnum):
    """Why support measures are asked for (住民基本台帳事務処理要領: the kinds of victims)."""

    DOMESTIC_VIOLENCE = "dv"  # 配偶者からの暴力
    STALKING = "stalking"  # ストーカー行為等
    CHILD_ABUSE = "child_abuse"  # 児童虐待等
    OTHER = "other"  # その他これらに準ずる行為
    ENDED = "ended"  # lifting: the measures are no longer needed


class DvRequestPending(Conflict):
    code = "dv.request_pending"
    title = "A request for this resident is already waiting for a decision"


class DvRequestDecided(Conflict):
    code = "dv.request_decided"
    title = "The request was already decided"


class SecondPersonRequired(Forbidden):
    code = "dv.second_person_required"
    title = "The person who asked cannot decide: a second person must"


@dataclass(frozen=True)
class Decision:
    request: DvRequest
    resident: Resident | None  # the resident as changed, when approved


@dataclass(frozen=True)
class DvAsk:
    """Measures asked for with a registration: the asker's grant, and why."""

    grant: Grant[Literal[Operation.DV_REQUEST]]
    category: DvCategory


def file_request(uow: DvFilingWork, audit: AuditLog, actor: str, resident: Resident, *,
                 turn_on: bool, category: DvCategory, now: datetime) -> DvRequest:
    """Ask, in ``uow``'s transaction, to set or lift ``resident``'s measures: the first half of
    the two-person rule, shared by :meth:`DvSupport.request` and a registration that asks at
    once (jpki.registry.residents.ResidentService.register)."""
    if (category is DvCategory.ENDED) is turn_on:
        raise InvalidInput("setting names why; lifting is 'ended'", field="category")
    if resident.dv_support is turn_on:
        raise InvalidInput("the measures are already so", field="turn_on")
    if uow.dv_requests.pending(resident.id):
        raise DvRequestPending()
    request = DvRequest(id=uuid.uuid4().hex, resident_id=resident.id, turn_on=turn_on,
                        category=category.value, status="pending", requested_by=actor,
                        requested_at=now)
    uow.dv_requests.add(request)
    audit.record(uow, actor=actor, action="dv.requested", subject=resident.id,
                 payload={"request": request.id, "on": turn_on, "category": category.value})
    return request


class DvSupport:
    def __init__(self, uow_factory: DvSupportUnitOfWorkFactory,
                 clock: Clock, audit: AuditLog) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    def request(self, grant: Grant[Literal[Operation.DV_REQUEST]], resident_id: str, *,
                turn_on: bool, category: DvCategory) -> DvRequest:
        actor = grant.require(Operation.DV_REQUEST)
        now = self._clock.now()
        with self._uow() as uow:
            resident = load_active_resident(uow, resident_id, grant)
            request = file_request(uow, self._audit, actor.actor, resident, turn_on=turn_on,
                                   category=category, now=now)
            uow.commit()
        return request

    def pending(self, grant: Grant[Literal[Operation.DV_DECIDE]]) -> list[DvRequest]:
        grant.require(Operation.DV_DECIDE)
        with self._uow() as uow:
            return list(uow.dv_requests.pending())

    def decide(self, grant: Grant[Literal[Operation.DV_DECIDE]], request_id: str, *,
               approve: bool) -> Decision:
        actor = grant.require(Operation.DV_DECIDE)
        now = self._clock.now()
        with self._uow() as uow:
            request = uow.dv_requests.get(request_id[:64], for_update=True)
            if request is None:
                raise NotFound("no such request")
            if request.status != "pending":
                raise DvRequestDecided()
            if request.requested_by == actor.actor:
                raise SecondPersonRequired()
            status = "approved" if approve else "rejected"
            uow.dv_requests.decide(request.id, status, actor.actor, now)
            changed: Resident | None = None
            if approve:
                resident = uow.residents.get(request.resident_id, for_update=True)
                assert resident is not None
                resident.dv_support = request.turn_on
                resident.updated_at = now
                resident.version += 1
                changed = resident
                self._audit.record(uow, actor=actor.actor, action="resident.dv_support",
                                   subject=resident.id,
                                   payload={"on": request.turn_on, "request": request.id,
                                            "category": request.category,
                                            "requested_by": request.requested_by})
            else:
                self._audit.record(uow, actor=actor.actor, action="dv.rejected",
                                   subject=request.resident_id,
                                   payload={"request": request.id})
            uow.commit()
            decided = uow.dv_requests.get(request.id)
        assert decided is not None
        return Decision(request=decided, resident=changed)
