"""jpki.lifecycle.proofing: a proofing record is used once, by the station that recorded it, for
the resident it names, before it expires (reference §5) — each refusal one rule, with the same
answer for every record a station may not use (no probing of other stations' records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from jpki.access.principals import Principal
from jpki.lifecycle.proofing import PROOFING_LIFETIME, ProofingRequired, consume_proofing
from jpki.model import ProofingRecord

NOW = datetime(2026, 11, 27, 1, 0, 0, tzinfo=UTC)
STATION = Principal.local_operator("station-1")


@dataclass
class FakeProofings:
    records: dict[str, ProofingRecord] = field(default_factory=dict)
    asked: list[tuple[str, bool]] = field(default_factory=list)

    def get(self, proofing_id: str, *, for_update: bool = False) -> ProofingRecord | None:
        self.asked.append((proofing_id, for_update))
        return self.records.get(proofing_id)


@dataclass
class FakeUow:
    proofings: FakeProofings


def record(**changes: object) -> ProofingRecord:
    values: dict[str, object] = dict(
        id="p" * 64, resident_id="r1", station=STATION.actor, presence="in_person",
        pattern="A", evidence="{}", created_at=NOW, expires_at=NOW + PROOFING_LIFETIME)
    values.update(changes)
    return ProofingRecord(**values)  # type: ignore[arg-type]


def consume(rec: ProofingRecord | None, proofing_id: str | None = "p" * 64,
            resident_id: str = "r1", now: datetime = NOW) -> tuple[ProofingRecord, FakeUow]:
    uow = FakeUow(FakeProofings({rec.id: rec} if rec else {}))
    used = consume_proofing(uow, STATION, proofing_id, resident_id,  # type: ignore[arg-type]
                            "issuance", now)
    return used, uow


def refusal(rec: ProofingRecord | None, **kwargs: object) -> str:
    with pytest.raises(ProofingRequired) as caught:
        consume(rec, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == "proofing.required"
    return caught.value.detail


def test_a_record_is_used_once_for_a_purpose_under_a_row_lock():
    rec = record()
    used, uow = consume(rec, now=NOW + timedelta(minutes=5))
    assert used is rec
    assert (rec.used_at, rec.used_for) == (NOW + timedelta(minutes=5), "issuance")
    assert uow.proofings.asked == [("p" * 64, True)]  # two stations cannot both use it


def test_the_lifetime_is_two_hours():
    assert timedelta(hours=2) == PROOFING_LIFETIME


@pytest.mark.parametrize("proofing_id", [None, ""])
def test_no_proofing_id(proofing_id):
    assert refusal(record(), proofing_id=proofing_id) == (
        "record the identity proofing first (proofing_id)")


def test_an_over_long_id_is_cut_to_the_64_characters_ids_have():
    rec = record()
    used, uow = consume(rec, proofing_id="p" * 64 + "extra")
    assert used is rec and uow.proofings.asked == [("p" * 64, True)]


@pytest.mark.parametrize(("rec", "resident"), [
    (None, "r1"),  # no such record
    (record(), "r2"),  # another resident's
    (record(station="client:station-2"), "r1"),  # another station's
], ids=["missing", "other resident", "other station"])
def test_a_record_the_station_may_not_use_gets_one_answer(rec, resident):
    assert refusal(rec, resident_id=resident) == (
        "no such proofing record for this resident and station")


def test_a_used_record_is_refused_and_left_as_it_was():
    rec = record(used_at=NOW - timedelta(minutes=1), used_for="renewal")
    assert refusal(rec) == "this proofing record has been used already"
    assert (rec.used_at, rec.used_for) == (NOW - timedelta(minutes=1), "renewal")


def test_a_record_expires_at_its_expiry_instant():
    rec = record()
    assert refusal(rec, now=rec.expires_at) == "this proofing record has expired"
    assert rec.used_at is None
    used, _ = consume(record(), now=rec.expires_at - timedelta(seconds=1))
    assert used.used_at == rec.expires_at - timedelta(seconds=1)


def test_the_lookup_key_is_the_first_64_characters_or_empty():
    from jpki.lifecycle.proofing import proofing_key

    assert proofing_key(None) == "" and proofing_key("") == ""
    assert proofing_key("p" * 70) == "p" * 64 and proofing_key("abc") == "abc"
