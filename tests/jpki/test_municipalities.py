"""jpki.municipalities: 全国地方公共団体コード, prefectures, seed data, CRL DP names."""

from __future__ import annotations

import pytest

from jpki.errors import InvalidMunicipalityCode
from jpki.municipalities import (
    PREFECTURES,
    CrlShard,
    Municipality,
    Prefecture,
    check_digit,
    crl_dp_rdns,
    load_registry,
    load_seed,
    municipality_romaji,
    shard_name,
    validate_municipality_code,
)


def with_check_digit(code5: str) -> str:
    return code5 + str(check_digit(code5))


class TestCheckDigit:
    @pytest.mark.parametrize(
        ("code5", "digit"),
        [
            ("13101", 6),  # 千代田区 131016
            ("01100", 2),  # 札幌市 011002
            ("13221", 7),  # 清瀬市 132217
            ("13104", 1),  # 新宿区 131041: remainder 0 → 1
            ("20000", 0),  # 長野県 200000: remainder 1 → 0
            ("13213", 6),  # 東村山市 132136
        ],
    )
    def test_examples(self, code5: str, digit: int) -> None:
        assert check_digit(code5) == digit

    @pytest.mark.parametrize("code5", ["1310", "131016", "1310a", "１３１０１", ""])
    def test_rejects(self, code5: str) -> None:
        with pytest.raises(InvalidMunicipalityCode):
            check_digit(code5)


class TestValidate:
    @pytest.mark.parametrize("code", ["131016", "011002", "132217", "472018"])
    def test_valid(self, code: str) -> None:
        assert validate_municipality_code(code) == code

    @pytest.mark.parametrize(
        ("code", "rule"),
        [
            ("13101", "length"),
            ("1310160", "length"),
            ("", "length"),
            ("13101a", "digits"),
            ("１３１０１６", "digits"),  # full-width digits
            ("13 016", "digits"),
            (with_check_digit("00100"), "prefecture"),
            (with_check_digit("48100"), "prefecture"),
            (with_check_digit("99100"), "prefecture"),
            ("131017", "check_digit"),
            ("132210", "check_digit"),
        ],
    )
    def test_invalid(self, code: str, rule: str) -> None:
        with pytest.raises(InvalidMunicipalityCode) as info:
            validate_municipality_code(code)
        assert info.value.context["rule"] == rule

    def test_non_string(self) -> None:
        with pytest.raises(InvalidMunicipalityCode):
            validate_municipality_code(131016)  # type: ignore[arg-type]


class TestPrefectures:
    def test_all_47(self) -> None:
        assert list(PREFECTURES) == [f"{i:02d}" for i in range(1, 48)]
        assert all(p.code == code for code, p in PREFECTURES.items())

    def test_examples(self) -> None:
        assert PREFECTURES["01"] == Prefecture("01", "北海道", "Hokkaido")
        assert PREFECTURES["02"] == Prefecture("02", "青森県", "Aomori-ken")
        assert PREFECTURES["13"] == Prefecture("13", "東京都", "Tokyo-to")
        assert PREFECTURES["26"] == Prefecture("26", "京都府", "Kyoto-fu")
        assert PREFECTURES["27"] == Prefecture("27", "大阪府", "Osaka-fu")
        assert PREFECTURES["47"] == Prefecture("47", "沖縄県", "Okinawa-ken")

    def test_suffixes_agree(self) -> None:
        suffix = {"県": "-ken", "都": "-to", "府": "-fu"}
        for p in PREFECTURES.values():
            assert p.name_romaji.isascii() and p.name_romaji.isprintable()
            if p.code == "01":
                continue
            assert p.name_romaji.endswith(suffix[p.name_ja[-1]])

    def test_unique_names(self) -> None:
        assert len({p.name_ja for p in PREFECTURES.values()}) == 47
        assert len({p.name_romaji for p in PREFECTURES.values()}) == 47


class TestSeed:
    def test_codes(self) -> None:
        seed = load_seed()
        codes = [m.code for m in seed]
        assert len(codes) == len(set(codes)) == 71
        for m in seed:
            assert validate_municipality_code(m.code) == m.code
            assert m.code[5] == str(check_digit(m.code[:5]))
            assert m.prefecture.code == m.code[:2]
            assert m.name_romaji.endswith(("-shi", "-ku"))
            assert m.name_ja.endswith(("市", "区"))

    def test_coverage(self) -> None:
        seed = load_seed()
        assert {m.prefecture.code for m in seed} == set(PREFECTURES)
        wards = [m for m in seed if m.code.startswith("131")]
        assert len(wards) == 23
        assert all(m.name_romaji.endswith("-ku") for m in wards)

    @pytest.mark.parametrize(
        "expected",
        [
            Municipality("131016", "千代田区", "Chiyoda-ku"),
            Municipality("131041", "新宿区", "Shinjuku-ku"),
            Municipality("011002", "札幌市", "Sapporo-shi"),
            Municipality("132217", "清瀬市", "Kiyose-shi"),
            Municipality("132136", "東村山市", "Higashimurayama-shi"),
            Municipality("472018", "那覇市", "Naha-shi"),
        ],
    )
    def test_contains(self, expected: Municipality) -> None:
        assert expected in load_seed()

    def test_fresh_list(self) -> None:
        load_seed().clear()
        assert len(load_seed()) == 71


class TestMunicipality:
    def test_prefecture(self) -> None:
        assert Municipality("132217", "清瀬市", "Kiyose-shi").prefecture.name_romaji == "Tokyo-to"

    @pytest.mark.parametrize(
        ("code", "name_ja", "name_romaji"),
        [
            ("132210", "清瀬市", "Kiyose-shi"),
            ("132217", "", "Kiyose-shi"),
            ("132217", "清瀬市", ""),
            ("132217", "清瀬市", "清瀬市"),
        ],
    )
    def test_invalid(self, code: str, name_ja: str, name_romaji: str) -> None:
        with pytest.raises(InvalidMunicipalityCode):
            Municipality(code, name_ja, name_romaji)


class TestCrlDistributionPoint:
    def test_kiyose_sign(self) -> None:
        kiyose = Municipality("132217", "清瀬市", "Kiyose-shi")
        # reference §1.2: C=JP, O=JPKI, OU=<CA>, OU=CRL Distribution Points,
        # OU=<prefecture>, CN=<city> CRLDP.
        assert crl_dp_rdns(kiyose, "JPKI for digital signature") == [
            ("C", "JP"),
            ("O", "JPKI"),
            ("OU", "JPKI for digital signature"),
            ("OU", "CRL Distribution Points"),
            ("OU", "Tokyo-to"),
            ("CN", "Kiyose-shi CRLDP"),
        ]

    def test_sapporo_auth(self) -> None:
        sapporo = Municipality("011002", "札幌市", "Sapporo-shi")
        rdns = crl_dp_rdns(sapporo, "JPKI for user authentication")
        assert rdns[2] == ("OU", "JPKI for user authentication")
        assert rdns[4:] == [("OU", "Hokkaido"), ("CN", "Sapporo-shi CRLDP")]

    @pytest.mark.parametrize("ca_ou", ["", "署名用"])
    def test_bad_ca_ou(self, ca_ou: str) -> None:
        with pytest.raises(ValueError, match="ca_ou"):
            crl_dp_rdns(Municipality("132217", "清瀬市", "Kiyose-shi"), ca_ou)


class TestRomaji:
    """The documented rule (jpki.municipalities, architecture §5.6) for the municipalities
    outside the hand-written seed."""

    def test_it_reproduces_every_romaji_of_the_hand_written_seed(self) -> None:
        # The seed's 71 were written by hand before the rule existed: the rule must agree.
        kana = {m.code: m.name_kana for m in load_registry()}
        for m in load_seed():
            reading = kana[m.code]
            assert reading is not None
            assert municipality_romaji(m.name_ja, reading) == m.name_romaji, m.code

    @pytest.mark.parametrize(("name", "kana", "romaji"), [
        ("清瀬市", "きよせし", "Kiyose-shi"),
        ("札幌市 中央区", "さっぽろし ちゅうおうく", "Sapporo-shi Chuo-ku"),  # っ, long vowel
        ("大分市", "おおいたし", "Oita-shi"),  # oo
        ("十日町市", "とおかまちし", "Tokamachi-shi"),
        ("夕張市", "ゆうばりし", "Yubari-shi"),  # uu
        ("新居浜市", "にいはまし", "Niihama-shi"),  # ii stays
        ("常総市", "じょうそうし", "Joso-shi"),  # じょ
        ("別海町", "べつかいちょう", "Betsukai-cho"),  # 町 read ちょう
        ("千代田町", "ちよだまち", "Chiyoda-machi"),  # 町 read まち
        ("北相木村", "きたあいきむら", "Kitaaiki-mura"),
        ("大和村", "やまとそん", "Yamato-son"),
        ("観音寺市", "かんおんじし", "Kan'onji-shi"),  # ん before a vowel
        ("南陽市", "なんようし", "Nan'yo-shi"),  # ん before y
        ("八女市", "やめし", "Yame-shi"),
        ("一関市", "いちのせきし", "Ichinoseki-shi"),
        ("鉾田市", "ほこたし", "Hokota-shi"),
        ("大洲市", "おおずし", "Ozu-shi"),
        ("大浦町", "おおうらちょう", "Oura-cho"),  # a vowel after a dropped one is kept
        ("発寒町", "はっちゃむちょう", "Hatchamu-cho"),  # っ before ch is t
    ])
    def test_examples(self, name: str, kana: str, romaji: str) -> None:
        assert municipality_romaji(name, kana) == romaji

    @pytest.mark.parametrize(("name", "kana"), [
        ("清瀬市", "キヨセシ"),  # katakana
        ("清瀬市", "きよせ"),  # the reading lacks the kind
        ("清瀬", "きよせし"),  # the name lacks the kind
        ("札幌市 中央区", "さっぽろしちゅうおうく"),  # two parts, one reading
        ("清瀬市", "ゃし"),  # a small ya after nothing
        ("清瀬市", "きよっあし"),  # a small tsu before a vowel
    ])
    def test_refusals(self, name: str, kana: str) -> None:
        with pytest.raises(InvalidMunicipalityCode) as info:
            municipality_romaji(name, kana)
        assert info.value.context["rule"] == "kana"

    def test_the_registry_has_every_entity_once_and_no_shared_distribution_point(self) -> None:
        registry = load_registry()
        assert len({m.code for m in registry}) == len(registry) == 1916
        for m in registry:
            assert validate_municipality_code(m.code) == m.code
            assert m.shard == m.code and m.active
        names = [(m.code[:2], m.name_romaji) for m in registry]
        assert len(set(names)) == len(names)
        by_code = {m.code: m for m in registry}
        assert by_code["013617"].name_romaji == "Esashi-cho (013617)"  # 江差町
        assert by_code["015148"].name_romaji == "Esashi-cho (015148)"  # 枝幸町
        assert by_code["132217"] == Municipality("132217", "清瀬市", "Kiyose-shi")


class TestShards:
    def test_names(self) -> None:
        assert shard_name("132217", 1) == "132217"
        assert shard_name("132217", 2) == "132217-2"
        with pytest.raises(ValueError):
            shard_name("132217", 0)
        with pytest.raises(ValueError):
            CrlShard("132136-2", "132217", "Tokyo-to", "Kiyose-shi")  # another's code

    def test_a_shard_keeps_the_name_it_opened_with(self) -> None:
        kiyose = Municipality("132217", "清瀬市", "Kiyose-shi")
        frozen = kiyose.crl_shard
        renamed = Municipality("132217", "清瀬市", "Kiyose-city", shard="132217-2")
        assert crl_dp_rdns(frozen, "JPKI for digital signature")[-1] == ("CN", "Kiyose-shi CRLDP")
        assert crl_dp_rdns(renamed, "JPKI for digital signature")[-1] == \
            ("CN", "Kiyose-city CRLDP")
        assert renamed.crl_shard.name == "132217-2"
