"""Municipalities (市区町村) and prefectures, and the per-municipality CRL distribution point.

Municipality codes are the 6-digit 全国地方公共団体コード: a 2-digit prefecture code (JIS X 0401,
01–47), 3 digits for the municipality, and a check digit. For digits d1..d5,
``s = 6*d1 + 5*d2 + 4*d3 + 3*d4 + 2*d5`` and ``check = (11 - s % 11) % 10`` (so a remainder of 0
gives 1 and a remainder of 1 gives 0): 131016 千代田区, 011002 札幌市, 132217 清瀬市.

reference §1.2: a certificate's cRLDistributionPoints name is a directoryName per issuing
municipality, ``C=JP, O=JPKI, OU=<CA>, OU=CRL Distribution Points, OU=<prefecture>,
CN=<city> CRLDP``, with the prefecture and city in romaji as in the subject (test card:
``Kiyose-shi``).

The registry (architecture §5.6). Every local public entity of japancode's list (MIT, the
1,916 entities of 全国地方公共団体コード: 1,741 市区町村 and the 175 wards of designated cities)
is seeded by `jpki init` (:func:`load_registry`). The 71 of the hand-written seed
(``jpki/data/municipalities.csv``) keep their romaji: certificates already issued name them.
The others' romaji is derived from japancode's kana by one documented rule
(:func:`romaji_from_kana`).

A municipality's CRL shard (:class:`CrlShard`) freezes the distribution-point name it was opened
with; a rename that changes the romaji opens a new shard (``<code>-2``, ``<code>-3``…), so
certificates already issued keep the distribution point they name.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

from jpki.errors import InvalidMunicipalityCode

__all__ = [
    "CRL_DISTRIBUTION_POINTS_OU",
    "PREFECTURES",
    "ROMAJI_PATTERN",
    "SHARD_PATTERN",
    "CrlShard",
    "Municipality",
    "MunicipalityStatus",
    "Prefecture",
    "check_digit",
    "check_romaji",
    "crl_dp_rdns",
    "load_registry",
    "load_seed",
    "municipality_romaji",
    "romaji_from_kana",
    "shard_name",
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


# Letters, digits and the few marks Hepburn names use, no space at either end; at most 58, so
# that the CRL DP's CN stays within ub-common-name (RFC 5280 Appendix A: 64) with " CRLDP".
ROMAJI_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9 '().-]{0,56}[A-Za-z0-9'().-])?$"
_ROMAJI = re.compile(ROMAJI_PATTERN)


def check_romaji(value: str, what: str = "name_romaji") -> str:
    """``value`` if it can be a romaji name in a DN (subject L, CRL DP CN), else raise."""
    if not isinstance(value, str) or not _ROMAJI.fullmatch(value):
        raise InvalidMunicipalityCode(f"{what}: romaji name must be 1-58 letters, digits, "
                                      "spaces, hyphens, apostrophes, dots or brackets",
                                      rule="romaji")
    return value


def _check_romaji(value: str, what: str) -> None:
    # The romaji names go into DNs (subject L, CRL DP CN); keep them printable ASCII.
    if not value or not value.isascii() or not value.isprintable():
        raise InvalidMunicipalityCode(f"{what}: romaji name must be printable ASCII", rule="romaji")


SHARD_PATTERN = re.compile(r"^[0-9]{6}(?:-[1-9][0-9]{0,2})?$")


def shard_name(code: str, ordinal: int) -> str:
    """The name of a municipality's ``ordinal``-th CRL shard: the code for the first (every
    shard before the registry existed is one), ``<code>-<n>`` for those a rename opened."""
    if ordinal < 1 or ordinal > 999:
        raise ValueError("a shard's ordinal is 1-999")
    return code if ordinal == 1 else f"{code}-{ordinal}"


@dataclass(frozen=True)
class CrlShard:
    """One CRL shard: its name (in URLs, certificates' ``shard`` column and CRL numbering) and
    the romaji of the distribution-point name it was opened with, frozen (reference §1.2:
    certificates issued under it name exactly these; architecture §5.6)."""

    name: str
    municipality_code: str
    prefecture_romaji: str
    city_romaji: str
    closed_at: datetime | None = field(default=None, compare=False)  # no new certificate

    def __post_init__(self) -> None:
        if not SHARD_PATTERN.fullmatch(self.name) or not self.name.startswith(
                self.municipality_code):
            raise ValueError("a shard is named after its municipality's code")


class MunicipalityStatus(StrEnum):
    ACTIVE = "active"
    MERGED = "merged"  # 市町村合併: merged into another; its residents moved there


@dataclass(frozen=True)
class Municipality:
    """A municipality (市区町村, including Tokyo's special wards) with its DN romaji name.

    ``shard`` is the CRL shard new certificates are issued under (architecture §5.6); its
    frozen romaji is always this municipality's ``name_romaji`` (a rename that changes the
    romaji opens a new shard)."""

    code: str
    name_ja: str
    name_romaji: str
    name_kana: str | None = field(default=None, compare=False)
    shard: str = ""
    status: MunicipalityStatus = MunicipalityStatus.ACTIVE
    merged_into: str | None = None

    def __post_init__(self) -> None:
        validate_municipality_code(self.code)
        if not self.name_ja:
            raise InvalidMunicipalityCode("name_ja must not be empty", rule="name")
        _check_romaji(self.name_romaji, "name_romaji")
        if not self.shard:
            object.__setattr__(self, "shard", self.code)

    @property
    def prefecture(self) -> Prefecture:
        return PREFECTURES[self.code[:2]]

    @property
    def crl_shard(self) -> CrlShard:
        """The shard new certificates of this municipality are issued under."""
        return CrlShard(self.shard, self.code, self.prefecture.name_romaji, self.name_romaji)

    @property
    def active(self) -> bool:
        return self.status is MunicipalityStatus.ACTIVE


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


def crl_dp_rdns(m: Municipality | CrlShard, ca_ou: str) -> list[tuple[str, str]]:
    """The CRL distribution-point name of a shard (``m``'s current one, for a municipality) as
    (attribute short name, value) RDNs.

    reference §1.2: ``C=JP, O=JPKI, OU=<ca_ou>, OU=CRL Distribution Points,
    OU=<prefecture romaji>, CN=<city romaji> CRLDP``, in this order (most significant first).
    ``ca_ou`` is the CA's OU, e.g. ``"JPKI for digital signature"``.
    """
    # ca_ou comes from the CA's configuration, not from a request: a bad one is a programming error.
    if not ca_ou or not ca_ou.isascii() or not ca_ou.isprintable():
        raise ValueError("ca_ou must be a non-empty printable ASCII string")
    shard = m.crl_shard if isinstance(m, Municipality) else m
    return [
        ("C", "JP"),
        ("O", "JPKI"),
        ("OU", ca_ou),
        ("OU", CRL_DISTRIBUTION_POINTS_OU),
        ("OU", shard.prefecture_romaji),
        ("CN", f"{shard.city_romaji} CRLDP"),
    ]


# --- romaji from kana ----------------------------------------------------------------------
#
# The rule for every municipality outside the hand-written seed (architecture §5.6), modified
# Hepburn as the seed writes it (Chuo-ku, Oita-shi, Kofu-shi, Shinjuku-ku):
#   1. the name splits at japancode's space (a designated city's ward: 札幌市 中央区) and each
#      part's last kanji is its kind — 市 -shi, 区 -ku, 町 -machi or -cho, 村 -mura or -son, as
#      the kana ends (まち/ちょう, むら/そん);
#   2. the rest of the kana is romanised syllable by syllable: shi, chi, tsu, fu, ji (じ, ぢ),
#      zu (ず, づ), small ゃゅょ as sha/kya…, っ doubles the next consonant (tch before ch),
#      ん is n, and n' before a vowel or y;
#   3. long vowels are written short, without macrons: ou and oo become o, uu becomes u (a
#      vowel kana after one already dropped is kept: おおうら → Oura); ei and ii stay;
#   4. each part is capitalised, its kind appended with a hyphen, the parts joined by a space:
#      さっぽろし ちゅうおうく → Sapporo-shi Chuo-ku;
#   5. two municipalities of one prefecture must not share a distribution-point name (a CRL of
#      one would then answer for the other's certificates, RFC 5280 §6.3.3 (b)(2)): where the
#      rule gives two of them the same romaji, each gets its code in brackets — 江差町 and
#      枝幸町 of Hokkaido are "Esashi-cho (013617)" and "Esashi-cho (015148)".
# A kana-only rule cannot see word boundaries (こうえん is Koen, but a name could read ko-uen):
# where the result is wrong, the operator renames (jpki municipality rename), which opens a new
# shard and leaves certificates already issued as they are.

_SYLLABLES: dict[str, str] = {
    **dict(zip("あいうえお", ["a", "i", "u", "e", "o"], strict=True)),
    **dict(zip("かきくけこ", ["ka", "ki", "ku", "ke", "ko"], strict=True)),
    **dict(zip("がぎぐげご", ["ga", "gi", "gu", "ge", "go"], strict=True)),
    **dict(zip("さしすせそ", ["sa", "shi", "su", "se", "so"], strict=True)),
    **dict(zip("ざじずぜぞ", ["za", "ji", "zu", "ze", "zo"], strict=True)),
    **dict(zip("たちつてと", ["ta", "chi", "tsu", "te", "to"], strict=True)),
    **dict(zip("だぢづでど", ["da", "ji", "zu", "de", "do"], strict=True)),
    **dict(zip("なにぬねの", ["na", "ni", "nu", "ne", "no"], strict=True)),
    **dict(zip("はひふへほ", ["ha", "hi", "fu", "he", "ho"], strict=True)),
    **dict(zip("ばびぶべぼ", ["ba", "bi", "bu", "be", "bo"], strict=True)),
    **dict(zip("ぱぴぷぺぽ", ["pa", "pi", "pu", "pe", "po"], strict=True)),
    **dict(zip("まみむめも", ["ma", "mi", "mu", "me", "mo"], strict=True)),
    **dict(zip("やゆよ", ["ya", "yu", "yo"], strict=True)),
    **dict(zip("らりるれろ", ["ra", "ri", "ru", "re", "ro"], strict=True)),
    **dict(zip("わゐゑを", ["wa", "i", "e", "o"], strict=True)),
    "ぁ": "a", "ぃ": "i", "ぅ": "u", "ぇ": "e", "ぉ": "o",
}
_SMALL_Y = {"ゃ": "a", "ゅ": "u", "ょ": "o"}
# The consonant a syllable with a small ゃゅょ keeps: しゃ sha, ちゃ cha, じゃ ja, きゃ kya.
_Y_STEM = {"shi": "sh", "chi": "ch", "ji": "j"}
_KINDS = {"市": ("し", "-shi"), "区": ("く", "-ku")}
_VARIANT_KINDS = {"町": (("まち", "-machi"), ("ちょう", "-cho")),
                  "村": (("むら", "-mura"), ("そん", "-son"))}


def _syllables(kana: str) -> list[str]:
    out: list[str] = []
    for ch in kana:
        if ch in _SMALL_Y:
            if not out or not out[-1].endswith("i") or len(out[-1]) < 2:
                raise InvalidMunicipalityCode("kana: a small ya/yu/yo must follow an i-row kana",
                                              rule="kana")
            prev = out.pop()
            out.append(_Y_STEM.get(prev, prev[:-1] + "y") + _SMALL_Y[ch])
        elif ch in ("っ", "ん"):
            out.append(ch)
        elif ch in _SYLLABLES:
            out.append(_SYLLABLES[ch])
        else:
            raise InvalidMunicipalityCode("kana: only hiragana can be romanised", rule="kana")
    return out


def romaji_from_kana(kana: str) -> str:
    """Modified Hepburn without macrons, lower case (rules 2 and 3 above)."""
    syllables = _syllables(kana)
    out: list[str] = []
    dropped = False
    for i, syl in enumerate(syllables):
        nxt = syllables[i + 1] if i + 1 < len(syllables) else ""
        if syl == "っ":
            if not nxt or nxt in ("っ", "ん") or nxt[0] in "aiueo":
                raise InvalidMunicipalityCode("kana: a small tsu must precede a consonant",
                                              rule="kana")
            out.append("t" if nxt.startswith("ch") else nxt[0])
            dropped = False
            continue
        if syl == "ん":
            out.append("n'" if nxt and nxt[0] in "aiueoy" else "n")
            dropped = False
            continue
        prev = out[-1] if out else ""
        if (not dropped and len(syl) == 1 and prev and prev[-1] in "ou"
                and (prev[-1] + syl) in ("ou", "oo", "uu")):
            dropped = True  # a long vowel, written short
            continue
        out.append(syl)
        dropped = False
    return "".join(out)


def municipality_romaji(name_ja: str, kana: str) -> str:
    """The DN romaji of a municipality from its name and kana, by the rule above: 清瀬市 きよせし
    → Kiyose-shi, 札幌市 中央区 さっぽろし ちゅうおうく → Sapporo-shi Chuo-ku."""
    names, readings = name_ja.split(), kana.split()
    if not names or len(names) != len(readings):
        raise InvalidMunicipalityCode("kana: one reading per part of the name", rule="kana")
    parts = []
    for name, reading in zip(names, readings, strict=True):
        kind = name[-1]
        suffixes = ((_KINDS[kind],) if kind in _KINDS else _VARIANT_KINDS.get(kind, ()))
        match = next(((r, s) for r, s in suffixes if reading.endswith(r) and len(reading) > len(r)),
                     None)
        if match is None:
            raise InvalidMunicipalityCode("kana: the name must end in 市, 区, 町 or 村 and the "
                                          "reading in its reading", rule="kana")
        stem = romaji_from_kana(reading[:-len(match[0])])
        parts.append(stem[:1].upper() + stem[1:] + match[1])
    return check_romaji(" ".join(parts))


@lru_cache(maxsize=1)
def _japancode_rows() -> tuple[tuple[str, str, str], ...]:
    """(6-digit code, name with japancode's space, kana) of every entity japancode lists."""
    text = resources.files("japancode").joinpath("data").joinpath(
        "municipalities.json").read_text("utf-8")
    # japancode writes the code as a number's digits: 011002 (札幌市) is "11002".
    return tuple((str(row["lgcode"]).zfill(6), str(row["city"]), str(row["citykana"]))
                 for row in json.loads(text))


@lru_cache(maxsize=1)
def _registry() -> tuple[Municipality, ...]:
    seed = {m.code: m for m in _seed()}
    derived = {code: municipality_romaji(name, kana) for code, name, kana in _japancode_rows()
               if code not in seed}
    taken = Counter((m.code[:2], m.name_romaji) for m in seed.values())
    taken.update((code[:2], romaji) for code, romaji in derived.items())
    out = []
    for code, name, kana in _japancode_rows():
        kana_joined = kana.replace(" ", "")
        kept = seed.pop(code, None)
        if kept is not None:
            # Certificates already issued name the seed's romaji: it stays as it is.
            out.append(Municipality(kept.code, kept.name_ja, kept.name_romaji,
                                    name_kana=kana_joined))
            continue
        romaji = derived[code]
        if taken[code[:2], romaji] > 1:  # rule 5
            romaji = check_romaji(f"{romaji} ({code})")
        out.append(Municipality(code, name.replace(" ", ""), romaji, name_kana=kana_joined))
    out.extend(seed.values())  # none today; a seed row japancode lacks is still kept
    return tuple(sorted(out, key=lambda m: m.code))


def load_registry() -> list[Municipality]:
    """Every municipality `jpki init` registers: japancode's 1,916 local public entities, the
    hand-written seed's romaji kept for its 71 (they are in japancode's list too)."""
    return list(_registry())
