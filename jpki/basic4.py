"""The basic 4 information (基本4情報: name, birth date, sex, address) and its certificate encoding.

reference §1.3: the signing certificate carries the basic 4 information as six otherNames in
subjectAltName, under the arc ``1.2.392.200149.8.5.5``. Name and address may use only characters of
JIS X 0208 (levels 1 and 2, with the non-kanji rows) and JIS X 0212 (補助漢字); any other character
is replaced by a substitute character, and a parallel ``0``/``1`` string records where.

Personal data rule (architecture §9.7): none of the four values may appear in an
exception, a repr or a log line. :class:`Basic4` and :class:`EncodedText` redact themselves, and
every error raised here names the field, the rule and (for characters) the 1-based position, never
the value.

Normalisation decisions (:func:`normalize_name`, :func:`normalize_address`):

* NFC first, so that a base letter and a combining mark that have a precomposed form are one
  character (``か`` + U+3099 → ``が``), and characters outside the BMP are single code points.
* Rejected: control characters (Cc, which includes TAB/CR/LF), format characters (Cf: zero-width
  joiners, bidi overrides, BOM, soft hyphen — invisible, so a spoofing risk), lone surrogates (Cs)
  and line/paragraph separators (Zl/Zp). Private-use characters (municipal 外字) and unassigned code
  points are *not* rejected: they reach :func:`encode_jis_text`, which substitutes them.
* Variation selectors (U+FE00–FE0F, IVS U+E0100–E01EF) are dropped: they select a glyph of the
  same abstract character, and JIS X 0208/0212 identify characters, not glyphs; the base character
  is what the certificate can carry.
* Printable ASCII becomes its full-width form (``A`` → ``Ａ``, ``1`` → ``１``), and any space
  separator (category Zs, including ASCII space and NBSP) becomes the ideographic space U+3000.
  Four ASCII characters have no full-width form that JIS X 0208 contains in the JIS/Unicode
  mapping that Python's ``euc_jp`` codec uses, so they map to the JIS X 0208 character a Japanese
  IME produces for them: ``-`` → U+2212 MINUS SIGN (JIS X 0208 0x215D, the "full-width hyphen"
  ``－`` of addresses such as ``１−２−３``), ``~`` → U+301C WAVE DASH (0x2141), ``"`` → U+201D
  (0x2149) and ``'`` → U+2019 (0x2147). The same JIS characters typed through the Windows code page
  (cp932) arrive as different Unicode code points (U+FF0D ``－``, U+FF5E ``～``, U+FFE0/FFE1/FFE2,
  U+2225, U+2014); they are folded onto the JIS code points too, so the full-width hyphen of
  §1.3 is accepted whichever way it was typed, and encodes without substitution.
* Half-width katakana become full-width (``ｶﾞ`` → ``ガ``); a voiced/semi-voiced mark that does not
  combine becomes the spacing ``゛``/``゜``.
* Runs of U+3000 collapse to one and leading/trailing spaces are stripped.

Name-specific decisions: reference §1.3 writes the name as surname, U+3000, given name. A
single-part name (no separator) is accepted: some foreign residents have one. More than one
separator is also accepted (each run collapsed to one U+3000), because a foreign resident's name
is written as on the residence card, surname first and then every given/middle name (``ＳＭＩＴＨ
ＪＯＨＮ　ＷＩＬＬＩＡＭ``); refusing it would make the signing certificate impossible to issue.
The name is limited to 100 characters after normalisation (project rule; §1.3 gives no limit) and
the address to 200 (§1.3).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import IntEnum
from functools import lru_cache
from types import MappingProxyType

from jpki.era import decode_birth_date, encode_birth_date
from jpki.errors import InvalidBasic4, InvalidDate

__all__ = [
    "ADDRESS_MAX_CHARS",
    "GETA_MARK",
    "IDEOGRAPHIC_SPACE",
    "NAME_MAX_CHARS",
    "OID_ADDRESS",
    "OID_ADDRESS_SUBSTITUTION_MAP",
    "OID_BIRTH_DATE",
    "OID_NAME",
    "OID_NAME_SUBSTITUTION_MAP",
    "OID_PERSONAL_DATA",
    "OID_SEX",
    "PERSONAL_DATA_OIDS",
    "VARIANT_SUBSTITUTES",
    "Basic4",
    "EncodedText",
    "Sex",
    "basic4_from_other_names",
    "encode_jis_text",
    "is_jis_character",
    "normalize_address",
    "normalize_name",
    "personal_data_other_names",
]

# --- OIDs (reference §1.3, from KJUR lib/index.js, MYNA-GO, HITACHI, BLOG2022) -------------

OID_PERSONAL_DATA = "1.2.392.200149.8.5.5"  # jpki-personalData
OID_NAME = "1.2.392.200149.8.5.5.1"  # commonName (氏名)
OID_NAME_SUBSTITUTION_MAP = "1.2.392.200149.8.5.5.2"  # substituteCharacterOfCommonName
OID_SEX = "1.2.392.200149.8.5.5.3"  # gender (性別)
OID_BIRTH_DATE = "1.2.392.200149.8.5.5.4"  # dateOfBirth (生年月日)
OID_ADDRESS = "1.2.392.200149.8.5.5.5"  # address (住所)
OID_ADDRESS_SUBSTITUTION_MAP = "1.2.392.200149.8.5.5.6"  # substituteCharacterOfAddress

# reference §1.3: order observed on real certificates (BLOG2022): 1, 4, 3, 5, 2, 6.
PERSONAL_DATA_OIDS: tuple[str, ...] = (
    OID_NAME,
    OID_BIRTH_DATE,
    OID_SEX,
    OID_ADDRESS,
    OID_NAME_SUBSTITUTION_MAP,
    OID_ADDRESS_SUBSTITUTION_MAP,
)

NAME_MAX_CHARS = 100  # project rule: §1.3 states no limit for the name
ADDRESS_MAX_CHARS = 200  # reference §1.3: address max 200 chars
IDEOGRAPHIC_SPACE = "\u3000"  # reference §1.3: separates surname and given name
GETA_MARK = "\u3013"  # 〓, JIS X 0208 0x222E: the substitute of last resort

_REDACTED = "<redacted>"


class Sex(IntEnum):
    """reference §1.3 gender (``1.2.392.200149.8.5.5.3``)."""

    MALE = 1
    FEMALE = 2
    UNKNOWN = 3


# --- character normalisation ----------------------------------------------------------------

# Unicode categories refused anywhere in a name or an address (see the module docstring).
_REJECTED_CATEGORIES: Mapping[str, str] = MappingProxyType(
    {
        "Cc": "control_character",
        "Cf": "format_character",
        "Cs": "surrogate",
        "Zl": "line_separator",
        "Zp": "paragraph_separator",
    }
)

# ASCII without a JIS X 0208 full-width form in the euc_jp mapping → the JIS X 0208 character an
# IME gives for it (module docstring).
_ASCII_SPECIAL: Mapping[str, str] = MappingProxyType(
    {
        "-": "\u2212",  # MINUS SIGN, JIS X 0208 0x215D (cp932 shows it as U+FF0D)
        "~": "\u301c",  # WAVE DASH, 0x2141 (cp932: U+FF5E)
        '"': "\u201d",  # RIGHT DOUBLE QUOTATION MARK, 0x2149
        "'": "\u2019",  # RIGHT SINGLE QUOTATION MARK, 0x2147
    }
)

# The same JIS X 0208 characters as decoded by cp932 (Windows) → as decoded by euc_jp (JIS).
_CP932_TO_JIS: Mapping[str, str] = MappingProxyType(
    {
        "\uff0d": "\u2212",  # FULLWIDTH HYPHEN-MINUS → MINUS SIGN (0x215D)
        "\uff5e": "\u301c",  # FULLWIDTH TILDE → WAVE DASH (0x2141)
        "\u2225": "\u2016",  # PARALLEL TO → DOUBLE VERTICAL LINE (0x2142)
        "\u2014": "\u2015",  # EM DASH → HORIZONTAL BAR (0x213D)
        "\uffe0": "\u00a2",  # FULLWIDTH CENT SIGN → CENT SIGN (0x2171)
        "\uffe1": "\u00a3",  # FULLWIDTH POUND SIGN → POUND SIGN (0x2172)
        "\uffe2": "\u00ac",  # FULLWIDTH NOT SIGN → NOT SIGN (0x224C)
        "\uff02": "\u201d",  # FULLWIDTH QUOTATION MARK (no JIS X 0208 form) → ” (0x2149)
        "\uff07": "\u2019",  # FULLWIDTH APOSTROPHE (no JIS X 0208 form) → ’ (0x2147)
        "\u00a5": "\uffe5",  # YEN SIGN (JIS X 0201 0x5C) → FULLWIDTH YEN SIGN (0x216F)
        "\u203e": "\uffe3",  # OVERLINE (JIS X 0201 0x7E) → FULLWIDTH MACRON (0x2131)
    }
)


def _build_char_map() -> dict[str, str]:
    table: dict[str, str] = {}
    for code in range(0x21, 0x7F):
        ch = chr(code)
        table[ch] = _ASCII_SPECIAL.get(ch, chr(code + 0xFEE0))
    table.update(_CP932_TO_JIS)
    # Half-width katakana and punctuation U+FF61–FF9F: their compatibility decomposition is one
    # full-width character each (ﾞ/ﾟ become the combining U+3099/U+309A, composed by NFC later).
    for code in range(0xFF61, 0xFFA0):
        table[chr(code)] = unicodedata.normalize("NFKC", chr(code))
    return table


_CHAR_MAP: Mapping[str, str] = MappingProxyType(_build_char_map())
# A voiced/semi-voiced mark left over after NFC (nothing to combine with) → the spacing form.
_LONE_SOUND_MARKS = str.maketrans({"\u3099": "\u309b", "\u309a": "\u309c"})


def _is_variation_selector(ch: str) -> bool:
    code = ord(ch)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


def _normalize_text(raw: object, field: str, max_chars: int) -> str:
    if not isinstance(raw, str):
        raise InvalidBasic4(f"{field}: must be a string", field=field, rule="type")
    text = unicodedata.normalize("NFC", raw)
    out: list[str] = []
    for position, ch in enumerate(text, start=1):
        category = unicodedata.category(ch)
        rule = _REJECTED_CATEGORIES.get(category)
        if rule is not None:
            raise InvalidBasic4(
                f"{field}: {rule.replace('_', ' ')} at position {position}",
                field=field,
                position=position,
                rule=rule,
            )
        if _is_variation_selector(ch):
            continue
        mapped = _CHAR_MAP.get(ch)
        if mapped is not None:
            out.append(mapped)
        elif category == "Zs":
            out.append(IDEOGRAPHIC_SPACE)
        else:
            out.append(ch)
    text = unicodedata.normalize("NFC", "".join(out)).translate(_LONE_SOUND_MARKS)
    # reference §1.3: parts are separated by exactly one U+3000; collapse runs, strip ends.
    text = IDEOGRAPHIC_SPACE.join(part for part in text.split(IDEOGRAPHIC_SPACE) if part)
    if not text:
        raise InvalidBasic4(f"{field}: must not be empty", field=field, rule="empty")
    if len(text) > max_chars:
        raise InvalidBasic4(
            f"{field}: longer than {max_chars} characters after normalisation",
            field=field,
            rule="too_long",
            limit=max_chars,
        )
    return text


def normalize_name(raw: str) -> str:
    """The name as the certificate carries it: full-width, parts separated by one U+3000.

    Idempotent. Raises :class:`InvalidBasic4` (``field="name"``) for an empty name, a control or
    format character, or more than :data:`NAME_MAX_CHARS` characters. A reported ``position`` is
    1-based and counts code points of the NFC form of ``raw``.
    """
    return _normalize_text(raw, "name", NAME_MAX_CHARS)


def normalize_address(raw: str) -> str:
    """The address as the certificate carries it (reference §1.3: at most 200 characters).

    Same character rules as :func:`normalize_name`; ``"1-2-3"`` becomes ``"１−２−３"``.
    Raises :class:`InvalidBasic4` with ``field="address"``.
    """
    return _normalize_text(raw, "address", ADDRESS_MAX_CHARS)


# --- JIS X 0208 / 0212 encoding with substitute characters --------------------------------------


@lru_cache(maxsize=16384)
def is_jis_character(ch: str) -> bool:
    """True iff ``ch`` is one character of JIS X 0208 (any row) or JIS X 0212.

    Tested with the ``euc_jp`` codec: JIS X 0208 encodes to two bytes with a lead byte in
    0xA1–0xFE, JIS X 0212 to three bytes starting 0x8F. ASCII/JIS X 0201 (one byte) and half-width
    katakana (lead 0x8E) do not qualify.
    """
    if len(ch) != 1:
        return False
    try:
        encoded = ch.encode("euc_jp")
    except UnicodeError:
        return False
    if len(encoded) == 2:
        return 0xA1 <= encoded[0] <= 0xFE
    return len(encoded) == 3 and encoded[0] == 0x8F


# Well-known variant (異体字) → standard form, used before falling back to 〓. Every key is outside
# JIS X 0208/0212 and every value inside (checked by tests/jpki/test_basic4.py). 濵 and 槗, often
# listed with these, are JIS X 0212 characters and are carried as they are; 舘 is JIS X 0208.
VARIANT_SUBSTITUTES: Mapping[str, str] = MappingProxyType(
    {
        "\u9ad9": "\u9ad8",  # 髙 → 高 (はしご高)
        "\ufa11": "\u5d0e",  # 﨑 → 崎 (たつさき)
        "\U00020bb7": "\u5409",  # 𠮷 → 吉 (つちよし)
        "\u6801": "\u67f3",  # 栁 → 柳
        "\u7028": "\u702c",  # 瀨 → 瀬
        "\u5fb7": "\u5fb3",  # 德 → 徳
        "\u974d": "\u9db4",  # 靍 → 鶴
        "\u9ed1": "\u9ed2",  # 黑 → 黒
        "\u6df8": "\u6e05",  # 淸 → 清
        "\u5721": "\u571f",  # 圡 → 土
        "\U0002123d": "\u571f",  # 𡈽 → 土
        "\U00020b9f": "\u53f1",  # 𠮟 → 叱
        "\U0002363a": "\u6a4b",  # 𣘺 → 橋
        "\U000266b0": "\u8107",  # 𦚰 → 脇
    }
)


@dataclass(frozen=True, repr=False)
class EncodedText:
    """A name or address as carried in the certificate, with its substitution map.

    reference §1.3 (5.5.2 / 5.5.6): ``substitution_map`` has one ``0``/``1`` per character of
    ``text``; ``1`` where a substitute character stands in for one outside JIS X 0208/0212.
    """

    text: str
    substitution_map: str

    def __post_init__(self) -> None:
        if len(self.substitution_map) != len(self.text):
            raise InvalidBasic4(
                "substitution map: length differs from the text length", rule="map_length"
            )
        if not set(self.substitution_map) <= {"0", "1"}:
            raise InvalidBasic4("substitution map: only 0 and 1 are allowed", rule="map_chars")

    @property
    def has_substitutes(self) -> bool:
        return "1" in self.substitution_map

    def __repr__(self) -> str:
        return f"EncodedText({_REDACTED})"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return format(repr(self), format_spec)


def encode_jis_text(value: str) -> EncodedText:
    """Replace every character outside JIS X 0208/0212 by a substitute, one for one.

    The substitute is the standard form from :data:`VARIANT_SUBSTITUTES` when there is one, else
    the geta mark 〓 (U+3013). Works per code point, so the output has the input's length; give it
    text from :func:`normalize_name`/:func:`normalize_address` (NFC, full-width), or ASCII and
    combining marks will come out as 〓.
    """
    if not isinstance(value, str):
        raise InvalidBasic4("text to encode must be a string", rule="type")
    chars: list[str] = []
    flags: list[str] = []
    for ch in value:
        if is_jis_character(ch):
            chars.append(ch)
            flags.append("0")
        else:
            chars.append(VARIANT_SUBSTITUTES.get(ch, GETA_MARK))
            flags.append("1")
    return EncodedText("".join(chars), "".join(flags))


# --- the basic 4 information --------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Basic4:
    """Name, birth date, sex and address of a resident. Never printed: repr/str are redacted.

    Construction normalises ``name`` and ``address`` (:func:`normalize_name`,
    :func:`normalize_address`), so a ``Basic4`` always holds the form the certificate carries
    (before substitution) and two records that differ only in width or spacing compare equal.
    """

    name: str
    birth_date: date
    sex: Sex
    address: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalize_name(self.name))
        if not isinstance(self.birth_date, date) or isinstance(self.birth_date, datetime):
            raise InvalidBasic4(
                "birth_date: must be a calendar date", field="birth_date", rule="type"
            )
        sex: object = self.sex
        if not isinstance(sex, Sex):
            if isinstance(sex, bool) or not isinstance(sex, int) or sex not in (1, 2, 3):
                raise InvalidBasic4("sex: must be 1, 2 or 3", field="sex", rule="value")
            object.__setattr__(self, "sex", Sex(sex))
        object.__setattr__(self, "address", normalize_address(self.address))

    def __repr__(self) -> str:
        return f"Basic4({_REDACTED})"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return format(repr(self), format_spec)


def personal_data_other_names(b4: Basic4) -> list[tuple[str, str]]:
    """The six (OID, UTF8String value) otherNames of the signing certificate's subjectAltName.

    reference §1.3: in the order observed on real certificates — name, birth date, sex,
    address, name substitution map, address substitution map.
    """
    name = encode_jis_text(b4.name)
    address = encode_jis_text(b4.address)
    return [
        (OID_NAME, name.text),
        (OID_BIRTH_DATE, encode_birth_date(b4.birth_date)),
        (OID_SEX, str(int(b4.sex))),
        (OID_ADDRESS, address.text),
        (OID_NAME_SUBSTITUTION_MAP, name.substitution_map),
        (OID_ADDRESS_SUBSTITUTION_MAP, address.substitution_map),
    ]


def _parse_encoded(text: str, substitution_map: str, field: str) -> EncodedText:
    if not text:
        raise InvalidBasic4(f"{field}: must not be empty", field=field, rule="empty")
    for position, ch in enumerate(text, start=1):
        if not is_jis_character(ch):
            raise InvalidBasic4(
                f"{field}: character at position {position} is outside JIS X 0208/0212",
                field=field,
                position=position,
                rule="not_jis",
            )
    if len(substitution_map) != len(text):
        raise InvalidBasic4(
            f"{field}: substitution map length differs from the text length",
            field=field,
            rule="map_length",
        )
    for position, flag in enumerate(substitution_map, start=1):
        if flag not in ("0", "1"):
            raise InvalidBasic4(
                f"{field}: substitution map character at position {position} is not 0 or 1",
                field=field,
                position=position,
                rule="map_chars",
            )
    normalize = normalize_name if field == "name" else normalize_address
    if normalize(text) != text:
        # The maps refer to positions in this exact text; a value we would rewrite cannot be
        # held in a Basic4 without the maps going out of step.
        raise InvalidBasic4(f"{field}: not in the normalised form", field=field, rule="not_normal")
    return EncodedText(text, substitution_map)


def basic4_from_other_names(
    pairs: Iterable[tuple[str, str]],
) -> tuple[Basic4, str, str]:
    """Parse the six otherNames back: ``(basic4, name_substitution_map, address_map)``.

    reference §1.3: exactly the six OIDs ``…8.5.5.1``–``.6``, each once (HITACHI rejects any
    other count). The order is not enforced: it is only observed, not specified. Raises
    :class:`InvalidBasic4` for an unknown, duplicate or missing OID, or a malformed value.
    """
    values: dict[str, str] = {}
    for item in pairs:
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidBasic4("otherName: expected an (OID, value) pair", rule="shape")
        oid, value = item
        if not isinstance(oid, str) or oid not in PERSONAL_DATA_OIDS:
            raise InvalidBasic4(
                "otherName: unknown type-id",
                oid=oid if isinstance(oid, str) else None,
                rule="unknown_oid",
            )
        if oid in values:
            raise InvalidBasic4("otherName: duplicate type-id", oid=oid, rule="duplicate_oid")
        if not isinstance(value, str):
            raise InvalidBasic4("otherName: value must be a string", oid=oid, rule="type")
        values[oid] = value
    for oid in PERSONAL_DATA_OIDS:
        if oid not in values:
            raise InvalidBasic4("otherName: missing type-id", oid=oid, rule="missing_oid")

    name = _parse_encoded(values[OID_NAME], values[OID_NAME_SUBSTITUTION_MAP], "name")
    address = _parse_encoded(values[OID_ADDRESS], values[OID_ADDRESS_SUBSTITUTION_MAP], "address")
    sex_value = values[OID_SEX]
    if sex_value not in ("1", "2", "3"):
        raise InvalidBasic4("sex: must be 1, 2 or 3", field="sex", rule="value")
    try:
        birth_date = decode_birth_date(values[OID_BIRTH_DATE])
    except InvalidDate as exc:
        raise InvalidBasic4(exc.detail, field="birth_date", rule=exc.context.get("rule")) from exc
    b4 = Basic4(
        name=name.text, birth_date=birth_date, sex=Sex(int(sex_value)), address=address.text
    )
    return b4, name.substitution_map, address.substitution_map
