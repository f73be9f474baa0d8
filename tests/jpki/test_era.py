"""jpki.era: era codes of the dateOfBirth otherName (reference §1.3)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jpki.era import ERA_STARTS, Era, decode_birth_date, encode_birth_date, era_of
from jpki.errors import InvalidDate


class TestEraOf:
    @pytest.mark.parametrize(
        ("d", "era"),
        [
            (date(1868, 1, 24), Era.UNKNOWN),  # the day before Meiji 1-01-01
            (date(1868, 1, 25), Era.MEIJI),  # Meiji 1-01-01 (= Keiō 4-01-01) in Gregorian
            (date(1912, 7, 29), Era.MEIJI),
            (date(1912, 7, 30), Era.TAISHO),
            (date(1926, 12, 24), Era.TAISHO),
            (date(1926, 12, 25), Era.SHOWA),
            (date(1989, 1, 7), Era.SHOWA),
            (date(1989, 1, 8), Era.HEISEI),
            (date(2019, 4, 30), Era.HEISEI),
            (date(2019, 5, 1), Era.REIWA),
            (date(1, 1, 1), Era.UNKNOWN),
            (date(9999, 12, 31), Era.REIWA),
        ],
    )
    def test_boundaries(self, d: date, era: Era) -> None:
        assert era_of(d) is era

    def test_codes(self) -> None:
        assert [int(e) for e in Era] == [0, 1, 2, 3, 4, 5]
        assert [e for e, _ in ERA_STARTS] == [
            Era.REIWA,
            Era.HEISEI,
            Era.SHOWA,
            Era.TAISHO,
            Era.MEIJI,
        ]

    @given(st.dates(), st.dates())
    def test_monotonic(self, a: date, b: date) -> None:
        if a <= b:
            assert era_of(a) <= era_of(b)


class TestEncode:
    @pytest.mark.parametrize(
        ("d", "encoded"),
        [
            (date(1990, 1, 2), "419900102"),  # reference §1.3 example (Heisei)
            (date(1899, 12, 1), "118991201"),  # reference §1.3 mock (Meiji)
            (date(1989, 1, 7), "319890107"),
            (date(1989, 1, 8), "419890108"),
            (date(2019, 4, 30), "420190430"),
            (date(2019, 5, 1), "520190501"),
            (date(1867, 12, 31), "018671231"),  # before Meiji: unknown
            (date(999, 1, 1), "009990101"),  # year is zero-padded to 4 digits
        ],
    )
    def test_examples(self, d: date, encoded: str) -> None:
        assert encode_birth_date(d) == encoded

    def test_refuses_datetime(self) -> None:
        with pytest.raises(InvalidDate):
            encode_birth_date(datetime(1990, 1, 2, 12, 0))

    @given(st.dates())
    def test_round_trip(self, d: date) -> None:
        s = encode_birth_date(d)
        assert len(s) == 9 and s.isascii() and s.isdigit()
        assert decode_birth_date(s) == d


class TestDecode:
    def test_examples(self) -> None:
        assert decode_birth_date("419900102") == date(1990, 1, 2)
        assert decode_birth_date("118991201") == date(1899, 12, 1)

    @pytest.mark.parametrize("s", ["019900102", "020250101", "018000101"])
    def test_unknown_era_accepts_any_date(self, s: str) -> None:
        decode_birth_date(s)

    @pytest.mark.parametrize(
        ("s", "rule"),
        [
            ("319900102", "era_mismatch"),  # 1990 is Heisei, not Showa
            ("419890107", "era_mismatch"),  # last day of Showa
            ("520190430", "era_mismatch"),  # last day of Heisei
            ("118680124", "era_mismatch"),  # before Meiji
            ("619900102", "era_code"),
            ("919900102", "era_code"),
            ("419900230", "calendar"),
            ("419900000", "calendar"),  # partially unknown dates cannot be a `date`
            ("41990010", "length"),
            ("4199001020", "length"),
            ("", "length"),
            ("４19900102", "digits"),  # full-width digit
            ("4199O0102", "digits"),
            (" 19900102", "digits"),
        ],
    )
    def test_rejects(self, s: str, rule: str) -> None:
        with pytest.raises(InvalidDate) as info:
            decode_birth_date(s)
        assert info.value.context["rule"] == rule
        assert info.value.context["field"] == "birth_date"

    def test_error_never_carries_the_value(self) -> None:
        with pytest.raises(InvalidDate) as info:
            decode_birth_date("319900102")
        exc = info.value
        for text in (str(exc), repr(exc), exc.detail, repr(exc.context)):
            assert "1990" not in text
            assert "0102" not in text

    def test_non_string(self) -> None:
        with pytest.raises(InvalidDate):
            decode_birth_date(419900102)  # type: ignore[arg-type]
