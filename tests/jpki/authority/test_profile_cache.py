"""jpki.authority.profiles.ProfileCache: the extensions fixed by kind, CA generation and
municipality, built and DER-encoded once. The certificate must be byte for byte the one the
typed extension values give, and a CA rollover must never meet the parts of the generation
before it. (The profile itself, field by field, with pkilint and OpenSSL: test_profiles.py.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID, NameOID

from jpki.authority.lint import lint_end_entity
from jpki.authority.profiles import (
    EndEntitySpec,
    Issuer,
    ProfileCache,
    build_end_entity,
    personal_data_san,
    shard_names,
    subject_for,
)
from jpki.authority.recipe import Recipe, load_recipe
from jpki.basic4 import Basic4, Sex
from jpki.model import CaKind, CertKind
from jpki.municipalities import Municipality
from jpki.signing import to_be_signed
from jpki.urls import ServiceUrls

URLS = ServiceUrls("http://127.0.0.1:8000")
KIYOSE = Municipality("132217", "清瀬市", "Kiyose-shi")
NAHA = Municipality("472018", "那覇市", "Naha-shi")
B4 = Basic4(name="山田 太郎", birth_date=date(1990, 1, 2), sex=Sex.MALE,
            address="東京都清瀬市中里一丁目２番３号")


@pytest.fixture(scope="module")
def ca_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def subject_key() -> rsa.RSAPublicKey:
    return rsa.generate_private_key(65537, 2048).public_key()


def _issuer(ca: CaKind, generation: int, key: rsa.RSAPrivateKey) -> Issuer:
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ca.value)])
    return Issuer(ca=ca, generation=generation, subject=name,
                  subject_key_id=x509.SubjectKeyIdentifier.from_public_key(
                      key.public_key()).digest, public_key=key.public_key())


def _typed(spec: EndEntitySpec, recipe: Recipe, urls: ServiceUrls) -> x509.CertificateBuilder:
    """The profile written out with typed extension values, as build_end_entity built it before
    the cache: the reference the cached encodings must reproduce byte for byte."""
    issuer = spec.issuer
    builder = (
        x509.CertificateBuilder().subject_name(subject_for(spec)).issuer_name(issuer.subject)
        .public_key(spec.public_key).serial_number(spec.serial)
        .not_valid_before(spec.not_before).not_valid_after(spec.not_after)
        .add_extension(x509.KeyUsage(digital_signature=True,
                                     content_commitment=spec.kind.is_signing,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.CertificatePolicies([
            x509.PolicyInformation(recipe.policies[spec.kind], None)]), critical=False))
    if spec.basic4 is not None:
        builder = builder.add_extension(personal_data_san(spec.basic4), critical=False)
    return (
        builder
        .add_extension(x509.IssuerAlternativeName([x509.DirectoryName(recipe.issuer_alt_name)]),
                       critical=False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=shard_names(recipe, urls, issuer.ca, issuer.generation, spec.municipality),
            relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
        .add_extension(x509.FreshestCRL([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(urls.crl_delta(
                issuer.ca, issuer.generation, spec.municipality.code))],
            relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
        .add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(urls.ocsp())),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(
                                       urls.ca_issuers(issuer.ca, issuer.generation)))]),
            critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(key_identifier=issuer.subject_key_id,
                                                   authority_cert_issuer=None,
                                                   authority_cert_serial_number=None),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(spec.public_key),
                       critical=False))


def _spec(kind: CertKind, issuer: Issuer, key: rsa.RSAPublicKey,
          municipality: Municipality = KIYOSE) -> EndEntitySpec:
    return EndEntitySpec(kind=kind, issuer=issuer, public_key=key, serial=0x1234 << 80,
                         not_before=datetime(2026, 12, 2, 9, 0, tzinfo=UTC),
                         not_after=datetime(2031, 1, 1, 14, 59, 59, tzinfo=UTC),
                         municipality=municipality, subject_cn="ABCDEFGHIJ1322101S",
                         basic4=B4 if kind.is_signing else None)


@pytest.mark.parametrize("kind", [CertKind.CARD_SIGN, CertKind.CARD_AUTH,
                                  CertKind.MOBILE_SIGN, CertKind.MOBILE_AUTH])
def test_the_cached_parts_give_the_typed_profile_byte_for_byte(kind, ca_key, subject_key):
    recipe = load_recipe()
    issuer = _issuer(kind.ca, 1, ca_key)
    cache = ProfileCache(recipe, URLS)
    for municipality in (KIYOSE, NAHA, KIYOSE):
        spec = _spec(kind, issuer, subject_key, municipality)
        cached, lint_cert = to_be_signed(build_end_entity(
            spec, recipe, URLS, cache.parts(kind, issuer, municipality)), issuer.public_key)
        typed, _ = to_be_signed(_typed(spec, recipe, URLS), issuer.public_key)
        assert cached == typed
        # built without a cache, the same again
        assert to_be_signed(build_end_entity(spec, recipe, URLS),
                            issuer.public_key)[0] == typed
        # and the parsed certificate carries typed extensions that pass the profile checks
        assert lint_end_entity(lint_cert, kind=kind, issuer=issuer, recipe=recipe,
                               basic4=spec.basic4) == []
    assert len(cache) == 2


def test_a_rollover_never_meets_the_parts_of_the_generation_before(ca_key, subject_key):
    recipe = load_recipe()
    cache = ProfileCache(recipe, URLS)
    g1 = _issuer(CaKind.SIGN, 1, ca_key)
    first = cache.parts(CertKind.CARD_SIGN, g1, KIYOSE)
    assert cache.parts(CertKind.CARD_SIGN, g1, KIYOSE) is first
    # the next generation: another number and key
    g2 = _issuer(CaKind.SIGN, 2, rsa.generate_private_key(65537, 2048))
    # the same generation number re-made with another key (a ceremony run again)
    g1_again = _issuer(CaKind.SIGN, 1, rsa.generate_private_key(65537, 2048))
    for issuer in (g2, g1_again):
        parts = cache.parts(CertKind.CARD_SIGN, issuer, KIYOSE)
        assert parts is not first
        tbs, cert = to_be_signed(build_end_entity(_spec(CertKind.CARD_SIGN, issuer, subject_key),
                                                  recipe, URLS, parts), issuer.public_key)
        aki = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
        assert isinstance(aki.value, x509.AuthorityKeyIdentifier)
        assert aki.value.key_identifier == issuer.subject_key_id
        assert tbs == to_be_signed(_typed(_spec(CertKind.CARD_SIGN, issuer, subject_key),
                                          recipe, URLS), issuer.public_key)[0]
    assert cache.parts(CertKind.CARD_SIGN, g1, KIYOSE) is first


def test_the_basic4_other_names_are_encoded_as_asn1crypto_encodes_them():
    # jpki.der writes the UTF8Strings the builder used to take from asn1crypto
    from asn1crypto.core import UTF8String

    from jpki.basic4 import personal_data_other_names

    san = personal_data_san(B4)
    assert [n.value for n in san if isinstance(n, x509.OtherName)] == [
        UTF8String(value).dump() for _, value in personal_data_other_names(B4)]


def test_the_cache_is_bounded(ca_key):
    cache = ProfileCache(load_recipe(), URLS, limit=2)
    issuer = _issuer(CaKind.AUTH, 1, ca_key)
    cache.parts(CertKind.CARD_AUTH, issuer, KIYOSE)
    cache.parts(CertKind.CARD_AUTH, issuer, NAHA)
    assert len(cache) == 2
    cache.parts(CertKind.MOBILE_AUTH, issuer, KIYOSE)
    assert len(cache) == 1


def test_parts_for_a_kind_of_another_ca_are_refused(ca_key):
    with pytest.raises(ValueError) as caught:
        ProfileCache(load_recipe(), URLS).parts(CertKind.CARD_SIGN,
                                                _issuer(CaKind.AUTH, 1, ca_key), KIYOSE)
    assert str(caught.value) == "certificate kind and issuing CA disagree"


def test_the_builder_refuses_a_spec_that_breaks_its_invariants(ca_key, subject_key):
    """Programming errors, never a client's answer: the message names the broken invariant."""
    auth_ca, sign_ca = _issuer(CaKind.AUTH, 1, ca_key), _issuer(CaKind.SIGN, 1, ca_key)
    basic4 = "signing certificates carry the basic 4 information; auth ones never"
    for spec, message in [
        (replace(_spec(CertKind.CARD_AUTH, auth_ca, subject_key), basic4=B4), basic4),
        (replace(_spec(CertKind.MOBILE_SIGN, sign_ca, subject_key), basic4=None), basic4),
        (_spec(CertKind.CARD_SIGN, auth_ca, subject_key),
         "certificate kind and issuing CA disagree"),
    ]:
        with pytest.raises(ValueError) as caught:
            build_end_entity(spec, load_recipe(), URLS)
        assert str(caught.value) == message
