"""jpki.authority.lint fed bad certificates: one per rule, violating exactly that rule
(docs/testing.md).

Each certificate is the good profile (jpki.authority.profiles, which the linter accepts and so
does pkilint) with one thing changed, built with `cryptography` (or, where `cryptography` will not
build it, by re-encoding the signed TBS with asn1crypto) and signed by a throwaway key: the linter
checks shape, not signatures. Every test asserts the exact list of rules the linter names, so a
linter that dropped an earlier finding, or added a false one, fails too. Where pkilint's generic
RFC 5280 profile has the rule, pkilint must reject the certificate as well (PKILINT_AGREES);
the other rules are this profile's own (reference §1.1–1.4), which pkilint cannot know.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from asn1crypto.core import PrintableString, UTF8String
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from jpki.authority.lint import (
    Finding,
    lint_end_entity,
    lint_responder,
    lint_root,
    require_clean,
)
from jpki.authority.profiles import (
    EndEntitySpec,
    Issuer,
    build_end_entity,
    build_ocsp_responder,
    build_root,
    issuance_identifier,
)
from jpki.authority.recipe import Recipe, load_recipe
from jpki.basic4 import Basic4, Sex
from jpki.errors import LintFailure
from jpki.model import CaKind, CertKind
from jpki.municipalities import load_seed
from jpki.urls import ServiceUrls
from tests.checkers import pkilint_certificate

# A serial of zero or below is what two of the tests are about; cryptography still parses it.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")

NOW = datetime(2026, 11, 27, 1, 0, 0, tzinfo=UTC)
NOT_AFTER = datetime(2031, 2, 17, 14, 59, 59, tzinfo=UTC)  # 23:59:59 JST
SERIAL = (1 << 120) | 0x1234_5678_9ABC_DEF0  # 121 bits: random-looking, well under 20 octets
URLS = ServiceUrls("http://ca.example.test")
B4 = Basic4(name="山田 太郎", birth_date=date(1990, 1, 2), sex=Sex.MALE,
            address="東京都清瀬市中里一丁目")

Builder = x509.CertificateBuilder


@cache
def key(size: int = 2048, exponent: int = 65537) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(exponent, size)


@cache
def recipe() -> Recipe:
    return load_recipe()


def ca_key() -> rsa.RSAPrivateKey:
    return key(2049)  # a throwaway CA key, distinct from the subject's


def issuer(ca: CaKind) -> Issuer:
    public = ca_key().public_key()
    return Issuer(ca=ca, generation=1, subject=recipe().ca(ca).subject,
                  subject_key_id=x509.SubjectKeyIdentifier.from_public_key(public).digest,
                  public_key=public)


def end_entity(kind: CertKind) -> Builder:
    municipality = next(m for m in load_seed() if m.code.startswith("13"))
    spec = EndEntitySpec(kind=kind, issuer=issuer(kind.ca), public_key=key().public_key(),
                         serial=SERIAL, not_before=NOW, not_after=NOT_AFTER,
                         municipality=municipality,
                         subject_cn=issuance_identifier(municipality.code, kind),
                         basic4=B4 if kind.is_signing else None)
    return build_end_entity(spec, recipe(), URLS)


def root() -> Builder:
    return build_root(recipe().ca(CaKind.SIGN), ca_key().public_key(), SERIAL, NOW,
                      NOW + timedelta(days=365 * 20))


def responder() -> Builder:
    return build_ocsp_responder(issuer(CaKind.SIGN), recipe(), key().public_key(), SERIAL, NOW,
                                NOW + timedelta(days=14))


def sign(builder: Builder, algorithm: hashes.HashAlgorithm | None = None) -> x509.Certificate:
    return builder.sign(ca_key(), algorithm or hashes.SHA256())


# --- changing one thing in a builder -------------------------------------------------------------


def rebuilt(builder: Builder, *, subject: x509.Name | None = None,
            issuer_name: x509.Name | None = None, serial: int | None = None,
            not_before: datetime | None = None, not_after: datetime | None = None,
            public_key: Any = None,
            extensions: Callable[[list[x509.Extension[Any]]], list[x509.Extension[Any]]]
            | None = None) -> Builder:
    """The builder's certificate with the given parts replaced. A new public key gets a
    matching SKI (so only the key rule is broken) unless ``extensions`` says otherwise."""
    cert = sign(builder)
    exts = list(cert.extensions)
    if public_key is not None:
        exts = [x509.Extension(e.oid, e.critical,
                               x509.SubjectKeyIdentifier.from_public_key(public_key))
                if e.oid == ExtensionOID.SUBJECT_KEY_IDENTIFIER else e for e in exts]
    if extensions is not None:
        exts = extensions(exts)
    out = (x509.CertificateBuilder()
           .subject_name(subject or cert.subject)
           .issuer_name(issuer_name or cert.issuer)
           .serial_number(cert.serial_number if serial is None else serial)
           .not_valid_before(not_before or cert.not_valid_before_utc)
           .not_valid_after(not_after or cert.not_valid_after_utc)
           .public_key(public_key or cert.public_key()))
    for e in exts:
        out = out.add_extension(e.value, e.critical)
    return out


def replaced(oid: x509.ObjectIdentifier, value: Any = None, critical: bool | None = None
             ) -> Callable[[list[x509.Extension[Any]]], list[x509.Extension[Any]]]:
    def change(exts: list[x509.Extension[Any]]) -> list[x509.Extension[Any]]:
        return [x509.Extension(oid, e.critical if critical is None else critical,
                               e.value if value is None else value)
                if e.oid == oid else e for e in exts]
    return change


def dropped(oid: x509.ObjectIdentifier
            ) -> Callable[[list[x509.Extension[Any]]], list[x509.Extension[Any]]]:
    return lambda exts: [e for e in exts if e.oid != oid]


def reencoded(builder: Builder, change: Callable[[asn1_x509.TbsCertificate], None]
              ) -> x509.Certificate:
    """Where `cryptography` refuses to build the bad shape: change the TBS with asn1crypto and
    sign it again with the throwaway CA key."""
    good = asn1_x509.Certificate.load(sign(builder).public_bytes(Encoding.DER))
    tbs = good["tbs_certificate"].copy()
    change(tbs)
    tbs_der = tbs.dump(force=True)
    signature = ca_key().sign(tbs_der, padding.PKCS1v15(), hashes.SHA256())
    cert = asn1_x509.Certificate({"tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
                                  "signature_algorithm": good["signature_algorithm"],
                                  "signature_value": signature})
    return x509.load_der_x509_certificate(cert.dump())


def other_names(values: list[tuple[str, bytes]]) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName(
        [x509.OtherName(x509.ObjectIdentifier(oid), value) for oid, value in values])


def good_other_names() -> list[tuple[str, bytes]]:
    san = sign(end_entity(CertKind.CARD_SIGN)).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    return [(n.type_id.dotted_string, n.value) for n in san]  # type: ignore[union-attr]


def ascii_as(encode: Callable[[str], bytes]) -> list[tuple[str, bytes]]:
    """The good otherNames with the first ASCII-only value (the sex code) encoded otherwise."""
    out, done = [], False
    for oid, value in good_other_names():
        text = UTF8String.load(value).native
        if not done and text.isascii():
            value, done = encode(text), True
        out.append((oid, value))
    assert done
    return out


# --- the linters, by certificate kind ------------------------------------------------------------


def lint_sign(cert: x509.Certificate, basic4: Basic4 | None = B4) -> list[Finding]:
    return lint_end_entity(cert, kind=CertKind.CARD_SIGN, issuer=issuer(CaKind.SIGN),
                           recipe=recipe(), basic4=basic4)


def lint_auth(cert: x509.Certificate) -> list[Finding]:
    return lint_end_entity(cert, kind=CertKind.CARD_AUTH, issuer=issuer(CaKind.AUTH),
                           recipe=recipe(), basic4=None)


def lint_resp(cert: x509.Certificate) -> list[Finding]:
    return lint_responder(cert, issuer(CaKind.SIGN))


SIGN, AUTH = CertKind.CARD_SIGN, CertKind.CARD_AUTH


def bad_certificates() -> dict[str, tuple[Callable[[], x509.Certificate],
                                          Callable[[x509.Certificate], list[Finding]],
                                          list[str]]]:
    """rule → (the certificate, the linter, every rule that must be named). A few shapes cannot
    break one rule alone (a missing SAN also changes the extension set): those name both."""
    sign_ = lambda: end_entity(SIGN)  # noqa: E731
    auth_ = lambda: end_entity(AUTH)  # noqa: E731
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    ku_enc = x509.KeyUsage(digital_signature=True, content_commitment=True,
                           key_encipherment=True, data_encipherment=False, key_agreement=False,
                           key_cert_sign=False, crl_sign=False, encipher_only=False,
                           decipher_only=False)
    ku_auth_nr = replace_ku(content_commitment=True)
    names = good_other_names
    uri_only = x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier("http://ca.example.test/crl/x.crl")],
        relative_name=None, reasons=None, crl_issuer=None)])
    two_dps = x509.CRLDistributionPoints([
        *sign(end_entity(SIGN)).extensions.get_extension_for_class(
            x509.CRLDistributionPoints).value, *uri_only])
    other_key = key(2048, 3).public_key()

    def version_1(tbs: asn1_x509.TbsCertificate) -> None:
        tbs["version"] = "v1"

    def duplicate_second(tbs: asn1_x509.TbsCertificate) -> None:
        exts = list(tbs["extensions"])
        tbs["extensions"] = asn1_x509.Extensions([*exts[:2], exts[1], *exts[2:]])

    def serial(value: int) -> Callable[[asn1_x509.TbsCertificate], None]:
        def change(tbs: asn1_x509.TbsCertificate) -> None:
            tbs["serial_number"] = value
        return change

    return {
        # _common: every certificate
        "e_version_v3": (lambda: reencoded(sign_(), version_1), lint_sign, ["e_version_v3"]),
        # `cryptography` builds no serial that breaks RFC 5280 §4.1.2.2: re-encoded.
        "e_serial_range zero": (lambda: reencoded(sign_(), serial(0)), lint_sign,
                                ["e_serial_range"]),
        "e_serial_range negative": (lambda: reencoded(sign_(), serial(-SERIAL)), lint_sign,
                                    ["e_serial_range"]),
        "e_serial_range 21 octets": (lambda: reencoded(sign_(), serial(1 << 159)),
                                     lint_sign, ["e_serial_range"]),
        "e_serial_entropy": (lambda: sign(rebuilt(sign_(), serial=(1 << 63) - 1)), lint_sign,
                             ["e_serial_entropy"]),
        "e_signature_algorithm": (lambda: sign(sign_(), hashes.SHA384()), lint_sign,
                                  ["e_signature_algorithm"]),
        "e_validity_order": (lambda: sign(rebuilt(sign_(), not_before=NOT_AFTER)), lint_sign,
                             ["e_validity_order"]),
        "e_public_key 1024": (lambda: sign(rebuilt(sign_(), public_key=key(1024).public_key())),
                              lint_sign, ["e_public_key"]),
        "e_public_key e=3": (lambda: sign(rebuilt(sign_(), public_key=other_key)), lint_sign,
                             ["e_public_key"]),
        "e_public_key ec": (lambda: sign(rebuilt(sign_(), public_key=ec.generate_private_key(
            ec.SECP256R1()).public_key())), lint_sign, ["e_public_key", "e_public_key"]),
        "e_duplicate_extension": (lambda: reencoded(sign_(), duplicate_second), lint_sign,
                                  ["e_duplicate_extension"]),
        # _order
        "e_extension_set": (lambda: sign(rebuilt(sign_(), extensions=lambda e: [*e[:-2], e[-1],
                                                                                e[-2]])),
                            lint_sign, ["e_extension_set"]),
        # end entities
        "e_issuer_name": (lambda: sign(rebuilt(sign_(), issuer_name=x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "another CA")]))), lint_sign,
            ["e_issuer_name"]),
        "e_not_after_jst": (lambda: sign(rebuilt(sign_(), not_after=NOT_AFTER + timedelta(
            seconds=1))), lint_sign, ["e_not_after_jst"]),
        "e_key_usage_critical": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.KEY_USAGE, critical=False))), lint_sign, ["e_key_usage_critical"]),
        "e_key_usage_bits sign": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.KEY_USAGE, ku_enc))), lint_sign, ["e_key_usage_bits"]),
        "e_key_usage_bits auth": (lambda: sign(rebuilt(auth_(), extensions=replaced(
            ExtensionOID.KEY_USAGE, ku_auth_nr))), lint_auth, ["e_key_usage_bits"]),
        "e_policy": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.CERTIFICATE_POLICIES, x509.CertificatePolicies([
                x509.PolicyInformation(recipe().policies[AUTH], None)])))), lint_sign,
            ["e_policy"]),
        # An extension missing altogether also changes the set: both named, and no crash.
        "e_policy missing": (lambda: sign(rebuilt(sign_(), extensions=dropped(
            ExtensionOID.CERTIFICATE_POLICIES))), lint_sign, ["e_extension_set", "e_policy"]),
        "e_aki missing": (lambda: sign(rebuilt(sign_(), extensions=dropped(
            ExtensionOID.AUTHORITY_KEY_IDENTIFIER))), lint_sign, ["e_extension_set", "e_aki"]),
        "e_crl_dp missing": (lambda: sign(rebuilt(sign_(), extensions=dropped(
            ExtensionOID.CRL_DISTRIBUTION_POINTS))), lint_sign, ["e_extension_set", "e_crl_dp"]),
        "e_key_usage_critical missing": (lambda: sign(rebuilt(sign_(), extensions=dropped(
            ExtensionOID.KEY_USAGE))), lint_sign, ["e_extension_set", "e_key_usage_critical"]),
        "e_basic4_missing": (lambda: sign(sign_()), lambda c: lint_sign(c, None),
                             ["e_basic4_missing"]),
        "e_basic4_san_missing": (lambda: sign(rebuilt(sign_(), extensions=dropped(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME))), lint_sign,
            ["e_extension_set", "e_basic4_san_missing"]),
        "e_basic4_san_shape": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME, other_names(names()[:5])))), lint_sign,
            ["e_basic4_san_shape"]),
        "e_basic4_san_order": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME, other_names(
                [names()[1], names()[0], *names()[2:]])))), lint_sign, ["e_basic4_san_order"]),
        "e_basic4_san_value": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME, other_names(
                [(names()[0][0], UTF8String("山田 次郎").dump()), *names()[1:]])))),
            lint_sign, ["e_basic4_san_value"]),
        "e_basic4_san_value not utf8": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME, other_names(
                [(names()[0][0], PrintableString("x").dump()), *names()[1:]])))),
            lint_sign, ["e_basic4_san_value"]),
        # Right text, wrong encoding: a PrintableString.
        "e_basic4_san_value printable": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME, other_names(ascii_as(
                lambda text: PrintableString(text).dump()))))), lint_sign,
            ["e_basic4_san_value"]),
        "e_auth_no_san": (lambda: sign(rebuilt(auth_(), extensions=lambda e: [
            *e[:2], x509.Extension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, False,
                                   other_names(names())), *e[2:]])), lint_auth,
            ["e_extension_set", "e_auth_no_san"]),
        "e_auth_subject": (lambda: sign(rebuilt(auth_(), subject=x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.COMMON_NAME, "997794E9AGCIEG13221003A")]))), lint_auth,
            ["e_auth_subject"]),
        "e_aki": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.AUTHORITY_KEY_IDENTIFIER, x509.AuthorityKeyIdentifier(
                b"\x01" * 20, None, None)))), lint_sign, ["e_aki"]),
        "e_ski_method_1": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.SUBJECT_KEY_IDENTIFIER, x509.SubjectKeyIdentifier.from_public_key(
                other_key)))), lint_sign, ["e_ski_method_1"]),
        "e_crl_dp": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.CRL_DISTRIBUTION_POINTS, two_dps))), lint_sign, ["e_crl_dp"]),
        "e_crl_dp_names": (lambda: sign(rebuilt(sign_(), extensions=replaced(
            ExtensionOID.CRL_DISTRIBUTION_POINTS, uri_only))), lint_sign, ["e_crl_dp_names"]),
        # roots
        "e_root_self_issued": (lambda: sign(rebuilt(root(), issuer_name=recipe().ca(
            CaKind.AUTH).subject)), lint_root, ["e_root_self_issued"]),
        "e_root_basic_constraints pathlen": (lambda: sign(rebuilt(root(), extensions=replaced(
            ExtensionOID.BASIC_CONSTRAINTS, x509.BasicConstraints(ca=True, path_length=0)))),
            lint_root, ["e_root_basic_constraints"]),
        "e_root_basic_constraints critical": (lambda: sign(rebuilt(root(), extensions=replaced(
            ExtensionOID.BASIC_CONSTRAINTS, critical=False))), lint_root,
            ["e_root_basic_constraints"]),
        "e_root_basic_constraints ca": (lambda: sign(rebuilt(root(), extensions=replaced(
            ExtensionOID.BASIC_CONSTRAINTS, x509.BasicConstraints(ca=False, path_length=None)))),
            lint_root, ["e_root_basic_constraints"]),
        "e_ski_method_1 root": (lambda: sign(rebuilt(root(), extensions=replaced(
            ExtensionOID.SUBJECT_KEY_IDENTIFIER, x509.SubjectKeyIdentifier.from_public_key(
                other_key)))), lint_root, ["e_ski_method_1"]),
        "e_extension_set root": (lambda: sign(rebuilt(root(), extensions=dropped(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME))), lint_root, ["e_extension_set"]),
        "e_duplicate_extension root": (lambda: reencoded(root(), duplicate_second), lint_root,
                                       ["e_duplicate_extension"]),
        "e_serial_entropy root": (lambda: sign(rebuilt(root(), serial=1)), lint_root,
                                  ["e_serial_entropy"]),
        # OCSP responders
        "e_ocsp_eku": (lambda: sign(rebuilt(responder(), extensions=replaced(
            ExtensionOID.EXTENDED_KEY_USAGE, eku))), lint_resp, ["e_ocsp_eku"]),
        "e_ocsp_eku two": (lambda: sign(rebuilt(responder(), extensions=replaced(
            ExtensionOID.EXTENDED_KEY_USAGE, x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.OCSP_SIGNING, ExtendedKeyUsageOID.SERVER_AUTH])))),
            lint_resp, ["e_ocsp_eku"]),
        "e_ocsp_eku missing": (lambda: sign(rebuilt(responder(), extensions=dropped(
            ExtensionOID.EXTENDED_KEY_USAGE))), lint_resp, ["e_ocsp_eku"]),
        "e_ocsp_nocheck": (lambda: sign(rebuilt(responder(), extensions=dropped(
            ExtensionOID.OCSP_NO_CHECK))), lint_resp, ["e_ocsp_nocheck"]),
        "e_issuer_name responder": (lambda: sign(rebuilt(responder(), issuer_name=recipe().ca(
            CaKind.AUTH).subject)), lint_resp, ["e_issuer_name"]),
        "e_ski_method_1 responder": (lambda: sign(rebuilt(responder(), extensions=dropped(
            ExtensionOID.SUBJECT_KEY_IDENTIFIER))), lint_resp, ["e_ski_method_1"]),
        "e_duplicate_extension responder": (lambda: reencoded(responder(), duplicate_second),
                                            lint_resp, ["e_duplicate_extension"]),
        "e_public_key responder": (lambda: sign(rebuilt(responder(),
                                                        public_key=key(1024).public_key())),
                                   lint_resp, ["e_public_key"]),
    }


def replace_ku(**bits: bool) -> x509.KeyUsage:
    base: dict[str, bool] = dict(digital_signature=True, content_commitment=False,
                                 key_encipherment=False, data_encipherment=False,
                                 key_agreement=False, key_cert_sign=False, crl_sign=False,
                                 encipher_only=False, decipher_only=False)
    return x509.KeyUsage(**{**base, **bits})


BAD = bad_certificates()

# The bad certificates pkilint's generic RFC 5280 profile rejects too. The rest break rules of
# this profile (reference §1.1–1.4: key size, extension order, JST expiry, SAN contents, the
# policy OID, the responder's EKU …) or SHOULDs pkilint does not check.
PKILINT_AGREES = {
    "e_version_v3", "e_serial_range zero", "e_serial_range negative",
    "e_serial_range 21 octets", "e_duplicate_extension",
}


def test_the_good_certificates_are_clean() -> None:
    for cert, linter in [(sign(end_entity(SIGN)), lint_sign), (sign(end_entity(AUTH)), lint_auth),
                         (sign(root()), lint_root), (sign(responder()), lint_resp)]:
        assert linter(cert) == []
        assert pkilint_certificate(cert.public_bytes(Encoding.DER)) == []


@pytest.mark.parametrize("name", BAD)
def test_each_rule_names_the_certificate_that_breaks_it(name: str) -> None:
    make, linter, rules = BAD[name]
    cert = make()
    findings = linter(cert)
    assert [f.rule for f in findings] == rules
    assert all(f.message for f in findings)
    with pytest.raises(LintFailure) as caught:
        require_clean(findings, "test certificate")
    assert caught.value.context == {"rules": ", ".join(rules)}
    assert caught.value.detail == f"test certificate failed profile checks: {', '.join(rules)}"


@pytest.mark.parametrize("name", sorted(PKILINT_AGREES))
def test_pkilint_rejects_it_too(name: str) -> None:
    make, _, _ = BAD[name]
    assert pkilint_certificate(make().public_bytes(Encoding.DER)) != []


def test_findings_accumulate() -> None:
    """Every rule broken is named, in the linter's order: none replaces an earlier one."""
    cert = sign(rebuilt(rebuilt(end_entity(SIGN), serial=1,
                                not_after=NOT_AFTER + timedelta(seconds=1),
                                issuer_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                          "x")])),
                        extensions=replaced(ExtensionOID.SUBJECT_KEY_IDENTIFIER,
                                            x509.SubjectKeyIdentifier(b"\x02" * 20))))
    assert [f.rule for f in lint_sign(cert)] == [
        "e_serial_entropy", "e_issuer_name", "e_not_after_jst", "e_ski_method_1"]


def test_the_20_octet_serial_limit_at_its_edge() -> None:
    """RFC 5280 §4.1.2.2: at most 20 octets, the DER sign octet included: 159 bits fit, 160 do
    not (their top bit set needs a leading zero octet)."""
    at_limit = sign(rebuilt(end_entity(SIGN), serial=(1 << 159) - 1))
    over = reencoded(end_entity(SIGN), lambda tbs: tbs.__setitem__("serial_number", 1 << 159))
    assert lint_sign(at_limit) == []
    assert [f.rule for f in lint_sign(over)] == ["e_serial_range"]
    assert pkilint_certificate(at_limit.public_bytes(Encoding.DER)) == []


def test_64_bits_of_serial_are_enough() -> None:
    assert lint_sign(sign(rebuilt(end_entity(SIGN), serial=1 << 63))) == []


def test_a_2048_bit_key_with_e_65537_is_the_floor() -> None:
    assert lint_sign(sign(rebuilt(end_entity(SIGN), public_key=key(2048).public_key()))) == []
    assert lint_sign(sign(rebuilt(end_entity(SIGN), public_key=key(2047).public_key()))) != []


def test_only_key_usage_is_critical_in_an_end_entity() -> None:
    """reference §1.2: keyUsage critical, every other extension not (the profile's, which the
    linter does not check beyond keyUsage)."""
    for kind in (SIGN, AUTH):
        cert = sign(end_entity(kind))
        assert [e.oid for e in cert.extensions if e.critical] == [ExtensionOID.KEY_USAGE]
