"""Municipalities (市区町村) and prefectures, and the per-municipality CRL distribution point.

Municipality codes are the 6-digit 全国地方公共団体コード: a 2-digit prefecture code (JIS X 0401,
01–47), 3 digits for the municipality, and a check digit. For digits d1..d5,
``s = 6*d1 + 5*d2 + 4*d3 + 3*d4 + 2*d5`` and ``check = (11 - s % 11) % 10`` (so a remainder of 0
gives 1 and a remainder of 1 gives 0): 131016 千代田区, 011002 札幌市, 132217 清瀬市.

reference §1.2: a certificate's cRLDistributionPoints name is a directoryName per issuing
municipality, ``C=JP, O=JPKI, OU=<CA>, OU=CRL Distribution Points, OU=<prefecture>,
CN=<city> CRLDP``, with the prefecture and city in romaji as in the subject (test card:
``Kiyose-shi``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

from jpki.errors import InvalidMunicipalityCode

__all__ = [
    "CRL_DISTRIBUTION_POINTS_OU",
    "PREFECTURES",
    "Municipality",
    "Prefecture",
    "check_digit",
    "crl_dp_rdns",
    "load_seed",
    "validate_municipality_code",
]

CRL_DISTRIBUTION_POINTS_OU = "CRL Distribution Points"  # reference §1.2
_DIGITS = frozenset("0123456789")
_WEIGHTS = (6, 5, 4, 3, 2)
_SEED_FILE = "municipalities.csv"


@dataclass(frozen=True)
class Prefecture:
    """A prefecture (都道府県): JIS X 0401 code, Japanese name, romaji as written in DNs."""

    code: str
    name_ja: str
    name_romaji: str


_PREFECTURE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("01", "北海道", "Hokkaido"),
    ("02", "青森県", "Aomori-ken"),
    ("03", "岩手県", "Iwate-ken"),
    ("04", "宮城県", "Miyagi-ken"),
    ("05", "秋田県", "Akita-ken"),
    ("06", "山形県", "Yamagata-ken"),
    ("07", "福島県", "Fukushima-ken"),
    ("08", "茨城県", "Ibaraki-ken"),
    ("09", "栃木県", "Tochigi-ken"),
    ("10", "群馬県", "Gunma-ken"),
    ("11", "埼玉県", "Saitama-ken"),
    ("12", "千葉県", "Chiba-ken"),
    ("13", "東京都", "Tokyo-to"),
    ("14", "神奈川県", "Kanagawa-ken"),
    ("15", "新潟県", "Niigata-ken"),
    ("16", "富山県", "Toyama-ken"),
    ("17", "石川県", "Ishikawa-ken"),
    ("18", "福井県", "Fukui-ken"),
    ("19", "山梨県", "Yamanashi-ken"),
    ("20", "長野県", "Nagano-ken"),
    ("21", "岐阜県", "Gifu-ken"),
    ("22", "静岡県", "Shizuoka-ken"),
    ("23", "愛知県", "Aichi-ken"),
    ("24", "三重県", "Mie-ken"),
    ("25", "滋賀県", "Shiga-ken"),
    ("26", "京都府", "Kyoto-fu"),
    ("27", "大阪府", "Osaka-fu"),
    ("28", "兵庫県", "Hyogo-ken"),
    ("29", "奈良県", "Nara-ken"),
    ("30", "和歌山県", "Wakayama-ken"),
    ("31", "鳥取県", "Tottori-ken"),
    ("32", "島根県", "Shimane-ken"),
    ("33", "岡山県", "Okayama-ken"),
    ("34", "広島県", "Hiroshima-ken"),
    ("35", "山口県", "Yamaguchi-ken"),
    ("36", "徳島県", "Tokushima-ken"),
    ("37", "香川県", "Kagawa-ken"),
    ("38", "愛媛県", "Ehime-ken"),
    ("39", "高知県", "Kochi-ken"),
    ("40", "福岡県", "Fukuoka-ken"),
    ("41", "佐賀県", "Saga-ken"),
    ("42", "長崎県", "Nagasaki-ken"),
    ("43", "熊本県", "Kumamoto-ken"),
    ("44", "大分県", "Oita-ken"),
    ("45", "宮崎県", "Miyazaki-ken"),
    ("46", "鹿児島県", "Kagoshima-ken"),
    ("47", "沖縄県", "Okinawa-ken"),
)

PREFECTURES: Mapping[str, Prefecture] = MappingProxyType(
    {code: Prefecture(code, ja, romaji) for code, ja, romaji in _PREFECTURE_ROWS}
)


def _digit_at(code: str, position: int) -> int:
    ch = code[position - 1]
    if ch not in _DIGITS:
        # str.isdigit() would let full-width digits through; codes are ASCII only.
        raise InvalidMunicipalityCode(
            f"character at position {position} is not an ASCII digit",
            position=position,
            rule="digits",
        )
    return ord(ch) - ord("0")


def check_digit(code5: str) -> int:
    """The check digit of the first five digits of a 全国地方公共団体コード."""
    if not isinstance(code5, str) or len(code5) != 5:
        raise InvalidMunicipalityCode("expected 5 digits before the check digit", rule="length")
    s = sum(w * _digit_at(code5, i) for i, w in enumerate(_WEIGHTS, start=1))
    return (11 - s % 11) % 10


def validate_municipality_code(code: str) -> str:
    """Return ``code`` if it is a well-formed 6-digit municipality code, else raise.

    Checks length, ASCII digits, the prefecture (01–47, JIS X 0401) and the check digit.
    """
    if not isinstance(code, str) or len(code) != 6:
        raise InvalidMunicipalityCode("a municipality code has 6 digits", rule="length")
    digits = [_digit_at(code, position) for position in range(1, 7)]
    if code[:2] not in PREFECTURES:
        raise InvalidMunicipalityCode(
            "the first two digits are not a prefecture code (01-47)", rule="prefecture"
        )
    if digits[5] != check_digit(code[:5]):
        raise InvalidMunicipalityCode("the check digit does not match", rule="check_digit")
    return code


def _check_romaji(value: str, what: str) -> None:
    # The romaji names go into DNs (subject L, CRL DP CN); keep them printable ASCII.
    if not value or not value.isascii() or not value.isprintable():
        raise InvalidMunicipalityCode(f"{what}: romaji name must be printable ASCII", rule="romaji")


@dataclass(frozen=True)
class Municipality:
    """A municipality (市区町村, including Tokyo's special wards) with its DN romaji name."""

    code: str
    name_ja: str
    name_romaji: str

    def __post_init__(self) -> None:
        validate_municipality_code(self.code)
        if not self.name_ja:
            raise InvalidMunicipalityCode("name_ja must not be empty", rule="name")
        _check_romaji(self.name_romaji, "name_romaji")

    @property
    def prefecture(self) -> Prefecture:
        return PREFECTURES[self.code[:2]]


@lru_cache(maxsize=1)
def _seed() -> tuple[Municipality, ...]:
    text = resources.files("jpki").joinpath("data").joinpath(_SEED_FILE).read_text("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames != ["code", "name_ja", "name_romaji"]:
        raise InvalidMunicipalityCode(f"{_SEED_FILE}: unexpected header", rule="seed_header")
    return tuple(Municipality(row["code"], row["name_ja"], row["name_romaji"]) for row in reader)


def load_seed() -> list[Municipality]:
    """The seed municipalities from ``jpki/data/municipalities.csv``.

    The 46 prefectural capitals outside Tokyo, Tokyo's 23 special wards (the Tokyo Metropolitan
    Government sits in 新宿区), 清瀬市 (the test card's municipality, reference §1.2) and
    東村山市 (HIGASHIMURAYAMA).
    """
    return list(_seed())


def crl_dp_rdns(m: Municipality, ca_ou: str) -> list[tuple[str, str]]:
    """The CRL distribution-point name of ``m``'s shard as (attribute short name, value) RDNs.

    reference §1.2: ``C=JP, O=JPKI, OU=<ca_ou>, OU=CRL Distribution Points,
    OU=<prefecture romaji>, CN=<city romaji> CRLDP``, in this order (most significant first).
    ``ca_ou`` is the CA's OU, e.g. ``"JPKI for digital signature"``.
    """
    # ca_ou comes from the CA's configuration, not from a request: a bad one is a programming error.
    if not ca_ou or not ca_ou.isascii() or not ca_ou.isprintable():
        raise ValueError("ca_ou must be a non-empty printable ASCII string")
    return [
        ("C", "JP"),
        ("O", "JPKI"),
        ("OU", ca_ou),
        ("OU", CRL_DISTRIBUTION_POINTS_OU),
        ("OU", m.prefecture.name_romaji),
        ("CN", f"{m.name_romaji} CRLDP"),
    ]
