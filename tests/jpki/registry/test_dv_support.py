"""DV support measures take two people (jpki.registry.dv_support): the counter asks, another
person with national authority decides; only an approval changes the resident, and the audit
log keeps who asked, who decided and the category — nothing of anyone's situation. Both
databases."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from api.composition import Services
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import InvalidInput, MissingScope
from jpki.registry.dv_support import (
    DvCategory,
    DvRequestDecided,
    DvRequestPending,
    SecondPersonRequired,
)

pytestmark = pytest.mark.hsm

CLERK = Principal(actor="console:kiyose", kind=PrincipalKind.OPERATOR,
                  scopes=frozenset({"municipality:132217"}))
BOSS = Principal(actor="console:boss", kind=PrincipalKind.OPERATOR)
ASK = authorize(CLERK, Operation.DV_REQUEST)
DECIDE = authorize(BOSS, Operation.DV_DECIDE)


def is_supported(services: Services, resident_id: str) -> bool:
    with services.uow() as uow:
        resident = uow.residents.get(resident_id)
        assert resident is not None
        return resident.dv_support


def test_asked_by_one_approved_by_another_then_lifted_the_same_way(
        services: Services, new_resident: Callable[..., str]) -> None:
    resident = new_resident()
    asked = services.dv_support.request(ASK, resident, turn_on=True,
                                        category=DvCategory.STALKING)
    assert not is_supported(services, resident)  # asking changes nothing
    assert [r.id for r in services.dv_support.pending(DECIDE)] == [asked.id]
    decided = services.dv_support.decide(DECIDE, asked.id, approve=True)
    assert decided.request.status == "approved" and decided.request.decided_by == "console:boss"
    assert is_supported(services, resident)
    lift = services.dv_support.request(ASK, resident, turn_on=False, category=DvCategory.ENDED)
    services.dv_support.decide(DECIDE, lift.id, approve=True)
    assert not is_supported(services, resident)
    with services.uow() as uow:
        records = [(r.actor, r.action, json.loads(r.payload)) for r in uow.audit.iterate()
                   if r.action.startswith(("dv.", "resident.dv"))]
    assert [(actor, action) for actor, action, _ in records] == [
        ("console:kiyose", "dv.requested"), ("console:boss", "resident.dv_support"),
        ("console:kiyose", "dv.requested"), ("console:boss", "resident.dv_support")]
    assert records[1][2] == {"on": True, "request": asked.id, "category": "stalking",
                             "requested_by": "console:kiyose"}


def test_the_one_who_asked_cannot_decide(services: Services,
                                         new_resident: Callable[..., str]) -> None:
    resident = new_resident()
    national = Principal.local_operator("alone")
    asked = services.dv_support.request(authorize(national, Operation.DV_REQUEST), resident,
                                        turn_on=True, category=DvCategory.DOMESTIC_VIOLENCE)
    with pytest.raises(SecondPersonRequired):
        services.dv_support.decide(authorize(national, Operation.DV_DECIDE), asked.id,
                                   approve=True)
    assert not is_supported(services, resident)
    assert services.dv_support.pending(DECIDE)[0].status == "pending"


def test_a_rejection_changes_nothing_and_a_decision_is_final(
        services: Services, new_resident: Callable[..., str]) -> None:
    resident = new_resident()
    asked = services.dv_support.request(ASK, resident, turn_on=True, category=DvCategory.OTHER)
    with pytest.raises(DvRequestPending):  # one request at a time per resident
        services.dv_support.request(ASK, resident, turn_on=True, category=DvCategory.OTHER)
    services.dv_support.decide(DECIDE, asked.id, approve=False)
    assert not is_supported(services, resident)
    with pytest.raises(DvRequestDecided):
        services.dv_support.decide(DECIDE, asked.id, approve=True)
    assert services.dv_support.pending(DECIDE) == []


def test_bad_requests_are_refused(services: Services,
                                  new_resident: Callable[..., str]) -> None:
    here = new_resident()
    elsewhere = new_resident(municipality="131016", address="東京都千代田区千代田１番１号")
    with pytest.raises(MissingScope):
        services.dv_support.request(ASK, elsewhere, turn_on=True, category=DvCategory.OTHER)
    with pytest.raises(InvalidInput):  # lifting what is not set
        services.dv_support.request(ASK, here, turn_on=False, category=DvCategory.ENDED)
    with pytest.raises(InvalidInput):  # setting gives a reason, not "ended"
        services.dv_support.request(ASK, here, turn_on=True, category=DvCategory.ENDED)
    with pytest.raises(MissingScope):  # a municipality's operator does not decide
        authorize(CLERK, Operation.DV_DECIDE)
    assert services.dv_support.pending(DECIDE) == []
