"""jpki.validity: certificate and card validity rules (reference §1.4)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jpki.errors import CardExpired, InvalidDate, RenewalOutsideWindow, UnderageSigning
from jpki.validity import (
    JST,
    add_months,
    age_on,
    birthday_in_year,
    card_expiry,
    certificate_not_after,
    check_renewal_window,
    check_signing_age,
    end_of_day_jst,
    in_renewal_window,
    jst_date,
    may_hold_signing_certificate,
    minimum_signing_age,
    nth_birthday_after,
    renewal_window_start,
)

ONE_SECOND = timedelta(seconds=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


class TestJstDays:
    def test_jst(self) -> None:
        assert JST.utcoffset(None) == timedelta(hours=9)
        assert JST.tzname(None) == "JST"

    def test_end_of_day(self) -> None:
        got = end_of_day_jst(date(2030, 2, 17))
        assert got == utc(2030, 2, 17, 14, 59, 59)
        assert got.tzinfo is UTC
        assert got.microsecond == 0
        assert got.astimezone(JST).time() == time(23, 59, 59)

    def test_jst_date_boundary(self) -> None:
        assert jst_date(utc(2025, 10, 26, 14, 59, 59)) == date(2025, 10, 26)
        assert jst_date(utc(2025, 10, 26, 15, 0, 0)) == date(2025, 10, 27)
        other = timezone(timedelta(hours=-5))
        assert jst_date(datetime(2025, 10, 26, 10, 0, tzinfo=other)) == date(2025, 10, 27)

    def test_jst_date_refuses_naive(self) -> None:
        with pytest.raises(InvalidDate):
            jst_date(datetime(2025, 10, 26, 15, 0))


class TestBirthdays:
    def test_birthday_in_year(self) -> None:
        assert birthday_in_year(date(1990, 2, 17), 2030) == date(2030, 2, 17)
        # Feb 29 births: 28 Feb in common years (民法 §143 proviso), 29 Feb in leap years.
        assert birthday_in_year(date(2004, 2, 29), 2025) == date(2025, 2, 28)
        assert birthday_in_year(date(2004, 2, 29), 2028) == date(2028, 2, 29)
        assert birthday_in_year(date(2004, 2, 29), 2100) == date(2100, 2, 28)  # 2100 is common
        assert birthday_in_year(date(2004, 2, 29), 2000) == date(2000, 2, 29)

    def test_test_card_example(self) -> None:
        # reference §1.2 (MYNACARD-TEST): issued 2025-10-27, birthday 17 Feb → 2030-02-17.
        assert nth_birthday_after(date(1990, 2, 17), date(2025, 10, 27), 5) == date(2030, 2, 17)

    def test_issuance_on_birthday_does_not_count(self) -> None:
        birth = date(1990, 2, 17)
        assert nth_birthday_after(birth, date(2025, 2, 17), 1) == date(2026, 2, 17)
        assert nth_birthday_after(birth, date(2025, 2, 17), 5) == date(2030, 2, 17)
        assert nth_birthday_after(birth, date(2025, 2, 16), 1) == date(2025, 2, 17)
        assert nth_birthday_after(birth, date(2025, 2, 16), 5) == date(2029, 2, 17)

    @pytest.mark.parametrize(
        ("after", "n", "expected"),
        [
            (date(2024, 2, 28), 1, date(2024, 2, 29)),  # leap year, day before
            (date(2024, 2, 28), 5, date(2028, 2, 29)),
            (date(2024, 2, 29), 1, date(2025, 2, 28)),  # issued on the birthday: not counted
            (date(2024, 2, 29), 5, date(2029, 2, 28)),  # 5th lands in a common year
            (date(2025, 2, 28), 1, date(2026, 2, 28)),  # common year: 28 Feb is the birthday
            (date(2025, 2, 27), 1, date(2025, 2, 28)),
            (date(2023, 3, 1), 5, date(2028, 2, 29)),  # 5th lands in a leap year
            (date(2024, 3, 1), 5, date(2029, 2, 28)),
        ],
    )
    def test_feb_29(self, after: date, n: int, expected: date) -> None:
        assert nth_birthday_after(date(2004, 2, 29), after, n) == expected

    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            nth_birthday_after(date(1990, 1, 1), date(2000, 1, 1), 0)
        with pytest.raises(InvalidDate):
            nth_birthday_after(date(1990, 1, 1), date(1989, 12, 31), 5)

    @given(
        birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2090, 12, 31)),
        offset=st.integers(min_value=0, max_value=120 * 366),
        n=st.integers(min_value=1, max_value=10),
    )
    def test_nth_birthday_properties(self, birth: date, offset: int, n: int) -> None:
        after = birth + timedelta(days=offset)
        if after.year + n > 9999:
            return
        got = nth_birthday_after(birth, after, n)
        assert got > after
        assert got == birthday_in_year(birth, got.year)
        first = nth_birthday_after(birth, after, 1)
        assert got.year == first.year + n - 1
        # the first one is less than a year (and a day, for Feb 29) away
        assert (first - after).days <= 366


class TestAge:
    def test_ordinary(self) -> None:
        birth = date(2010, 6, 15)
        assert age_on(birth, birth) == 0
        assert age_on(birth, date(2025, 6, 14)) == 14
        assert age_on(birth, date(2025, 6, 15)) == 15
        assert age_on(birth, date(2025, 12, 31)) == 15

    def test_feb_29(self) -> None:
        # 年齢計算ニ関スル法律 + 民法 §143: the age is reached at the end of 28 Feb in a common
        # year, so the person is still 14 during 28 Feb and 15 from 1 Mar.
        birth = date(2008, 2, 29)
        assert age_on(birth, date(2023, 2, 28)) == 14
        assert age_on(birth, date(2023, 3, 1)) == 15
        assert age_on(birth, date(2024, 2, 28)) == 15
        assert age_on(birth, date(2024, 2, 29)) == 16

    def test_before_birth(self) -> None:
        with pytest.raises(InvalidDate):
            age_on(date(2010, 1, 1), date(2009, 12, 31))


class TestCardExpiry:
    def test_adult(self) -> None:
        # reference §1.4 (WIKI-CARD): 10th birthday after issuance for 18+.
        assert card_expiry(date(1990, 2, 17), date(2025, 10, 27)) == date(2035, 2, 17)

    def test_minor(self) -> None:
        assert card_expiry(date(2015, 2, 17), date(2025, 10, 27)) == date(2030, 2, 17)

    def test_eighteen_boundary(self) -> None:
        birth = date(2007, 10, 27)
        assert card_expiry(birth, date(2025, 10, 26)) == date(2029, 10, 27)  # still 17
        assert card_expiry(birth, date(2025, 10, 27)) == date(2035, 10, 27)  # 18 that day


class TestAddMonths:
    @pytest.mark.parametrize(
        ("d", "months", "expected"),
        [
            (date(2030, 5, 31), -3, date(2030, 2, 28)),
            (date(2028, 5, 31), -3, date(2028, 2, 29)),
            (date(2030, 1, 31), 1, date(2030, 2, 28)),
            (date(2030, 3, 31), -1, date(2030, 2, 28)),
            (date(2030, 2, 17), -3, date(2029, 11, 17)),
            (date(2030, 1, 15), -1, date(2029, 12, 15)),
            (date(2030, 12, 15), 1, date(2031, 1, 15)),
            (date(2030, 8, 31), -3, date(2030, 5, 31)),
            (date(2030, 7, 31), -3, date(2030, 4, 30)),
            (date(2030, 6, 15), 0, date(2030, 6, 15)),
            (date(2030, 6, 15), 24, date(2032, 6, 15)),
        ],
    )
    def test_examples(self, d: date, months: int, expected: date) -> None:
        assert add_months(d, months) == expected

    def test_out_of_range(self) -> None:
        with pytest.raises(InvalidDate):
            add_months(date(1, 1, 1), -1)


class TestRenewalWindow:
    def test_start(self) -> None:
        not_after = end_of_day_jst(date(2030, 2, 17))
        start = renewal_window_start(not_after)
        assert start == datetime(2029, 11, 17, tzinfo=JST)
        assert start == utc(2029, 11, 16, 15, 0, 0)

    @pytest.mark.parametrize(
        ("expiry", "window_day"),
        [
            (date(2030, 5, 31), date(2030, 2, 28)),  # clamped to the end of February
            (date(2028, 5, 31), date(2028, 2, 29)),  # leap year
            (date(2030, 5, 30), date(2030, 2, 28)),
            (date(2030, 5, 28), date(2030, 2, 28)),
            (date(2030, 5, 27), date(2030, 2, 27)),
        ],
    )
    def test_month_end(self, expiry: date, window_day: date) -> None:
        start = renewal_window_start(end_of_day_jst(expiry))
        assert start == datetime.combine(window_day, time(0), JST)

    def test_edges(self) -> None:
        not_after = end_of_day_jst(date(2030, 2, 17))
        start = renewal_window_start(not_after)
        assert in_renewal_window(not_after, start)
        assert not in_renewal_window(not_after, start - ONE_SECOND)
        assert in_renewal_window(not_after, not_after)
        assert not in_renewal_window(not_after, not_after + ONE_SECOND)
        assert in_renewal_window(not_after, start.astimezone(JST))  # any timezone

    def test_check(self) -> None:
        not_after = end_of_day_jst(date(2030, 2, 17))
        check_renewal_window(not_after, not_after)
        with pytest.raises(RenewalOutsideWindow):
            check_renewal_window(not_after, renewal_window_start(not_after) - ONE_SECOND)

    def test_naive_now(self) -> None:
        with pytest.raises(InvalidDate):
            in_renewal_window(end_of_day_jst(date(2030, 2, 17)), datetime(2030, 1, 1))


class TestCertificateNotAfter:
    BIRTH = date(1990, 2, 17)
    ISSUED = utc(2025, 10, 27, 1, 0, 0)
    CARD = date(2035, 2, 17)

    def test_test_card(self) -> None:
        got = certificate_not_after(
            birth=self.BIRTH, issued_at=self.ISSUED, renewal=False, card_expiry=self.CARD
        )
        assert got == utc(2030, 2, 17, 14, 59, 59)
        assert got.tzinfo is UTC

    def test_renewal_sixth_birthday(self) -> None:
        got = certificate_not_after(
            birth=self.BIRTH, issued_at=self.ISSUED, renewal=True, card_expiry=self.CARD
        )
        assert got == utc(2031, 2, 17, 14, 59, 59)

    def test_capped_by_card(self) -> None:
        # reference §1.4: capped by the card's expiry date.
        got = certificate_not_after(
            birth=self.BIRTH, issued_at=self.ISSUED, renewal=False, card_expiry=date(2028, 6, 30)
        )
        assert got == utc(2028, 6, 30, 14, 59, 59)

    def test_capped_by_auth_certificate(self) -> None:
        # reference §1.4: the sign cert ends no later than the auth cert.
        cap = end_of_day_jst(date(2027, 1, 1))
        got = certificate_not_after(
            birth=self.BIRTH,
            issued_at=self.ISSUED,
            renewal=False,
            card_expiry=date(2028, 6, 30),
            cap=cap,
        )
        assert got == cap

    def test_unaligned_cap_rounds_down(self) -> None:
        cap = utc(2027, 1, 1, 10, 0, 0)  # 19:00 JST on 1 Jan
        got = certificate_not_after(
            birth=self.BIRTH, issued_at=self.ISSUED, renewal=False, card_expiry=self.CARD, cap=cap
        )
        assert got == utc(2026, 12, 31, 14, 59, 59)
        cap = utc(2027, 1, 1, 15, 30, 0)  # 00:30 JST on 2 Jan
        got = certificate_not_after(
            birth=self.BIRTH, issued_at=self.ISSUED, renewal=False, card_expiry=self.CARD, cap=cap
        )
        assert got == utc(2027, 1, 1, 14, 59, 59)

    def test_later_cap_changes_nothing(self) -> None:
        got = certificate_not_after(
            birth=self.BIRTH,
            issued_at=self.ISSUED,
            renewal=False,
            card_expiry=self.CARD,
            cap=end_of_day_jst(date(2034, 1, 1)),
        )
        assert got == utc(2030, 2, 17, 14, 59, 59)

    def test_utc_jst_day_boundary(self) -> None:
        birth = date(1990, 10, 28)
        # 14:59:59Z is still 27 Oct in Japan: the birthday on 28 Oct 2025 is the first after.
        before = certificate_not_after(
            birth=birth,
            issued_at=utc(2025, 10, 27, 14, 59, 59),
            renewal=False,
            card_expiry=self.CARD,
        )
        assert before == utc(2029, 10, 28, 14, 59, 59)
        # 15:00Z is 28 Oct 00:00 JST: issued on the birthday, which does not count.
        after = certificate_not_after(
            birth=birth,
            issued_at=utc(2025, 10, 27, 15, 0, 0),
            renewal=False,
            card_expiry=self.CARD,
        )
        assert after == utc(2030, 10, 28, 14, 59, 59)

    def test_feb_29(self) -> None:
        got = certificate_not_after(
            birth=date(2004, 2, 29),
            issued_at=utc(2024, 3, 1, 1, 0, 0),
            renewal=False,
            card_expiry=date(2034, 2, 28),
        )
        assert got == utc(2029, 2, 28, 14, 59, 59)

    def test_card_expires_on_issuance_day(self) -> None:
        issued = utc(2025, 10, 27, 1, 0, 0)
        got = certificate_not_after(
            birth=self.BIRTH, issued_at=issued, renewal=False, card_expiry=date(2025, 10, 27)
        )
        assert got == utc(2025, 10, 27, 14, 59, 59)

    def test_card_expired(self) -> None:
        with pytest.raises(CardExpired):
            certificate_not_after(
                birth=self.BIRTH,
                issued_at=self.ISSUED,
                renewal=False,
                card_expiry=date(2025, 10, 26),
            )

    def test_empty_validity(self) -> None:
        last_moment = datetime(2025, 10, 27, 23, 59, 59, 500_000, tzinfo=JST)
        with pytest.raises(InvalidDate):
            certificate_not_after(
                birth=self.BIRTH,
                issued_at=last_moment,
                renewal=False,
                card_expiry=date(2025, 10, 27),
            )
        with pytest.raises(InvalidDate):
            certificate_not_after(
                birth=self.BIRTH,
                issued_at=self.ISSUED,
                renewal=False,
                card_expiry=self.CARD,
                cap=self.ISSUED - timedelta(days=1),
            )

    def test_naive(self) -> None:
        with pytest.raises(InvalidDate):
            certificate_not_after(
                birth=self.BIRTH,
                issued_at=datetime(2025, 10, 27),
                renewal=False,
                card_expiry=self.CARD,
            )
        with pytest.raises(InvalidDate):
            certificate_not_after(
                birth=self.BIRTH,
                issued_at=self.ISSUED,
                renewal=False,
                card_expiry=self.CARD,
                cap=datetime(2027, 1, 1),
            )

    @given(
        birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)),
        issued_offset=st.integers(min_value=0, max_value=100 * 365),
        seconds=st.integers(min_value=0, max_value=86_399),
        renewal=st.booleans(),
        card_days=st.integers(min_value=-3, max_value=12 * 366),
        cap_seconds=st.none() | st.integers(min_value=-86_400, max_value=12 * 366 * 86_400),
    )
    def test_properties(
        self,
        birth: date,
        issued_offset: int,
        seconds: int,
        renewal: bool,
        card_days: int,
        cap_seconds: int | None,
    ) -> None:
        issued_on = birth + timedelta(days=issued_offset)
        issued_at = datetime.combine(issued_on, time(0), JST) + timedelta(seconds=seconds)
        card = issued_on + timedelta(days=card_days)
        cap = None if cap_seconds is None else issued_at + timedelta(seconds=cap_seconds)
        try:
            got = certificate_not_after(
                birth=birth, issued_at=issued_at, renewal=renewal, card_expiry=card, cap=cap
            )
        except CardExpired:
            assert card < issued_on
            return
        except InvalidDate:
            assert cap is not None or card == issued_on
            return
        assert got.tzinfo is UTC
        assert (got.hour, got.minute, got.second, got.microsecond) == (14, 59, 59, 0)
        assert got > issued_at
        assert got <= end_of_day_jst(card)
        if cap is not None:
            assert got <= cap
        n = 6 if renewal else 5
        assert got <= end_of_day_jst(nth_birthday_after(birth, issued_on, n))
        # never shorter than needed: exactly the earliest of the limits
        limits = [end_of_day_jst(nth_birthday_after(birth, issued_on, n)), end_of_day_jst(card)]
        if cap is not None:
            # the last 14:59:59Z at or before the cap, computed independently
            floor = cap.astimezone(UTC).replace(hour=14, minute=59, second=59, microsecond=0)
            limits.append(floor if floor <= cap else floor - timedelta(days=1))
        assert got == min(limits)


class TestSigningAge:
    def test_minimum(self) -> None:
        assert minimum_signing_age() == 15

    def test_boundary(self) -> None:
        birth = date(2010, 6, 15)
        assert not may_hold_signing_certificate(birth, date(2025, 6, 14))
        assert may_hold_signing_certificate(birth, date(2025, 6, 15))
        with pytest.raises(UnderageSigning):
            check_signing_age(birth, date(2025, 6, 14))
        check_signing_age(birth, date(2025, 6, 15))

    def test_feb_29(self) -> None:
        birth = date(2008, 2, 29)
        assert not may_hold_signing_certificate(birth, date(2023, 2, 28))
        assert may_hold_signing_certificate(birth, date(2023, 3, 1))


# --- the exact second and the codes clients receive ------------------------------------


def invalid(call: object, *args: object, **kwargs: object) -> tuple[str, dict[str, object]]:
    """The detail and the context (``field``/``rule``: the problem document's stable codes) of
    the InvalidDate a call raises."""
    with pytest.raises(InvalidDate) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.code == InvalidDate.code
    return caught.value.detail, caught.value.context


class TestExactSecond:
    BIRTH = date(1990, 2, 17)
    CARD = date(2025, 10, 27)

    def not_after(self, issued_at: datetime) -> datetime:
        return certificate_not_after(birth=self.BIRTH, issued_at=issued_at, renewal=False,
                                     card_expiry=self.CARD)

    def test_issued_at_23_59_59_000_jst_on_the_card_expiry_day_is_refused(self) -> None:
        """notAfter would equal notBefore: an empty validity (`<=`, not `<`)."""
        last = datetime(2025, 10, 27, 23, 59, 59, tzinfo=JST)
        assert invalid(self.not_after, last) == (
            "the certificate would expire before it is issued",
            {"field": "not_after", "rule": "empty"})

    def test_issued_one_second_earlier_lasts_one_second(self) -> None:
        at = datetime(2025, 10, 27, 23, 59, 58, tzinfo=JST)
        assert self.not_after(at) == at + ONE_SECOND == utc(2025, 10, 27, 14, 59, 59)


class TestCodes:
    @pytest.mark.parametrize("call", [
        lambda: jst_date(datetime(2026, 1, 1)),
        lambda: in_renewal_window(utc(2030, 1, 1), datetime(2026, 1, 1)),
        lambda: certificate_not_after(birth=date(1990, 1, 1), issued_at=datetime(2026, 1, 1),
                                      renewal=False, card_expiry=date(2030, 1, 1)),
        lambda: certificate_not_after(birth=date(1990, 1, 1), issued_at=utc(2026, 1, 1),
                                      renewal=False, card_expiry=date(2030, 1, 1),
                                      cap=datetime(2027, 1, 1)),
    ], ids=["instant", "now", "issued_at", "cap"])
    def test_a_naive_datetime_names_its_field(self, call: object,
                                              request: pytest.FixtureRequest) -> None:
        what = request.node.callspec.id
        assert invalid(call) == (f"{what}: must be a timezone-aware datetime",
                                 {"field": what, "rule": "naive"})

    def test_before_birth(self) -> None:
        assert invalid(nth_birthday_after, date(2000, 1, 2), date(2000, 1, 1), 5) == (
            "the reference date is before the birth date", {"rule": "before_birth"})
        assert invalid(age_on, date(2000, 1, 2), date(2000, 1, 1)) == (
            "the date is before the birth date", {"rule": "before_birth"})

    def test_n_must_be_at_least_one(self) -> None:
        with pytest.raises(ValueError, match=r"^n must be at least 1$"):
            nth_birthday_after(date(2000, 1, 2), date(2001, 1, 1), 0)

    def test_birthday_in_year_10000(self) -> None:
        assert invalid(birthday_in_year, date(2000, 1, 2), 10000) == (
            "year out of range", {"field": "year", "rule": "range"})

    def test_nth_birthday_past_year_9999(self) -> None:
        """A birthday past 9999 is a refusal with a code, not a bare ValueError (a 500)."""
        assert invalid(nth_birthday_after, date(2000, 1, 2), date(9998, 1, 1), 5)[1] == {
            "field": "year", "rule": "range"}


class TestAddMonthsEdges:
    def test_year_10000_is_invalid_date_not_value_error(self) -> None:
        assert invalid(add_months, date(9999, 12, 1), 1) == ("date out of range",
                                                             {"rule": "range"})
        assert invalid(add_months, date(1, 1, 31), -1) == ("date out of range",
                                                           {"rule": "range"})

    def test_the_first_and_last_representable_months(self) -> None:
        assert add_months(date(9999, 11, 30), 1) == date(9999, 12, 30)
        assert add_months(date(1, 2, 28), -1) == date(1, 1, 28)

    def test_renewal_window_start_is_utc_midnight_jst(self) -> None:
        start = renewal_window_start(utc(2030, 2, 17, 14, 59, 59))
        assert start == utc(2029, 11, 16, 15) and start.tzinfo is UTC
