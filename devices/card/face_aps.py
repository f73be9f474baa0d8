"""The card's two other applications: 券面事項入力補助AP and 券面事項確認AP (reference §4.6).

Shared by the client and the emulator so that both speak of the same AIDs, files and key
references, as :mod:`devices.card.jpki_ap` is for JPKI-AP.

- **券面事項入力補助AP** (text input support, "text AP"): the individual number (個人番号) and the
  basic 4 information as text, behind the 4-digit PIN; 照合番号A (the individual number itself)
  opens the number file only, 照合番号B (birth date, expiry year, security code) the basic 4 only.
- **券面事項確認AP** (card surface, "surface AP"): what is printed on the card — birth date, sex,
  the name and address as rendered images, the face image, the expiry and the security code —
  and the rendered individual number, behind 照合番号A, 照合番号B or, for the age record alone,
  the birth date.

The key references are EFs that VERIFY names (P2 ``80`` after SELECT, or ``80|SFI``), like the
JPKI-AP PINs. Which credential opens which file is reference §4.6's table; the tries of the ones
no public source gives are this repository's choice (reference §4.6, marked there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import Enum

TEXT_AP_AID = bytes.fromhex("D3921000310001010408")  # 券面事項入力補助AP (reference §4.2)
SURFACE_AP_AID = bytes.fromhex("D3921000310001010402")  # 券面事項確認AP (reference §4.2)


class FaceAp(Enum):
    """The two applications, by AID."""

    TEXT = TEXT_AP_AID
    SURFACE = SURFACE_AP_AID

    @property
    def aid(self) -> bytes:
        return self.value

    @property
    def label(self) -> str:
        return "券面事項入力補助AP" if self is FaceAp.TEXT else "券面事項確認AP"


@dataclass(frozen=True)
class Credential:
    """A key reference of one of the applications: its EF, what it is and its counter."""

    ap: FaceAp
    fid: int
    name: str
    max_tries: int
    digits: int  # a well-formed value is exactly this many ASCII digits (CHANGE / RESET check it)
    changeable: bool = False  # only the PIN: the 照合番号 are derived from the card's face

    @property
    def sfi(self) -> int:
        return self.fid & 0x1F

    def well_formed(self, value: bytes) -> bool:
        return len(value) == self.digits and _DIGITS.fullmatch(value) is not None


_DIGITS = re.compile(rb"[0-9]+")

# reference §4.6. Tries: the text AP PIN 3 and 照合番号B 10 are published; the others are ours.
TEXT_PIN = Credential(FaceAp.TEXT, 0x0011, "暗証番号", 3, 4, changeable=True)
TEXT_CODE_A = Credential(FaceAp.TEXT, 0x0014, "照合番号A", 10, 12)
TEXT_CODE_B = Credential(FaceAp.TEXT, 0x0015, "照合番号B", 10, 14)
SURFACE_BIRTH = Credential(FaceAp.SURFACE, 0x0011, "生年月日", 10, 6)
SURFACE_CODE_B = Credential(FaceAp.SURFACE, 0x0012, "照合番号B", 10, 14)
SURFACE_CODE_A = Credential(FaceAp.SURFACE, 0x0013, "照合番号A", 10, 12)

CREDENTIALS: tuple[Credential, ...] = (TEXT_PIN, TEXT_CODE_A, TEXT_CODE_B, SURFACE_BIRTH,
                                       SURFACE_CODE_B, SURFACE_CODE_A)


@dataclass(frozen=True)
class DataFile:
    """A transparent EF: who may read it (any one of ``opened_by``; empty = free) and its size."""

    ap: FaceAp
    fid: int
    name: str
    opened_by: tuple[Credential, ...]
    capacity: int

    @property
    def sfi(self) -> int:
        return self.fid & 0x1F


# reference §4.6: the access rules are MYNACARD's measurements on a card.
TEXT_MY_NUMBER = DataFile(FaceAp.TEXT, 0x0001, "個人番号", (TEXT_PIN, TEXT_CODE_A), 17)
TEXT_BASIC4 = DataFile(FaceAp.TEXT, 0x0002, "基本4情報", (TEXT_PIN, TEXT_CODE_B), 1024)
TEXT_INTEGRITY = DataFile(FaceAp.TEXT, 0x0003, "署名", (TEXT_PIN, TEXT_CODE_A, TEXT_CODE_B), 512)
TEXT_AP_INFO = DataFile(FaceAp.TEXT, 0x0005, "AP基本情報", (), 256)
SURFACE_AGE = DataFile(FaceAp.SURFACE, 0x0001, "生年月日", (SURFACE_BIRTH,), 1024)
SURFACE_FACE = DataFile(FaceAp.SURFACE, 0x0002, "券面事項", (SURFACE_CODE_A, SURFACE_CODE_B),
                        0x8000)
SURFACE_AP_INFO = DataFile(FaceAp.SURFACE, 0x0003, "AP基本情報", (), 512)
SURFACE_MY_NUMBER = DataFile(FaceAp.SURFACE, 0x0005, "個人番号 (画像)", (SURFACE_CODE_A,), 4096)

DATA_FILES: tuple[DataFile, ...] = (TEXT_MY_NUMBER, TEXT_BASIC4, TEXT_INTEGRITY, TEXT_AP_INFO,
                                    SURFACE_AGE, SURFACE_FACE, SURFACE_AP_INFO,
                                    SURFACE_MY_NUMBER)


def credential(ap: FaceAp, fid: int) -> Credential | None:
    return next((c for c in CREDENTIALS if c.ap is ap and c.fid == fid), None)


def data_file(ap: FaceAp, fid: int) -> DataFile | None:
    return next((f for f in DATA_FILES if f.ap is ap and f.fid == fid), None)


def credentials_of(ap: FaceAp) -> tuple[Credential, ...]:
    return tuple(c for c in CREDENTIALS if c.ap is ap)


def by_aid(aid: bytes) -> FaceAp | None:
    return next((ap for ap in FaceAp if ap.aid == aid), None)


# --- the individual number (個人番号) --------------------------------------------------------

MY_NUMBER_DIGITS = 12


def my_number_check_digit(first_eleven: str) -> int:
    """The 検査用数字 of an individual number (reference §4.6, 平成26年総務省令第85号 第5条).

    11 − (Σ_{n=1}^{11} P_n × Q_n mod 11), or 0 when that remainder is 0 or 1; P_n is the n-th
    digit counting from the lowest of the eleven, Q_n = n + 1 for n ≤ 6 and n − 5 for n ≥ 7.
    """
    if len(first_eleven) != 11 or not first_eleven.isascii() or not first_eleven.isdigit():
        raise ValueError("the check digit is computed over exactly 11 digits")
    total = 0
    for n, digit in enumerate(reversed(first_eleven), start=1):
        total += int(digit) * (n + 1 if n <= 6 else n - 5)
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def is_valid_my_number(value: str) -> bool:
    """Twelve ASCII digits whose last is the check digit of the first eleven."""
    if len(value) != MY_NUMBER_DIGITS or not value.isascii() or not value.isdigit():
        return False
    return my_number_check_digit(value[:11]) == int(value[11])


# --- 照合番号B and the Japanese era ---------------------------------------------------------

# (first day, name): the eras a living holder can be born in (reference §4.6).
_ERAS: tuple[tuple[date, str], ...] = (
    (date(2019, 5, 1), "令和"),
    (date(1989, 1, 8), "平成"),
    (date(1926, 12, 25), "昭和"),
    (date(1912, 7, 30), "大正"),
    (date(1868, 1, 25), "明治"),
)


def era_year(day: date) -> int:
    """The year of ``day`` within its Japanese era (令和元年 = 1)."""
    for start, _name in _ERAS:
        if day >= start:
            return day.year - start.year + 1
    raise ValueError("dates before the Meiji era have no era year here")


def era_birth_date(birth: date) -> str:
    """``YYMMDD`` with the era year: the 券面事項確認AP 生年月日 key and 照合番号B's head."""
    year = era_year(birth)
    if year > 99:
        raise ValueError("the era year does not fit two digits")
    return f"{year:02d}{birth.month:02d}{birth.day:02d}"


def code_b(birth: date, expiry: date, security_code: str) -> str:
    """照合番号B: era ``YYMMDD`` of the birth date ‖ the expiry's Gregorian year ‖ the 4-digit
    security code printed on the card (reference §4.6; MYNACARD's example 1980-02-17, 2035,
    2285 → ``55021720352285``)."""
    if len(security_code) != 4 or not security_code.isascii() or not security_code.isdigit():
        raise ValueError("the security code is 4 digits")
    return f"{era_birth_date(birth)}{expiry.year:04d}{security_code}"
