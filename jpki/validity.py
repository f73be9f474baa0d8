"""Validity rules for end-entity certificates and cards (reference §1.4).

Instants are timezone-aware datetimes and are returned in UTC; calendar dates are JST dates, since
every rule ("the 5th birthday", "3 months before expiry", "the card's expiry date") is a Japanese
calendar date. A certificate ends at 23:59:59 JST of its last day, i.e. ``14:59:59Z``, the same
pattern as the J-LIS roots (reference §1.1 "Time encoding").

Birthdays of people born on 29 February. 年齢計算ニ関スル法律 counts age from the day of birth
and applies 民法 §143: a period counted in years ends at the end of the day before the
corresponding day of the last year, and, when the last month has no corresponding day, at the end
of that month. For a 29 February birth in a common year the period therefore ends at the end of
28 February. Two consequences, deliberately different:

* :func:`birthday_in_year` — the "birthday" that ends a validity period ("until the 5th birthday")
  is **28 February** in a common year: the last day of February, the day §143's proviso lands on.
  It is also the conservative choice: the certificate never outlives the intended period.
* :func:`age_on` — the age is *reached* at the end of 28 February (for a normal birthday, at the end
  of the day before it), so during 28 February the person still has the old age and has the new
  one from **1 March**, exactly like someone born on 1 March. (For every other birth date this is
  the usual "the age goes up on the birthday".)
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta, timezone

from jpki.errors import CardExpired, InvalidDate, RenewalOutsideWindow, UnderageSigning

__all__ = [
    "JST",
    "MINIMUM_SIGNING_AGE",
    "RENEWAL_WINDOW_MONTHS",
    "add_months",
    "age_on",
    "birthday_in_year",
    "card_expiry",
    "certificate_not_after",
    "check_renewal_window",
    "check_signing_age",
    "end_of_day_jst",
    "in_renewal_window",
    "jst_date",
    "may_hold_signing_certificate",
    "minimum_signing_age",
    "nth_birthday_after",
    "renewal_window_start",
]

JST = timezone(timedelta(hours=9), "JST")

CERTIFICATE_BIRTHDAYS = 5  # reference §1.4: until the 5th birthday after issuance
RENEWAL_CERTIFICATE_BIRTHDAYS = 6  # reference §1.4: 6th when renewed in the last 3 months
CARD_BIRTHDAYS_ADULT = 10  # reference §1.4 (WIKI-CARD): card, 18 or over at issuance
CARD_BIRTHDAYS_MINOR = 5  # reference §1.4 (WIKI-CARD): card, under 18 at issuance
ADULT_AGE = 18  # 民法 §4 since 2022-04-01
RENEWAL_WINDOW_MONTHS = 3  # reference §1.4 (FAQ-JPKI): renewal from 3 months before expiry
MINIMUM_SIGNING_AGE = 15  # reference §1.4: no signing certificate under 15

_END_OF_DAY = time(23, 59, 59)


def _require_aware(instant: datetime, what: str) -> None:
    if not isinstance(instant, datetime) or instant.utcoffset() is None:
        raise InvalidDate(f"{what}: must be a timezone-aware datetime", field=what, rule="naive")


def end_of_day_jst(d: date) -> datetime:
    """23:59:59 JST of ``d`` as a UTC instant (``14:59:59Z``), microsecond 0."""
    return datetime.combine(date(d.year, d.month, d.day), _END_OF_DAY, JST).astimezone(UTC)


def _start_of_day_jst(d: date) -> datetime:
    return datetime.combine(date(d.year, d.month, d.day), time(0, 0, 0), JST).astimezone(UTC)


def jst_date(instant: datetime) -> date:
    """The JST calendar date of an aware instant (``15:00Z`` is already the next JST day)."""
    _require_aware(instant, "instant")
    return instant.astimezone(JST).date()


def birthday_in_year(birth: date, year: int) -> date:
    """The birthday of someone born on ``birth`` in ``year``.

    A 29 February birth has its birthday on 28 February in a common year (民法 §143 proviso, see
    the module docstring).
    """
    if birth.month == 2 and birth.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    try:
        return date(year, birth.month, birth.day)
    except ValueError:
        raise InvalidDate("year out of range", field="year", rule="range") from None


def nth_birthday_after(birth: date, after: date, n: int) -> date:
    """The ``n``-th birthday strictly after the day ``after``.

    reference §1.4: 「発行の日後5回目の誕生日」 — a birthday on the issuance day itself does
    not count. Test card (MYNACARD-TEST): issued 2025-10-27, birthday 17 Feb → 2030-02-17.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if after < birth:
        raise InvalidDate("the reference date is before the birth date", rule="before_birth")
    year = after.year
    if birthday_in_year(birth, year) <= after:
        year += 1
    return birthday_in_year(birth, year + n - 1)


def age_on(birth: date, on: date) -> int:
    """Age in full years on the day ``on`` (年齢計算ニ関スル法律, 民法 §143).

    A 29 February birth gains a year on 1 March in a common year (module docstring).
    """
    if on < birth:
        raise InvalidDate("the date is before the birth date", rule="before_birth")
    # Comparing (month, day) gives exactly the §143 result, including (2, 29) vs (2, 28)/(3, 1).
    had_birthday = (on.month, on.day) >= (birth.month, birth.day)
    return on.year - birth.year - (0 if had_birthday else 1)


def card_expiry(birth: date, issued_on: date) -> date:
    """The card's expiry date: 10th birthday after issuance, 5th if under 18 at issuance.

    reference §1.4 (WIKI-CARD). Used when a card record is created without an explicit
    expiry.
    """
    minor = age_on(birth, issued_on) < ADULT_AGE
    return nth_birthday_after(
        birth, issued_on, CARD_BIRTHDAYS_MINOR if minor else CARD_BIRTHDAYS_ADULT
    )


def add_months(d: date, months: int) -> date:
    """``d`` moved by calendar months, clamped to the end of the month (31 May - 3 → 28/29 Feb)."""
    index = d.year * 12 + (d.month - 1) + months
    year, month0 = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise InvalidDate("date out of range", rule="range")
    month = month0 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def renewal_window_start(not_after: datetime) -> datetime:
    """First instant of the renewal window: 00:00:00 JST, 3 calendar months before expiry.

    reference §1.4 (FAQ-JPKI): renewal is possible from 3 months before expiry. The months are
    counted on the JST expiry date and clamped to month end.
    """
    return _start_of_day_jst(add_months(jst_date(not_after), -RENEWAL_WINDOW_MONTHS))


def in_renewal_window(not_after: datetime, now: datetime) -> bool:
    """``renewal_window_start(not_after) <= now <= not_after``."""
    _require_aware(now, "now")
    return renewal_window_start(not_after) <= now <= not_after


def check_renewal_window(not_after: datetime, now: datetime) -> None:
    """Raise :class:`RenewalOutsideWindow` unless ``now`` is inside the renewal window."""
    if not in_renewal_window(not_after, now):
        raise RenewalOutsideWindow()


def _floor_to_end_of_day_jst(instant: datetime) -> datetime:
    """The latest 23:59:59 JST at or before ``instant``."""
    candidate = end_of_day_jst(jst_date(instant))
    if candidate > instant:
        candidate = end_of_day_jst(jst_date(instant) - timedelta(days=1))
    return candidate


def certificate_not_after(
    *,
    birth: date,
    issued_at: datetime,
    renewal: bool,
    card_expiry: date,
    cap: datetime | None = None,
) -> datetime:
    """notAfter of a card certificate (reference §1.4), a UTC instant at ``14:59:59Z``.

    1. 23:59:59 JST of the 5th birthday after the JST issuance date — the 6th when ``renewal``
       (issued as a renewal within the last 3 months of the previous certificate, which the caller
       has checked with :func:`check_renewal_window`).
    2. Capped by the card's expiry date (end of that JST day).
    3. Capped by ``cap``: the signing certificate also ends no later than the user-authentication
       certificate. A cap that is not itself at 23:59:59 JST is rounded down to the last
       23:59:59 JST before it, so every notAfter keeps the ``14:59:59Z`` pattern.

    Raises :class:`CardExpired` if the card expired before the issuance day, and
    :class:`InvalidDate` if the result would not be after ``issued_at``.
    """
    _require_aware(issued_at, "issued_at")
    issued_on = jst_date(issued_at)
    # reference §1.4: capped by the card's expiry — a card past its expiry certifies nothing.
    if card_expiry < issued_on:
        raise CardExpired()
    birthdays = RENEWAL_CERTIFICATE_BIRTHDAYS if renewal else CERTIFICATE_BIRTHDAYS
    not_after = end_of_day_jst(nth_birthday_after(birth, issued_on, birthdays))
    # reference §1.4: capped by the card's expiry date.
    not_after = min(not_after, end_of_day_jst(card_expiry))
    if cap is not None:
        # reference §1.4: the sign cert is also capped by the auth cert's expiry.
        _require_aware(cap, "cap")
        not_after = min(not_after, _floor_to_end_of_day_jst(cap))
    if not_after <= issued_at:
        raise InvalidDate(
            "the certificate would expire before it is issued", field="not_after", rule="empty"
        )
    return not_after


def minimum_signing_age() -> int:
    """reference §1.4: no signing certificate is issued to anyone under 15."""
    return MINIMUM_SIGNING_AGE


def may_hold_signing_certificate(birth: date, on: date) -> bool:
    """True iff the person is at least 15 on ``on`` (reference §1.4)."""
    return age_on(birth, on) >= MINIMUM_SIGNING_AGE


def check_signing_age(birth: date, on: date) -> None:
    """Raise :class:`UnderageSigning` for anyone under 15 on ``on`` (reference §1.4)."""
    if not may_hold_signing_certificate(birth, on):
        raise UnderageSigning()
