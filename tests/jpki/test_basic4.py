"""jpki.basic4: the basic 4 information and its subjectAltName encoding (reference §1.3)."""

from __future__ import annotations

import dataclasses
import logging
import random
import unicodedata
from datetime import date, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from jpki.basic4 import (
    ADDRESS_MAX_CHARS,
    GETA_MARK,
    IDEOGRAPHIC_SPACE,
    NAME_MAX_CHARS,
    OID_ADDRESS,
    OID_ADDRESS_SUBSTITUTION_MAP,
    OID_BIRTH_DATE,
    OID_NAME,
    OID_NAME_SUBSTITUTION_MAP,
    OID_PERSONAL_DATA,
    OID_SEX,
    PERSONAL_DATA_OIDS,
    VARIANT_SUBSTITUTES,
    Basic4,
    EncodedText,
    Sex,
    basic4_from_other_names,
    encode_jis_text,
    is_jis_character,
    normalize_address,
    normalize_name,
    personal_data_other_names,
)
from jpki.errors import InvalidBasic4, JpkiError

NAME = "山田　太郎"
ADDRESS = "東京都清瀬市中里五丁目８４２番地"
BIRTH = date(1990, 1, 2)
# Fragments of the values above that must never show up in a repr, a message or a log line.
SECRETS = ("山田", "太郎", "清瀬", "中里", "1990", "01-02", "419900102", "FEMALE", "Sex.")


def make_b4(**changes: object) -> Basic4:
    b4 = Basic4(name=NAME, birth_date=BIRTH, sex=Sex.FEMALE, address=ADDRESS)
    return dataclasses.replace(b4, **changes) if changes else b4  # type: ignore[arg-type]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def assert_error_is_clean(exc: JpkiError, *values: str) -> None:
    """The error names the field/rule but carries none of the offending values."""
    rendered = [str(exc), repr(exc), exc.detail, repr(exc.context), repr(exc.args)]
    for text in rendered:
        for value in values:
            stripped = value.strip()
            if len(stripped) >= 2:
                assert stripped not in text


class TestSex:
    def test_codes(self) -> None:
        # reference §1.3: 1 male, 2 female, 3 unknown.
        assert (Sex.MALE, Sex.FEMALE, Sex.UNKNOWN) == (1, 2, 3)


class TestBasic4Redaction:
    def test_repr_and_str(self) -> None:
        b4 = make_b4()
        assert repr(b4) == "Basic4(<redacted>)"
        assert str(b4) == "Basic4(<redacted>)"

    def test_containers_and_formatting(self) -> None:
        b4 = make_b4()
        for text in (
            repr([b4]),
            repr({"resident": b4}),
            repr((b4,)),
            f"{b4}",
            f"{b4!r}",
            f"{b4!s}",
            f"{b4:>40}",
            "%s %r" % (b4, b4),  # noqa: UP031 - the %-style that logging uses
            "{}".format(b4),  # noqa: UP032
        ):
            assert "<redacted>" in text
            assert_no_secret(text)

    def test_inside_exceptions(self) -> None:
        b4 = make_b4()
        for exc in (ValueError(b4), JpkiError(f"could not issue for {b4}"), KeyError(b4)):
            assert_no_secret(str(exc))
            assert_no_secret(repr(exc))

    def test_in_log_lines(self, caplog: pytest.LogCaptureFixture) -> None:
        b4 = make_b4()
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("jpki.test").warning("resident %s / %r", b4, b4)
            logging.getLogger("jpki.test").warning("list %s", [b4])
        assert "<redacted>" in caplog.text
        assert_no_secret(caplog.text)

    def test_encoded_text_redacts(self) -> None:
        enc = encode_jis_text(NAME)
        for text in (repr(enc), str(enc), f"{enc}", repr([enc])):
            assert text.startswith("EncodedText(<redacted>)") or "EncodedText(<redacted>)" in text
            assert_no_secret(text)


class TestBasic4Construction:
    def test_normalises(self) -> None:
        b4 = Basic4(name=" Yamada  Taro ", birth_date=BIRTH, sex=Sex.MALE, address="Tokyo 1-2-3")
        assert b4.name == "Ｙａｍａｄａ　Ｔａｒｏ"
        assert b4.address == "Ｔｏｋｙｏ　１−２−３"

    def test_equal_after_normalisation(self) -> None:
        a = Basic4(name="山田 太郎", birth_date=BIRTH, sex=Sex.MALE, address="清瀬市1-2")
        b = Basic4(name="山田　　太郎", birth_date=BIRTH, sex=Sex.MALE, address="清瀬市１－２")
        assert a == b
        assert hash(a) == hash(b)

    def test_replace_normalises(self) -> None:
        b4 = dataclasses.replace(make_b4(), name="A B")
        assert b4.name == "Ａ　Ｂ"

    def test_frozen(self) -> None:
        b4 = make_b4()
        with pytest.raises(dataclasses.FrozenInstanceError):
            b4.name = "x"  # type: ignore[misc]

    def test_int_sex_is_coerced(self) -> None:
        b4 = Basic4(name=NAME, birth_date=BIRTH, sex=2, address=ADDRESS)  # type: ignore[arg-type]
        assert b4.sex is Sex.FEMALE

    @pytest.mark.parametrize("sex", [0, 4, True, "1", None])
    def test_bad_sex(self, sex: object) -> None:
        with pytest.raises(InvalidBasic4) as info:
            Basic4(name=NAME, birth_date=BIRTH, sex=sex, address=ADDRESS)  # type: ignore[arg-type]
        assert info.value.context["field"] == "sex"

    @pytest.mark.parametrize("birth", [datetime(1990, 1, 2), "1990-01-02", None])
    def test_bad_birth_date(self, birth: object) -> None:
        with pytest.raises(InvalidBasic4) as info:
            Basic4(name=NAME, birth_date=birth, sex=Sex.MALE, address=ADDRESS)  # type: ignore[arg-type]
        assert info.value.context["field"] == "birth_date"
        assert_error_is_clean(info.value, "1990")

    def test_bad_name_error_is_clean(self) -> None:
        with pytest.raises(InvalidBasic4) as info:
            Basic4(name="山田\t太郎", birth_date=BIRTH, sex=Sex.MALE, address=ADDRESS)
        assert info.value.context["field"] == "name"
        assert_error_is_clean(info.value, "山田", "太郎")


class TestNormalizeName:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("山田　太郎", "山田　太郎"),
            ("山田 太郎", "山田　太郎"),  # §1.3: one ASCII space accepted as the separator
            ("山田　　太郎", "山田　太郎"),  # runs collapse
            ("山田 \u3000 太郎", "山田　太郎"),
            ("  山田 太郎\u3000 ", "山田　太郎"),  # stripped
            ("山田\u00a0太郎", "山田　太郎"),  # NBSP is a space separator too
            ("山田", "山田"),  # single-part name accepted
            ("SMITH JOHN WILLIAM", "ＳＭＩＴＨ　ＪＯＨＮ　ＷＩＬＬＩＡＭ"),  # several parts
            ("Yamada Taro", "Ｙａｍａｄａ　Ｔａｒｏ"),
            ("O'Brien", "Ｏ’Ｂｒｉｅｎ"),
            ("Anne-Marie", "Ａｎｎｅ−Ｍａｒｉｅ"),  # hyphen → U+2212 (JIS X 0208 0x215D)
            ("ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダ　タロウ"),  # half-width katakana → full-width
            ("ﾊﾟｽﾀ", "パスタ"),
            ("ｳﾞｨ", "ヴィ"),
            ("ﾞ", "゛"),  # lone voiced mark → spacing form
            ("か\u3099", "が"),  # NFC composes
            ("葛\U000e0100飾", "葛飾"),  # ideographic variation selector dropped
            ("髙橋", "髙橋"),  # non-JIS kanji kept here; encode_jis_text substitutes
            ("𠮷田", "𠮷田"),
            ("山田\ue000", "山田\ue000"),  # private use (外字) kept for substitution
        ],
    )
    def test_examples(self, raw: str, expected: str) -> None:
        assert normalize_name(raw) == expected

    @pytest.mark.parametrize(
        ("raw", "rule", "position"),
        [
            ("", "empty", None),
            ("   ", "empty", None),
            ("\u3000", "empty", None),
            ("山田\t太郎", "control_character", 3),
            ("山田\n太郎", "control_character", 3),
            ("\x00山田", "control_character", 1),
            ("山田\u200b太郎", "format_character", 3),  # zero-width space
            ("山田\u202e太郎", "format_character", 3),  # right-to-left override
            ("\ufeff山田", "format_character", 1),  # BOM
            ("山田\ud800", "surrogate", 3),
            ("山田\u2028太郎", "line_separator", 3),
            ("山田\u2029太郎", "paragraph_separator", 3),
        ],
    )
    def test_rejects(self, raw: str, rule: str, position: int | None) -> None:
        with pytest.raises(InvalidBasic4) as info:
            normalize_name(raw)
        exc = info.value
        assert exc.context["field"] == "name"
        assert exc.context["rule"] == rule
        assert exc.context.get("position") == position
        assert_error_is_clean(exc, "山田", "太郎")

    def test_length_limit(self) -> None:
        assert len(normalize_name("亜" * NAME_MAX_CHARS)) == NAME_MAX_CHARS
        with pytest.raises(InvalidBasic4) as info:
            normalize_name("亜" * (NAME_MAX_CHARS + 1))
        assert info.value.context["rule"] == "too_long"
        # The limit applies after normalisation: collapsed spaces do not count.
        assert normalize_name("亜" * 50 + " " * 30 + "亜" * 49).count("亜") == 99

    def test_non_string(self) -> None:
        with pytest.raises(InvalidBasic4):
            normalize_name(None)  # type: ignore[arg-type]

    @given(st.text(max_size=60))
    def test_properties(self, raw: str) -> None:
        try:
            name = normalize_name(raw)
        except InvalidBasic4:
            return
        assert normalize_name(name) == name  # idempotent
        assert name == unicodedata.normalize("NFC", name)
        assert not any(ch.isascii() for ch in name)
        assert not name.startswith(IDEOGRAPHIC_SPACE) and not name.endswith(IDEOGRAPHIC_SPACE)
        assert IDEOGRAPHIC_SPACE * 2 not in name
        assert all(unicodedata.category(ch) not in {"Cc", "Cf", "Cs"} for ch in name)
        assert 1 <= len(name) <= NAME_MAX_CHARS


class TestNormalizeAddress:
    def test_hyphen(self) -> None:
        # §1.3: full-width hyphen allowed. ASCII "-" and the cp932 full-width U+FF0D both become
        # U+2212, the code point of JIS X 0208 0x215D in the euc_jp mapping.
        assert normalize_address("東京都清瀬市中里1-2-3") == "東京都清瀬市中里１−２−３"
        assert normalize_address("東京都清瀬市中里１－２－３") == "東京都清瀬市中里１−２−３"
        assert not encode_jis_text(normalize_address("中里１－２－３")).has_substitutes

    def test_building(self) -> None:
        assert normalize_address("清瀬市中里1-2  ｸﾞﾗﾝﾄﾞ 101") == "清瀬市中里１−２　グランド　１０１"

    def test_length_limit(self) -> None:
        assert len(normalize_address("a" * ADDRESS_MAX_CHARS)) == ADDRESS_MAX_CHARS
        for raw in ("a" * (ADDRESS_MAX_CHARS + 1), "東" * (ADDRESS_MAX_CHARS + 1)):
            with pytest.raises(InvalidBasic4) as info:
                normalize_address(raw)
            assert info.value.context == {"field": "address", "rule": "too_long", "limit": 200}

    @pytest.mark.parametrize("raw", ["", " ", "清瀬市\r\n中里", "清瀬市\x7f"])
    def test_rejects(self, raw: str) -> None:
        with pytest.raises(InvalidBasic4) as info:
            normalize_address(raw)
        assert info.value.context["field"] == "address"
        assert_error_is_clean(info.value, "清瀬市", "中里")

    @pytest.mark.parametrize("code", range(0x21, 0x7F))
    def test_every_printable_ascii_becomes_jis(self, code: int) -> None:
        out = normalize_address(chr(code))
        assert len(out) == 1 and is_jis_character(out)

    @pytest.mark.parametrize("code", range(0xFF61, 0xFFA0))
    def test_every_halfwidth_katakana_becomes_jis(self, code: int) -> None:
        out = normalize_address(chr(code))
        assert out and all(is_jis_character(ch) for ch in out)

    @pytest.mark.parametrize(
        "ch",
        [
            "\uff0d",
            "\uff5e",
            "\u2225",
            "\u2014",
            "\uffe0",
            "\uffe1",
            "\uffe2",
            "\uff02",
            "\uff07",
            "\u00a5",
            "\u203e",
        ],
    )
    def test_cp932_forms_fold_onto_jis(self, ch: str) -> None:
        assert not is_jis_character(ch)
        out = normalize_address(ch)
        assert len(out) == 1 and is_jis_character(out)

    @given(st.text(max_size=250))
    def test_idempotent(self, raw: str) -> None:
        try:
            address = normalize_address(raw)
        except InvalidBasic4:
            return
        assert normalize_address(address) == address
        assert len(address) <= ADDRESS_MAX_CHARS


class TestIsJisCharacter:
    @pytest.mark.parametrize(
        ("ch", "expected"),
        [
            ("亜", True),  # JIS X 0208 level 1
            ("熙", True),  # JIS X 0208 level 2
            ("あ", True),
            ("Ａ", True),
            ("〓", True),  # row 2
            ("\u3000", True),
            ("濵", True),  # JIS X 0212 補助漢字
            ("槗", True),  # JIS X 0212
            ("é", True),  # JIS X 0212 row 11
            ("A", False),  # ASCII
            ("ｱ", False),  # half-width katakana (0x8E lead)
            ("¥", False),  # JIS X 0201 roman
            ("髙", False),  # IBM extension, not JIS X 0208/0212
            ("﨑", False),
            ("①", False),  # NEC row 13, not JIS X 0208
            ("𠮷", False),  # outside the BMP
            ("\ue000", False),
            ("\ud800", False),
            ("", False),
            ("亜亜", False),
        ],
    )
    def test_examples(self, ch: str, expected: bool) -> None:
        assert is_jis_character(ch) is expected


class TestVariantSubstitutes:
    @pytest.mark.parametrize(("source", "target"), sorted(VARIANT_SUBSTITUTES.items()))
    def test_source_outside_and_target_inside(self, source: str, target: str) -> None:
        assert not is_jis_character(source)
        assert is_jis_character(target)
        # NFC must not already rewrite the source, or the entry could never be used.
        assert unicodedata.normalize("NFC", source) == source

    def test_well_known_entries(self) -> None:
        for source, target in [
            ("髙", "高"),
            ("﨑", "崎"),
            ("𠮷", "吉"),
            ("栁", "柳"),
            ("瀨", "瀬"),
            ("德", "徳"),
        ]:
            assert VARIANT_SUBSTITUTES[source] == target

    @pytest.mark.parametrize("ch", ["濵", "槗", "舘"])
    def test_jis_variants_are_not_substituted(self, ch: str) -> None:
        # 濵 and 槗 are JIS X 0212, 舘 is JIS X 0208: they are carried as they are.
        assert is_jis_character(ch)
        assert ch not in VARIANT_SUBSTITUTES
        assert encode_jis_text(ch) == EncodedText(ch, "0")


class TestEncodeJisText:
    @pytest.mark.parametrize(
        ("value", "text", "substitution_map"),
        [
            ("山田　太郎", "山田　太郎", "00000"),
            ("髙橋　一郎", "高橋　一郎", "10000"),
            ("𠮷田　花子", "吉田　花子", "10000"),  # one code point outside the BMP → one char
            ("山﨑", "山崎", "01"),
            ("山田\ue000", "山田〓", "001"),  # private use (外字) → geta
            ("①丁目", "〓丁目", "100"),
            ("〓", "〓", "0"),  # a geta in the input is a JIS character like any other
            ("A", "〓", "1"),  # not normalised first: ASCII does not qualify
            ("e\u0301", "〓〓", "11"),  # not NFC: the combining mark does not qualify
            ("", "", ""),
        ],
    )
    def test_examples(self, value: str, text: str, substitution_map: str) -> None:
        assert encode_jis_text(value) == EncodedText(text, substitution_map)

    def test_has_substitutes(self) -> None:
        assert encode_jis_text("髙").has_substitutes
        assert not encode_jis_text("高").has_substitutes

    @given(
        st.text(
            alphabet=st.one_of(
                st.characters(),
                st.sampled_from("山田太郎髙﨑𠮷濵槗栁瀨德〓　ｱA①\ue000"),
            ),
            max_size=40,
        )
    )
    def test_properties(self, value: str) -> None:
        enc = encode_jis_text(value)
        assert len(enc.text) == len(value)
        assert len(enc.substitution_map) == len(enc.text)
        assert all(is_jis_character(ch) for ch in enc.text)
        for original, out, flag in zip(value, enc.text, enc.substitution_map, strict=True):
            assert (flag == "1") == (out != original)
            if flag == "1":
                assert out == VARIANT_SUBSTITUTES.get(original, GETA_MARK)

    @pytest.mark.parametrize(
        ("text", "substitution_map"), [("山田", "0"), ("山田", "02"), ("", "0")]
    )
    def test_bad_map(self, text: str, substitution_map: str) -> None:
        with pytest.raises(InvalidBasic4):
            EncodedText(text, substitution_map)


class TestPersonalDataOtherNames:
    def test_oids(self) -> None:
        assert OID_PERSONAL_DATA == "1.2.392.200149.8.5.5"
        assert tuple(f"{OID_PERSONAL_DATA}.{i}" for i in range(1, 7)) == (
            OID_NAME,
            OID_NAME_SUBSTITUTION_MAP,
            OID_SEX,
            OID_BIRTH_DATE,
            OID_ADDRESS,
            OID_ADDRESS_SUBSTITUTION_MAP,
        )

    def test_order_and_values(self) -> None:
        b4 = Basic4(name="髙橋 花子", birth_date=BIRTH, sex=Sex.FEMALE, address="東京都清瀬市1-2")
        pairs = personal_data_other_names(b4)
        # reference §1.3: order observed on real certificates: .1, .4, .3, .5, .2, .6.
        assert [oid for oid, _ in pairs] == [
            "1.2.392.200149.8.5.5.1",
            "1.2.392.200149.8.5.5.4",
            "1.2.392.200149.8.5.5.3",
            "1.2.392.200149.8.5.5.5",
            "1.2.392.200149.8.5.5.2",
            "1.2.392.200149.8.5.5.6",
        ]
        assert [oid for oid, _ in pairs] == list(PERSONAL_DATA_OIDS)
        assert dict(pairs) == {
            OID_NAME: "高橋　花子",
            OID_BIRTH_DATE: "419900102",
            OID_SEX: "2",
            OID_ADDRESS: "東京都清瀬市１−２",
            OID_NAME_SUBSTITUTION_MAP: "10000",
            OID_ADDRESS_SUBSTITUTION_MAP: "000000000",
        }

    @pytest.mark.parametrize(
        ("sex", "code"), [(Sex.MALE, "1"), (Sex.FEMALE, "2"), (Sex.UNKNOWN, "3")]
    )
    def test_sex(self, sex: Sex, code: str) -> None:
        assert dict(personal_data_other_names(make_b4(sex=sex)))[OID_SEX] == code

    def test_meiji_birth(self) -> None:
        pairs = dict(personal_data_other_names(make_b4(birth_date=date(1899, 12, 1))))
        assert pairs[OID_BIRTH_DATE] == "118991201"


class TestBasic4FromOtherNames:
    def test_round_trip(self) -> None:
        b4 = make_b4()
        parsed, name_map, address_map = basic4_from_other_names(personal_data_other_names(b4))
        assert parsed == b4
        assert name_map == "0" * len(NAME)
        assert address_map == "0" * len(ADDRESS)

    def test_round_trip_with_substitutes(self) -> None:
        b4 = make_b4(name="髙橋\ue000子")
        parsed, name_map, _ = basic4_from_other_names(personal_data_other_names(b4))
        assert parsed.name == "高橋〓子"
        assert name_map == "1010"

    def test_order_not_enforced(self) -> None:
        pairs = personal_data_other_names(make_b4())
        random.Random(7).shuffle(pairs)
        assert basic4_from_other_names(pairs)[0] == make_b4()

    def _pairs(self, **overrides: str) -> list[tuple[str, str]]:
        values = dict(personal_data_other_names(make_b4()))
        values.update({oid: value for oid, value in overrides.items()})
        return list(values.items())

    @pytest.mark.parametrize("missing", PERSONAL_DATA_OIDS)
    def test_missing(self, missing: str) -> None:
        pairs = [p for p in personal_data_other_names(make_b4()) if p[0] != missing]
        with pytest.raises(InvalidBasic4) as info:
            basic4_from_other_names(pairs)
        assert info.value.context == {"oid": missing, "rule": "missing_oid"}

    def test_duplicate(self) -> None:
        pairs = personal_data_other_names(make_b4())
        with pytest.raises(InvalidBasic4) as info:
            basic4_from_other_names([*pairs, pairs[2]])
        assert info.value.context["rule"] == "duplicate_oid"
        assert_error_is_clean(info.value, NAME, ADDRESS)

    def test_unknown(self) -> None:
        pairs = [*personal_data_other_names(make_b4()), ("1.2.392.200149.8.5.5.7", "x")]
        with pytest.raises(InvalidBasic4) as info:
            basic4_from_other_names(pairs)
        assert info.value.context == {"oid": "1.2.392.200149.8.5.5.7", "rule": "unknown_oid"}

    @pytest.mark.parametrize(
        ("oid", "value", "field", "rule"),
        [
            (OID_SEX, "4", "sex", "value"),
            (OID_SEX, "M", "sex", "value"),
            (OID_SEX, "", "sex", "value"),
            (OID_BIRTH_DATE, "319900102", "birth_date", "era_mismatch"),
            (OID_BIRTH_DATE, "19900102", "birth_date", "length"),
            (OID_NAME, "", "name", "empty"),
            (OID_NAME, "山田 太郎", "name", "not_jis"),  # ASCII space
            (OID_NAME, "\u3000山田太郎", "name", "not_normal"),  # all JIS, but not normalised
            (OID_NAME, "山田太郎", "name", "map_length"),  # map is for 5 characters
            (OID_NAME_SUBSTITUTION_MAP, "00x00", "name", "map_chars"),
            (OID_ADDRESS, "東京都\ue000", "address", "not_jis"),
            (OID_ADDRESS_SUBSTITUTION_MAP, "0", "address", "map_length"),
        ],
    )
    def test_malformed(self, oid: str, value: str, field: str, rule: str) -> None:
        with pytest.raises(InvalidBasic4) as info:
            basic4_from_other_names(self._pairs(**{oid: value}))
        assert info.value.context["field"] == field
        assert info.value.context["rule"] == rule
        assert_error_is_clean(info.value, value, NAME, ADDRESS, "1990")

    def test_non_string_value(self) -> None:
        pairs: list[tuple[str, object]] = [*self._pairs()]
        pairs[0] = (OID_NAME, b"\xe5\xb1\xb1")
        with pytest.raises(InvalidBasic4):
            basic4_from_other_names(pairs)  # type: ignore[arg-type]

    @given(
        name=st.text(alphabet="山田髙𠮷子ab 　-ｱ\ue000", min_size=1, max_size=20),
        birth=st.dates(min_value=date(1850, 1, 1), max_value=date(2100, 12, 31)),
        sex=st.sampled_from(Sex),
        address=st.text(alphabet="東京都清瀬市中里0123456789-ｸﾞ 﨑", min_size=1, max_size=60),
    )
    def test_round_trip_property(self, name: str, birth: date, sex: Sex, address: str) -> None:
        try:
            b4 = Basic4(name=name, birth_date=birth, sex=sex, address=address)
        except InvalidBasic4:
            assume(False)
            return
        parsed, name_map, address_map = basic4_from_other_names(personal_data_other_names(b4))
        assert parsed.name == encode_jis_text(b4.name).text
        assert parsed.address == encode_jis_text(b4.address).text
        assert (parsed.birth_date, parsed.sex) == (birth, sex)
        assert name_map == encode_jis_text(b4.name).substitution_map
        assert address_map == encode_jis_text(b4.address).substitution_map
        if "1" not in name_map + address_map:
            assert parsed == b4
