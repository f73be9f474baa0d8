"""Japanese era codes for the dateOfBirth otherName of the signing certificate.

reference §1.3: the value of ``1.2.392.200149.8.5.5.4`` is ``EYYYYMMDD`` where ``E`` is an
era code and ``YYYYMMDD`` is the **Gregorian** date. Codes: ``1`` 明治, ``2`` 大正, ``3`` 昭和,
``4`` 平成, ``5`` 令和, ``0`` unknown. Examples: ``419900102`` = 1990-01-02 (Heisei),
``118991201`` = 1899-12-01 (Meiji). The era code is redundant with the Gregorian date, so
decoding checks that the two agree (except for ``0``, which any date may carry).

Era boundaries (Gregorian first day of each era):

* 明治 1868-01-25. The change of era was proclaimed on 1868-10-23 but applied retroactively
  to the first day of Keiō 4 (慶応4年1月1日), which is 1868-01-25 in the Gregorian
  calendar; so 1868-01-25 is the first day of Meiji 1. Anyone born before it (only a
  person more than 150 years old) gets code ``0``: the scheme has no code for Edo-period
  eras, and ``0`` ("unknown") is the only value the format offers.
* 大正 1912-07-30, 昭和 1926-12-25, 平成 1989-01-08, 令和 2019-05-01. On each changeover
  day the new era applies (Meiji 45-07-30 is Taishō 1-07-30, and so on), which is how the
  resident register records a birth on that day.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import IntEnum

from jpki.errors import InvalidDate

__all__ = ["ERA_STARTS", "Era", "decode_birth_date", "encode_birth_date", "era_of"]


class Era(IntEnum):
    """Era code as written in the first character of ``EYYYYMMDD`` (reference §1.3)."""

    UNKNOWN = 0
    MEIJI = 1  # 明治
    TAISHO = 2  # 大正
    SHOWA = 3  # 昭和
    HEISEI = 4  # 平成
    REIWA = 5  # 令和


# Newest first, so that era_of() returns at the first start that is not after the date.
ERA_STARTS: tuple[tuple[Era, date], ...] = (
    (Era.REIWA, date(2019, 5, 1)),
    (Era.HEISEI, date(1989, 1, 8)),
    (Era.SHOWA, date(1926, 12, 25)),
    (Era.TAISHO, date(1912, 7, 30)),
    (Era.MEIJI, date(1868, 1, 25)),  # Gregorian date of Meiji 1-01-01 (= Keiō 4-01-01)
)

_DIGITS = frozenset("0123456789")
_FIELD = "birth_date"


def era_of(d: date) -> Era:
    """The era in force on the Gregorian date ``d``; :attr:`Era.UNKNOWN` before Meiji."""
    for era, start in ERA_STARTS:
        if d >= start:
            return era
    return Era.UNKNOWN


def encode_birth_date(d: date) -> str:
    """``EYYYYMMDD`` for ``d`` (reference §1.3), always 9 ASCII digits."""
    # datetime is a subclass of date; a time of day has no place in a birth date.
    if not isinstance(d, date) or isinstance(d, datetime):
        raise InvalidDate("dateOfBirth: not a calendar date", field=_FIELD)
    return f"{int(era_of(d))}{d.year:04d}{d.month:02d}{d.day:02d}"


def decode_birth_date(s: str) -> date:
    """Parse ``EYYYYMMDD``; the era code must agree with the Gregorian date unless it is ``0``.

    Errors name the rule that failed and never repeat the value (it is personal data).
    """
    if not isinstance(s, str) or len(s) != 9:
        raise InvalidDate("dateOfBirth: must be 9 digits (EYYYYMMDD)", field=_FIELD, rule="length")
    # str.isdigit() would accept full-width and other Unicode digits; the format is ASCII only.
    for position, ch in enumerate(s, start=1):
        if ch not in _DIGITS:
            raise InvalidDate(
                f"dateOfBirth: character at position {position} is not an ASCII digit",
                field=_FIELD,
                position=position,
                rule="digits",
            )
    code = int(s[0])
    if code > max(Era):
        raise InvalidDate("dateOfBirth: unknown era code", field=_FIELD, rule="era_code")
    era = Era(code)
    try:
        d = date(int(s[1:5]), int(s[5:7]), int(s[7:9]))
    except ValueError:
        # Includes partially unknown dates (month or day 00): they cannot be a `date`.
        raise InvalidDate(
            "dateOfBirth: YYYYMMDD is not a valid Gregorian date", field=_FIELD, rule="calendar"
        ) from None
    # reference §1.3: the era code is redundant with the Gregorian date; 0 means "unknown".
    if era is not Era.UNKNOWN and era_of(d) is not era:
        raise InvalidDate(
            "dateOfBirth: the era code does not match the date", field=_FIELD, rule="era_mismatch"
        )
    return d
