"""Every field of every profile against reference §1.1–1.4, plus pkilint and OpenSSL.

Certificates here are made by the real pipeline (SoftHSM signatures) on both databases.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
    SignatureAlgorithmOID,
)

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.authority.profiles import EndEntitySpec, Issuer, build_end_entity
from jpki.authority.recipe import load_recipe
from jpki.basic4 import Basic4, Sex
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind
from jpki.municipalities import Municipality
from jpki.signing import to_be_signed
from jpki.urls import ServiceUrls
from tests.checkers import openssl_verify, pkilint_certificate

pytestmark = pytest.mark.hsm

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)

SIGN_CA_DN = [(NameOID.COUNTRY_NAME, "JP"), (NameOID.ORGANIZATION_NAME, "JPKI"),
              (NameOID.ORGANIZATIONAL_UNIT_NAME, "JPKI for digital signature"),
              (NameOID.ORGANIZATIONAL_UNIT_NAME,
               "Japan Agency for Local Authority Information Systems")]
AUTH_CA_DN = [SIGN_CA_DN[0], SIGN_CA_DN[1],
              (NameOID.ORGANIZATIONAL_UNIT_NAME, "JPKI for user authentication"),
              SIGN_CA_DN[3]]


def _rdns(name: x509.Name) -> list[tuple[x509.ObjectIdentifier, str]]:
    out = []
    for rdn in name.rdns:
        assert len(rdn) == 1, "one AVA per RDN (§1.1)"
        (attr,) = list(rdn)
        out.append((attr.oid, attr.value))
    return out


def _string_tags(name_der: bytes) -> list[int]:
    """The ASN.1 tag of every attribute value of a DER Name, in order."""
    parsed = asn1_x509.Name.load(name_der)
    return [ava["value"].chosen.tag for rdn in parsed.chosen for ava in rdn]


def _ca(services, ca: CaKind):
    with services.uow() as uow:
        gen = uow.cas.current(ca)
    return gen, x509.load_der_x509_certificate(gen.certificate_der)


@pytest.fixture
def pair(services, new_resident, subject_keys, clock):
    rid = new_resident(name="山田 太郎", birth=date(1990, 1, 2), sex=1,
                       address="東京都清瀬市中里一丁目２番３号")
    issued = services.issuance.issue(ISSUE, rid, [
        KeyRequest(CertKind.CARD_SIGN, subject_keys[0]),
        KeyRequest(CertKind.CARD_AUTH, subject_keys[1])])
    by_kind = {c.kind: x509.load_der_x509_certificate(c.der) for c in issued}
    return by_kind[CertKind.CARD_SIGN], by_kind[CertKind.CARD_AUTH]


# --- §1.1 roots ---------------------------------------------------------------------------


@pytest.mark.parametrize(("ca", "dn", "alt_ou"), [
    (CaKind.SIGN, SIGN_CA_DN, "公的個人認証サービス署名用"),
    (CaKind.AUTH, AUTH_CA_DN, "公的個人認証サービス利用者証明用"),
])
def test_root_matches_the_real_jlis_roots(services, ca, dn, alt_ou):
    gen, root = _ca(services, ca)
    assert root.subject == root.issuer
    assert _rdns(root.subject) == dn
    # C PrintableString (0x13), every other attribute UTF8String (0x0C).
    assert _string_tags(root.subject.public_bytes()) == [0x13, 0x0C, 0x0C, 0x0C]
    assert root.version is x509.Version.v3
    assert root.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    key = root.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048 and key.public_numbers().e == 65537
    # Extension order as encoded in the real roots.
    assert [e.oid for e in root.extensions] == [
        ExtensionOID.KEY_USAGE, ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER]
    ku = root.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value.public_bytes() == bytes.fromhex("03020106")
    bc = root.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and bc.value.public_bytes() == bytes.fromhex("30030101ff")
    san = root.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    (dirname,) = san.value.get_values_for_type(x509.DirectoryName)
    assert _rdns(dirname) == [(NameOID.COUNTRY_NAME, "JP"),
                              (NameOID.ORGANIZATION_NAME, "公的個人認証サービス"),
                              (NameOID.ORGANIZATIONAL_UNIT_NAME, alt_ou),
                              (NameOID.ORGANIZATIONAL_UNIT_NAME, "地方公共団体情報システム機構")]
    assert _string_tags(dirname.public_bytes()) == [0x13, 0x0C, 0x0C, 0x0C]
    (dp,) = root.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp.full_name == [x509.DirectoryName(root.subject)]  # the ARL
    for absent in (ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.CERTIFICATE_POLICIES,
                   ExtensionOID.AUTHORITY_INFORMATION_ACCESS):
        with pytest.raises(x509.ExtensionNotFound):
            root.extensions.get_extension_for_oid(absent)
    # UTCTime validity, 10 years, ending 23:59:59 JST.
    assert root.not_valid_after_utc.time().isoformat() == "14:59:59"
    years = root.not_valid_after_utc.year - root.not_valid_before_utc.year
    assert years == 10
    key.verify(root.signature, root.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    assert pkilint_certificate(gen.certificate_der) == []


def test_responder_certificates(services):
    for ca in CaKind:
        gen, root = _ca(services, ca)
        with services.uow() as uow:
            (responder,) = uow.cas.responders(gen.id)
        cert = x509.load_der_x509_certificate(responder.certificate_der)
        assert cert.issuer == root.subject
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
        cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
        assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=15)
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == gen.subject_key_id
        root.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                 padding.PKCS1v15(), hashes.SHA256())
        assert pkilint_certificate(responder.certificate_der) == []


# --- §1.2–1.3 end entities ----------------------------------------------------------------


def test_signing_certificate_fields(services, pair):
    sign, _ = pair
    _, root = _ca(services, CaKind.SIGN)
    assert sign.issuer == root.subject
    subject = _rdns(sign.subject)
    assert subject[:3] == [(NameOID.COUNTRY_NAME, "JP"), (NameOID.LOCALITY_NAME, "Tokyo-to"),
                           (NameOID.LOCALITY_NAME, "Kiyose-shi")]
    assert subject[3][0] == NameOID.COMMON_NAME and "13221" in subject[3][1]
    assert _string_tags(sign.subject.public_bytes()) == [0x13, 0x0C, 0x0C, 0x0C]
    ku = sign.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert not (ku.value.key_encipherment or ku.value.key_cert_sign or ku.value.crl_sign)
    policies = sign.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["1.2.392.200149.8.5.1.1.20"]
    assert [e.oid for e in sign.extensions] == [
        ExtensionOID.KEY_USAGE, ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.CRL_DISTRIBUTION_POINTS, ExtensionOID.FRESHEST_CRL,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS, ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER]
    # The TBS ends with the SKI (§1.2 HITACHI), SHA-1 of the subjectPublicKey.
    assert list(sign.extensions)[-1].oid == ExtensionOID.SUBJECT_KEY_IDENTIFIER
    ski = sign.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(sign.public_key())
    aki = sign.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == root.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert sign.serial_number.bit_length() >= 64


def test_signing_certificate_carries_the_basic4_other_names(pair):
    sign, _ = pair
    san = sign.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    names = list(san.value)
    assert all(isinstance(n, x509.OtherName) for n in names)
    got = [(n.type_id.dotted_string, n.value) for n in names]
    arc = "1.2.392.200149.8.5.5."
    # Order observed on real certificates: 1, 4, 3, 5, 2, 6 (§1.3).
    assert [oid for oid, _ in got] == [arc + s for s in "143526"]
    values = {oid: value for oid, value in got}
    for value in values.values():
        assert value[0] == 0x0C  # UTF8String inside the [0] EXPLICIT wrapper
    text = {oid: v[2:].decode("utf-8") for oid, v in values.items()}
    assert text[arc + "1"] == "山田\u3000太郎"
    assert text[arc + "4"] == "419900102"  # Heisei, Gregorian YYYYMMDD
    assert text[arc + "3"] == "1"
    assert text[arc + "5"] == "東京都清瀬市中里一丁目２番３号"
    assert text[arc + "2"] == "0" * len(text[arc + "1"])
    assert text[arc + "6"] == "0" * len(text[arc + "5"])


def test_substitute_characters_are_marked(services, new_resident, subject_keys):
    rid = new_resident(name="髙橋 𠮷男", address="東京都清瀬市１－２")
    (cert,) = services.issuance.issue(ISSUE, rid, [KeyRequest(CertKind.CARD_SIGN,
                                                                subject_keys[2])])
    parsed = x509.load_der_x509_certificate(cert.der)
    values = {n.type_id.dotted_string: n.value[2:].decode() for n in
              parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}
    assert values["1.2.392.200149.8.5.5.1"] == "高橋\u3000吉男"
    assert values["1.2.392.200149.8.5.5.2"] == "10010"
    assert values["1.2.392.200149.8.5.5.6"] == "0" * len(values["1.2.392.200149.8.5.5.5"])


def test_auth_certificate_carries_no_personal_data(pair):
    _, auth = pair
    assert [oid for oid, _ in _rdns(auth.subject)] == [NameOID.COMMON_NAME]
    with pytest.raises(x509.ExtensionNotFound):
        auth.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    ku = auth.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.content_commitment
    policies = auth.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["1.2.392.200149.8.5.1.3.30"]
    der = auth.public_bytes(Encoding.DER)
    for text in ("山田", "太郎", "清瀬", "419900102"):
        assert text.encode() not in der


@pytest.mark.parametrize("kind_index", [0, 1])
def test_distribution_point_access_and_issuer_alt_name(services, pair, kind_index):
    cert = pair[kind_index]
    ca = CaKind.SIGN if kind_index == 0 else CaKind.AUTH
    ou = "JPKI for digital signature" if ca is CaKind.SIGN else "JPKI for user authentication"
    (dp,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    dirname, uri = dp.full_name
    assert _rdns(dirname.value) == [
        (NameOID.COUNTRY_NAME, "JP"), (NameOID.ORGANIZATION_NAME, "JPKI"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "CRL Distribution Points"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Tokyo-to"),
        (NameOID.COMMON_NAME, "Kiyose-shi CRLDP")]
    assert uri.value == f"http://127.0.0.1:8000/crl/{ca.value}/g01/132217.crl"
    freshest = cert.extensions.get_extension_for_class(x509.FreshestCRL)
    assert not freshest.critical
    assert [n.value for n in freshest.value[0].full_name] == [
        f"http://127.0.0.1:8000/crl/{ca.value}/g01/132217-delta.crl"]
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [(a.access_method, a.access_location.value) for a in aia] == [
        (AuthorityInformationAccessOID.OCSP, "http://127.0.0.1:8000/ocsp"),
        (AuthorityInformationAccessOID.CA_ISSUERS,
         f"http://127.0.0.1:8000/ca/{ca.value}/g01.cer")]
    ian = cert.extensions.get_extension_for_class(x509.IssuerAlternativeName).value
    (ian_name,) = ian.get_values_for_type(x509.DirectoryName)
    assert _rdns(ian_name) == [(NameOID.COUNTRY_NAME, "JP"),
                               (NameOID.ORGANIZATION_NAME, "公的個人認証サービス")]


def test_independent_checkers_accept_the_pair(services, pair, tmp_path):
    for cert, ca in zip(pair, (CaKind.SIGN, CaKind.AUTH), strict=True):
        der = cert.public_bytes(Encoding.DER)
        assert pkilint_certificate(der) == []
        gen, _ = _ca(services, ca)
        result = openssl_verify(tmp_path, gen.certificate_der, der)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip().endswith(": OK")


def test_openssl_rejects_a_certificate_under_the_wrong_root(services, pair, tmp_path):
    sign, _ = pair
    gen, _ = _ca(services, CaKind.AUTH)
    result = openssl_verify(tmp_path, gen.certificate_der, sign.public_bytes(Encoding.DER))
    assert result.returncode != 0


def test_pkilint_wrapper_reports_findings():
    """The checker itself must be able to fail: an end-entity certificate without any subject
    name and with a CA-only key usage is flagged."""
    key = rsa.generate_private_key(65537, 2048)
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .public_key(key.public_key()).serial_number(1 << 70)
        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256()))
    assert pkilint_certificate(cert.public_bytes(Encoding.DER)) != []


# --- time encoding (RFC 5280 §4.1.2.5) --------------------------------------------------------


def test_utctime_before_2050_and_generalizedtime_from_2050(services):
    gen, root = _ca(services, CaKind.AUTH)
    issuer = Issuer(ca=CaKind.AUTH, generation=1, subject=root.subject,
                    subject_key_id=gen.subject_key_id, public_key=root.public_key())
    key = rsa.generate_private_key(65537, 2048).public_key()
    m = Municipality("132217", "清瀬市", "Kiyose-shi")

    def validity_tags(not_after: datetime) -> list[str]:
        spec = EndEntitySpec(kind=CertKind.CARD_AUTH, issuer=issuer, public_key=key,
                             serial=1 << 80, not_before=datetime(2049, 12, 1, tzinfo=UTC),
                             not_after=not_after, municipality=m, subject_cn="X",
                             basic4=None)
        tbs, _ = to_be_signed(build_end_entity(spec, load_recipe(),
                                               ServiceUrls("http://127.0.0.1:8000")),
                              root.public_key())
        validity = asn1_x509.TbsCertificate.load(tbs)["validity"]
        return [validity["not_before"].name, validity["not_after"].name]

    assert validity_tags(datetime(2049, 12, 31, 14, 59, 59, tzinfo=UTC)) == ["utc_time",
                                                                              "utc_time"]
    assert validity_tags(datetime(2050, 1, 1, 14, 59, 59, tzinfo=UTC)) == ["utc_time",
                                                                            "general_time"]


def test_basic4_is_redacted_in_reprs():
    b4 = Basic4(name="山田 太郎", birth_date=date(1990, 1, 2), sex=Sex.MALE,
                address="東京都清瀬市")
    assert "山田" not in repr(b4) and "清瀬" not in repr([b4])


# --- the builders alone (no HSM): what the tests above do not pin ------------------------------


def test_root_validity_ends_the_day_before_the_same_date_years_later() -> None:
    """§1.1: signca03 runs 2023-07-16 00:50:27Z – 2033-07-15 14:59:59Z."""
    from jpki.authority.profiles import root_validity

    recipe = load_recipe().ca(CaKind.SIGN)
    start = datetime(2023, 7, 16, 0, 50, 27, tzinfo=UTC)
    years = recipe.validity_years
    assert root_validity(recipe, start) == (
        start, datetime(2023 + years, 7, 15, 14, 59, 59, tzinfo=UTC))


def test_the_responder_profile_field_by_field() -> None:
    """RFC 6960 §4.2.2.2: subject C=JP, O=JPKI, OU=<the CA's>, CN=OCSP Responder Gnn; keyUsage
    digitalSignature only (critical); id-kp-OCSPSigning and ocsp-nocheck, both non-critical."""
    from jpki.authority.profiles import build_ocsp_responder

    recipe = load_recipe()
    ca_key = rsa.generate_private_key(65537, 2048)
    issuer = Issuer(ca=CaKind.AUTH, generation=3, subject=recipe.ca(CaKind.AUTH).subject,
                    subject_key_id=b"\x01" * 20, public_key=ca_key.public_key())
    now = datetime(2026, 11, 27, tzinfo=UTC)
    cert = build_ocsp_responder(issuer, recipe, ca_key.public_key(), 1 << 70, now,
                                now + timedelta(days=14)).sign(ca_key, hashes.SHA256())
    assert _rdns(cert.subject) == [
        (NameOID.COUNTRY_NAME, "JP"), (NameOID.ORGANIZATION_NAME, "JPKI"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, recipe.ca(CaKind.AUTH).crl_dp_ou),
        (NameOID.COMMON_NAME, "OCSP Responder G03")]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value == x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical and list(eku.value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert not cert.extensions.get_extension_for_class(x509.OCSPNoCheck).critical


@pytest.mark.parametrize(("kind", "tail"), [
    (CertKind.CARD_SIGN, "1322101S"), (CertKind.CARD_AUTH, "1322101A"),
    (CertKind.MOBILE_SIGN, "1322102S"), (CertKind.MOBILE_AUTH, "1322102A"),
])
def test_the_issuance_identifier_is_ten_random_characters_code_form_and_kind(kind, tail) -> None:
    """§1.2 (shape of `997794E9AGCIEG13221003A`): 10 of [0-9A-Z], the 5-digit local government
    code, 01 card / 02 phone, S signing / A auth."""
    from jpki.authority.profiles import issuance_identifier

    ids = {issuance_identifier("132217", kind) for _ in range(200)}
    for cn in ids:
        assert re.fullmatch(r"[0-9A-Z]{10}" + tail, cn), cn
    assert len(ids) == 200  # random, not fixed
    # every position of the random part takes many values: no digit left at 0
    for i in range(10):
        assert len({cn[i] for cn in ids}) > 10, i


@pytest.mark.parametrize(("start", "years", "last_day"), [
    # 29 February JST (15:30Z the day before) into a common year: 民法 §143(2)'s proviso ends
    # the period with the month, on 28 February.
    (datetime(2028, 2, 28, 15, 30, tzinfo=UTC), 10, date(2038, 2, 28)),
    (datetime(2028, 2, 29, 3, 0, tzinfo=UTC), 1, date(2029, 2, 28)),
    # … into a leap year, the day before the same date as usual.
    (datetime(2028, 2, 29, 3, 0, tzinfo=UTC), 4, date(2032, 2, 28)),
    # Neighbours of the rule: the 28th of February, and the 29th of another month.
    (datetime(2027, 2, 28, 3, 0, tzinfo=UTC), 10, date(2037, 2, 27)),
    (datetime(2027, 3, 29, 3, 0, tzinfo=UTC), 10, date(2037, 3, 28)),
    (datetime(2028, 3, 1, 3, 0, tzinfo=UTC), 10, date(2038, 2, 28)),
], ids=["29 Feb, 10 years", "29 Feb, 1 year", "29 Feb, 4 years", "28 Feb", "29 Mar", "1 Mar"])
def test_a_root_made_on_29_february_ends_with_february(start, years, last_day) -> None:
    from jpki.authority.profiles import root_validity

    recipe = replace(load_recipe().ca(CaKind.SIGN), validity_years=years)
    assert root_validity(recipe, start) == (start, datetime.combine(
        last_day, time(14, 59, 59), UTC))
