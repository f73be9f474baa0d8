"""Finding a resident from what a person tells the counter (ResidentService.find): the date of
birth and the name — in kanji as registered, or its reading in any kana — within the caller's
municipalities only, at most FIND_LIMIT, audited without what was asked. Both databases."""

from __future__ import annotations

import json
from datetime import date

import pytest

from api.composition import Services
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import InvalidInput
from jpki.registry.residents import FIND_LIMIT, is_kana, normalize_kana

pytestmark = pytest.mark.hsm

LOCAL = Principal.local_operator("pytest")
REGISTER = authorize(LOCAL, Operation.RESIDENT_REGISTER)
NATIONAL = authorize(LOCAL, Operation.RESIDENT_FIND)
KIYOSE = authorize(Principal(actor="console:kiyose", kind=PrincipalKind.OPERATOR,
                             scopes=frozenset({"municipality:132217"})), Operation.RESIDENT_FIND)
BIRTH = date(1985, 4, 1)


def register(services: Services, name: str, kana: str | None, *, municipality: str = "132217",
             birth: date = BIRTH) -> str:
    return services.residents.register(
        REGISTER, name=name, name_kana=kana, birth_date=birth, sex=2,
        address="東京都清瀬市竹丘一丁目１番１号", municipality_code=municipality).id


@pytest.mark.parametrize(("raw", "stored"), [
    ("やまだ はなこ", "ヤマダ\u3000ハナコ"),  # hiragana
    ("ﾔﾏﾀﾞ ﾊﾅｺ", "ヤマダ\u3000ハナコ"),  # half-width katakana
    ("  ヤマダ\u3000\u3000ハナコ ", "ヤマダ\u3000ハナコ"),
    ("ヴァン・デ・ロー", "ヴァン・デ・ロー"),
])
def test_a_reading_is_kept_in_full_width_katakana(raw: str, stored: str) -> None:
    assert is_kana(raw) and normalize_kana(raw) == stored


@pytest.mark.parametrize("raw", ["山田 花子", "yamada", "", "   ", "ヤマダ1"])
def test_what_is_not_kana_is_not_a_reading(raw: str) -> None:
    assert not is_kana(raw)
    with pytest.raises(InvalidInput):
        normalize_kana(raw)


def test_found_by_name_or_by_reading_and_the_date_of_birth(services: Services) -> None:
    hanako = register(services, "山田 花子", "やまだ はなこ")
    register(services, "山田 花子", None, birth=date(1985, 4, 2))  # another day
    register(services, "山田 春子", "ヤマダ ハルコ")
    for asked in ("山田　花子", "山田 花子", "ヤマダ ハナコ", "やまだはなこ"[:3] + " はなこ",
                  "ﾔﾏﾀﾞ ﾊﾅｺ"):
        found = services.residents.find(NATIONAL, name=asked, birth_date=BIRTH)
        assert [r.id for r in found] == [hanako], asked
    assert services.residents.find(NATIONAL, name="山田", birth_date=BIRTH) == []


def test_a_clerk_finds_only_in_its_municipality(services: Services) -> None:
    here = register(services, "佐藤 一郎", "サトウ イチロウ")
    register(services, "佐藤 一郎", "サトウ イチロウ", municipality="131016")
    assert [r.id for r in services.residents.find(KIYOSE, name="佐藤 一郎",
                                                  birth_date=BIRTH)] == [here]
    assert len(services.residents.find(NATIONAL, name="サトウ イチロウ", birth_date=BIRTH)) == 2


def test_a_search_is_audited_without_what_was_asked_and_is_bounded(services: Services) -> None:
    for _ in range(FIND_LIMIT + 3):
        register(services, "鈴木 次郎", "スズキ ジロウ")
    found = services.residents.find(KIYOSE, name="スズキ ジロウ", birth_date=BIRTH)
    assert len(found) == FIND_LIMIT
    with services.uow() as uow:
        searched = [r for r in uow.audit.iterate() if r.action == "resident.searched"]
    assert [(r.actor, json.loads(r.payload)) for r in searched] == [
        ("console:kiyose", {"by": "kana", "found": FIND_LIMIT})]
    assert "鈴木" not in searched[0].payload and "1985" not in searched[0].payload


def test_a_bad_reading_at_registration_stores_nothing(services: Services) -> None:
    with pytest.raises(InvalidInput) as refused:
        register(services, "田中 三郎", "tanaka saburo")
    assert refused.value.context["field"] == "name_kana"
    assert services.residents.find(NATIONAL, name="田中 三郎", birth_date=BIRTH) == []
