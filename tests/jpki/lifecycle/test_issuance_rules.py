"""The lifecycle rules issuance shares with the registry and the counter, on values already
read (jpki.lifecycle.residents, .proofing, .cards): the entity and issuance's plain value get
the same answers, and each refusal is the one its rule names. No database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from jpki.access.authz import Operation, authorize
from jpki.access.principals import MUNICIPALITY_SCOPE, Principal, PrincipalKind
from jpki.errors import CardConflict, CardExpired, MissingScope, ResidentInactive, ResidentNotFound
from jpki.lifecycle.cards import CardSpec, choose_card
from jpki.lifecycle.proofing import ProofingRequired, check_proofing, require_proofing_id
from jpki.lifecycle.residents import check_active_resident
from jpki.model import (
    Card,
    CardFacts,
    CardStatus,
    ProofingFacts,
    ProofingRecord,
    RegistrySource,
    Resident,
    ResidentFacts,
    ResidentStatus,
)

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
STATION = Principal(actor="client:desk", kind=PrincipalKind.STATION,
                    scopes=frozenset({MUNICIPALITY_SCOPE + "132217"}))
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)


def _resident(status: ResidentStatus = ResidentStatus.ACTIVE,
              municipality: str = "132217") -> tuple[Resident, ResidentFacts]:
    fields = {"id": "r1", "municipality_code": municipality,
              "registry_source": RegistrySource.JUMINHYO, "status": status,
              "name": "山田 太郎", "birth_date": date(1990, 1, 2), "sex": 1,
              "address": "東京都清瀬市中里一丁目２番３号"}
    return (Resident(**fields, dv_support=False, created_at=NOW, updated_at=NOW),
            ResidentFacts(**fields))


@pytest.mark.parametrize("case, error", [
    ("missing", ResidentNotFound),
    ("ended", ResidentInactive),
    ("other municipality", MissingScope),
])
def test_a_resident_is_refused_alike_as_entity_and_as_value(case, error):
    status = ResidentStatus.DECEASED if case == "ended" else ResidentStatus.ACTIVE
    municipality = "131016" if case == "other municipality" else "132217"
    for resident in _resident(status, municipality):
        with pytest.raises(error):
            check_active_resident(None if case == "missing" else resident, "r1", ISSUE)
    entity, facts = _resident()
    assert check_active_resident(entity, "r1", ISSUE) is entity
    assert check_active_resident(facts, "r1", ISSUE) is facts
    # personal data stays out of the value's repr, as out of the entity's
    assert "山田" not in repr(facts) and "1990" not in repr(facts)


def _proofings(**changes: object) -> tuple[ProofingRecord, ProofingFacts]:
    fields: dict = {"id": "p1", "resident_id": "r1", "station": STATION.actor,
                    "expires_at": NOW + timedelta(hours=1), "used_at": None}
    fields.update(changes)
    return (ProofingRecord(**fields, presence="in_person", pattern="A", evidence="{}",
                           created_at=NOW), ProofingFacts(**fields))


@pytest.mark.parametrize("changes, message", [
    ({"resident_id": "r2"}, "no such proofing record"),
    ({"station": "client:other"}, "no such proofing record"),
    ({"used_at": NOW - timedelta(minutes=1)}, "used already"),
    ({"expires_at": NOW}, "expired"),
])
def test_a_proofing_record_is_refused_alike_as_entity_and_as_value(changes, message):
    for record in _proofings(**changes):
        with pytest.raises(ProofingRequired, match=message):
            check_proofing(record, STATION, "r1", NOW)
    for record in _proofings():
        assert check_proofing(record, STATION, "r1", NOW) is record
    with pytest.raises(ProofingRequired, match="no such"):
        check_proofing(None, STATION, "r1", NOW)
    with pytest.raises(ProofingRequired, match="first"):
        require_proofing_id(None)
    assert require_proofing_id("x" * 80) == "x" * 64


def _cards(expires: date = date(2030, 1, 1)) -> tuple[Card, CardFacts]:
    return (Card(id=7, resident_id="r1", number="CARD0001", expires_on=expires,
                 status=CardStatus.ACTIVE, created_at=NOW, status_changed_at=NOW),
            CardFacts(id=7, resident_id="r1", number="CARD0001", expires_on=expires,
                      status=CardStatus.ACTIVE))


def _never_taken(_number: str) -> bool:
    return False


def test_the_active_card_is_chosen_alike_as_entity_and_as_value():
    birth = date(1990, 1, 2)
    for card in _cards():
        choice = choose_card(birth, CardSpec(number="card0001"), card, _never_taken, NOW)
        assert choice.existing is card and choice.number == "CARD0001"
        with pytest.raises(CardConflict, match="another number"):
            choose_card(birth, CardSpec(number="CARD0002"), card, _never_taken, NOW)
        with pytest.raises(CardConflict, match="expiry"):
            choose_card(birth, CardSpec(expires_on=date(2031, 1, 1)), card, _never_taken, NOW)
    for card in _cards(expires=date(2026, 12, 1)):
        with pytest.raises(CardExpired):
            choose_card(birth, None, card, _never_taken, NOW)


def test_a_new_card_needs_a_free_number_and_a_future_expiry():
    birth = date(1990, 1, 2)
    with pytest.raises(CardConflict, match="another card record"):
        choose_card(birth, CardSpec(number="TAKEN001"), None, lambda n: n == "TAKEN001", NOW)
    with pytest.raises(CardExpired):
        choose_card(birth, CardSpec(expires_on=date(2026, 12, 1)), None, _never_taken, NOW)
    fresh = choose_card(birth, None, None, _never_taken, NOW)
    assert fresh.existing is None and len(fresh.number) == 16 and fresh.number.isdigit()
    # reference §1.4: an adult's card runs to the 10th birthday after issuance
    assert fresh.expires_on == date(2036, 1, 2)
    given = choose_card(birth, CardSpec(number="new00001"), None, _never_taken, NOW)
    assert given.number == "NEW00001"
