"""The call centre (jpki.registry.call_centre, jpki.registry.cards.report_lost): a caller's file
is found only from their card number and date of birth, shows no basic 4 information, answers
alike for an unknown card and a wrong date, audits every attempt without the date; a card
reported lost by phone has its certificates put on hold. Both databases, the real HSM."""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from api.composition import Services
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import CardInactive, WrongRole
from jpki.model import CardStatus, CertKind, RevocationReason
from jpki.registry.call_centre import CallerNotVerified, Standing
from tests.holder_kit import Holder, new_holder

pytestmark = pytest.mark.hsm

AGENT = Principal(actor="console:agent", kind=PrincipalKind.CALL_CENTRE)
VERIFY = authorize(AGENT, Operation.CALLER_VERIFY)
HOLD = authorize(AGENT, Operation.MOBILE_HOLD)
LOST = authorize(AGENT, Operation.CARD_LOSS_REPORT)
BIRTH = date(1990, 1, 2)  # tests/holder_kit.py's holder


@pytest.fixture(scope="module")
def pool() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(65537, 2048) for _ in range(6)]


def card_number(services: Services, holder: Holder) -> str:
    with services.uow() as uow:
        card = uow.cards.active_for_resident(holder.resident_id)
        assert card is not None
        return card.number


def checks(services: Services) -> list[dict[str, object]]:
    with services.uow() as uow:
        return [{"subject": r.subject, **json.loads(r.payload)} for r in uow.audit.iterate()
                if r.action == "callcentre.caller_checked"]


def test_a_verified_caller_sees_card_and_phone_certificates_and_no_basic4(
        services: Services, pool: list[rsa.RSAPrivateKey]) -> None:
    holder = new_holder(services, list(pool))
    holder.enrol_phone()
    number = card_number(services, holder)
    file = services.call_centre.verify_caller(VERIFY, number.lower(), BIRTH)
    assert file.card_number == number and file.card_status is CardStatus.ACTIVE
    assert {c.kind for c in file.certificates} == set(CertKind)
    assert all(c.standing is Standing.VALID for c in file.certificates)
    assert file.holdable_phone
    # Nothing of the basic 4 information is in what the agent is given.
    shown = json.dumps(dataclasses.asdict(file), default=str)
    # The birth date in the forms it could take; not the bare year, which a random serial or
    # identifier in the file may contain (it did, once in a while).
    for personal in ("山田", "太郎", "清瀬", "1990-01-02", "19900102", "1990/01/02", "平成2年"):
        assert personal not in shown


def test_a_wrong_date_answers_as_an_unknown_card_and_both_are_audited_without_it(
        services: Services, pool: list[rsa.RSAPrivateKey]) -> None:
    holder = new_holder(services, list(pool))
    number = card_number(services, holder)
    refusals = []
    for card, birth in ((number, date(1990, 1, 3)), ("ZZZZZZZZ0000", BIRTH)):
        with pytest.raises(CallerNotVerified) as refused:
            services.call_centre.verify_caller(VERIFY, card, birth)
        refusals.append((refused.value.detail, refused.value.context))
    assert refusals[0] == refusals[1]
    services.call_centre.verify_caller(VERIFY, number, BIRTH)
    audited = checks(services)
    assert [a["matched"] for a in audited] == [False, False, True]
    assert "1990-01-03" not in json.dumps(audited) and "19900103" not in json.dumps(audited)


def test_a_lost_phone_then_a_lost_card_put_everything_on_hold(
        services: Services, pool: list[rsa.RSAPrivateKey]) -> None:
    holder = new_holder(services, list(pool))
    holder.enrol_phone()
    number = card_number(services, holder)
    file = services.call_centre.verify_caller(VERIFY, number, BIRTH)
    services.mobile.hold(HOLD, file.resident_id)
    file = services.call_centre.verify_caller(VERIFY, number, BIRTH)
    standing = {c.kind: c.standing for c in file.certificates}
    assert standing[CertKind.MOBILE_SIGN] is standing[CertKind.MOBILE_AUTH] is Standing.ON_HOLD
    assert standing[CertKind.CARD_SIGN] is Standing.VALID and not file.holdable_phone
    outcome = services.cards.report_lost(LOST, number)
    assert outcome.card.status is CardStatus.LOST
    assert {r.reason for r in outcome.revocations} == {RevocationReason.CERTIFICATE_HOLD}
    file = services.call_centre.verify_caller(VERIFY, number, BIRTH)
    assert {c.standing for c in file.certificates} == {Standing.ON_HOLD}
    with pytest.raises(CardInactive):  # reported twice: the second changes nothing
        services.cards.report_lost(LOST, number)


def test_only_the_call_centre_verifies_callers_and_takes_loss_reports() -> None:
    for kind in PrincipalKind:
        if kind is PrincipalKind.CALL_CENTRE:
            continue
        principal = Principal(actor="x", kind=kind)
        for operation in (Operation.CALLER_VERIFY, Operation.CARD_LOSS_REPORT):
            with pytest.raises(WrongRole):
                authorize(principal, operation)
