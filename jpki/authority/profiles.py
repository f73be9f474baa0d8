"""Certificate profiles: what goes into each kind of certificate, field by field.

Each builder returns an unsigned ``x509.CertificateBuilder``; signing happens elsewhere
(:mod:`jpki.signing`) so the result can be linted first. Extensions are added in the order they are
encoded, which matters: the real roots encode keyUsage, subjectAltName, basicConstraints,
cRLDistributionPoints, subjectKeyIdentifier in that order (reference §1.1), and verifiers that
hash a partial TBS expect an end-entity TBS to *end* with the SKI extension (§1.2, HITACHI).
"""

from __future__ import annotations

import calendar
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from jpki import der
from jpki.authority.recipe import CaRecipe, Recipe, name_from_pairs
from jpki.basic4 import Basic4, personal_data_other_names
from jpki.model import CaKind, CertKind
from jpki.municipalities import CrlShard, Municipality, crl_dp_rdns
from jpki.urls import ServiceUrls


@dataclass(frozen=True)
class Issuer:
    """What an end-entity profile needs to know about the issuing CA generation."""

    ca: CaKind
    generation: int
    subject: x509.Name
    subject_key_id: bytes
    public_key: rsa.RSAPublicKey


def _root_key_usage() -> x509.KeyUsage:
    # §1.1: `03 02 01 06` = keyCertSign, cRLSign.
    return x509.KeyUsage(digital_signature=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


def build_root(recipe: CaRecipe, public_key: rsa.RSAPublicKey, serial: int,
               not_before: datetime, not_after: datetime) -> x509.CertificateBuilder:
    """A self-signed root exactly shaped like the J-LIS roots (reference §1.1).

    No authorityKeyIdentifier, certificatePolicies or authorityInfoAccess (the real roots have
    none; RFC 5280 §4.2.1.1 lets a self-signed certificate omit the AKI). The CRL distribution
    point's fullName is the CA's own DN: the ARL.
    """
    return (
        x509.CertificateBuilder()
        .subject_name(recipe.subject)
        .issuer_name(recipe.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_root_key_usage(), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DirectoryName(recipe.alt_name)]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.DirectoryName(recipe.subject)], relative_name=None, reasons=None,
            crl_issuer=None)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def build_ocsp_responder(issuer: Issuer, recipe: Recipe, public_key: rsa.RSAPublicKey,
                         serial: int, not_before: datetime,
                         not_after: datetime) -> x509.CertificateBuilder:
    """A delegated OCSP responder certificate (RFC 6960 §4.2.2.2).

    Issued directly by the CA generation whose certificates it answers for, with
    id-kp-OCSPSigning, and id-pkix-ocsp-nocheck (§4.2.2.2.1) so clients do not recurse into
    checking the responder itself; the short validity is what bounds a compromise.
    """
    ca_ou = recipe.ca(issuer.ca).crl_dp_ou
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ca_ou),
        x509.NameAttribute(NameOID.COMMON_NAME, f"OCSP Responder G{issuer.generation:02d}"),
    ])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(key_identifier=issuer.subject_key_id,
                                                   authority_cert_issuer=None,
                                                   authority_cert_serial_number=None),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def issuance_identifier(municipality_code: str, kind: CertKind) -> str:
    """An opaque subject CN, shaped like the real one (`997794E9AGCIEG13221003A`, §1.2).

    [INFERENCE] The real value's structure is not public; it visibly embeds the 5-digit local
    government code. Ours: 10 random characters, the 5-digit code, a 2-digit form-factor code and
    a kind letter. It carries no personal data.
    """
    # One draw for the ten characters, spelt in base 36: the same uniform choice as ten
    # secrets.choice calls, at a tenth of their cost (each is a read of the system CSPRNG).
    n = secrets.randbelow(len(_ID_ALPHABET) ** 10)
    chars = []
    for _ in range(10):
        n, digit = divmod(n, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[digit])
    rand = "".join(chars)
    form = "02" if kind.is_mobile else "01"
    letter = "S" if kind.is_signing else "A"
    return f"{rand}{municipality_code[:5]}{form}{letter}"


@dataclass(frozen=True)
class EndEntitySpec:
    kind: CertKind
    issuer: Issuer
    public_key: rsa.RSAPublicKey
    serial: int
    not_before: datetime
    not_after: datetime
    municipality: Municipality  # the CRL shard, and the subject locality of signing certificates
    subject_cn: str
    basic4: Basic4 | None  # required for signing kinds, forbidden for auth kinds


def _end_entity_key_usage(kind: CertKind) -> x509.KeyUsage:
    # §1.2: signing = digitalSignature + nonRepudiation; auth = digitalSignature; both critical.
    return x509.KeyUsage(digital_signature=True, content_commitment=kind.is_signing,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=False, crl_sign=False, encipher_only=False,
                         decipher_only=False)


def subject_for(spec: EndEntitySpec) -> x509.Name:
    if spec.kind.is_signing:
        # §1.2: C=JP (PrintableString), L=<prefecture>, L=<city>, CN=<issuance identifier>.
        m = spec.municipality
        return x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, m.prefecture.name_romaji),
            x509.NameAttribute(NameOID.LOCALITY_NAME, m.name_romaji),
            x509.NameAttribute(NameOID.COMMON_NAME, spec.subject_cn),
        ])
    # §1.2: the auth certificate carries only an opaque identifier ("シリアル番号のみ記載").
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.subject_cn)])


def personal_data_san(b4: Basic4) -> x509.SubjectAlternativeName:
    """§1.3: six otherNames, each `[0] EXPLICIT UTF8String`, in the order seen on real cards."""
    names: list[x509.GeneralName] = []
    for oid, value in personal_data_other_names(b4):
        # cryptography wraps the value in the [0] EXPLICIT tag; we supply the UTF8String TLV.
        names.append(x509.OtherName(x509.ObjectIdentifier(oid), der.utf8_string(value)))
    return x509.SubjectAlternativeName(names)


def shard_names(recipe: Recipe, urls: ServiceUrls, ca: CaKind, generation: int,
                shard: CrlShard | Municipality) -> list[x509.GeneralName]:
    """The names of one CRL shard (a municipality's current one, given the municipality):
    written into certificates' CRL distribution point and, the same, into that shard's Issuing
    Distribution Point (RFC 5280 §5.2.5, §6.3.3 (b)(2)). The shard's names are frozen when it
    opens (architecture §5.6), so both stay equal across a rename."""
    frozen = shard.crl_shard if isinstance(shard, Municipality) else shard
    return [
        # §1.2: the JPKI directoryName of the holder's municipality shard …
        x509.DirectoryName(name_from_pairs(crl_dp_rdns(frozen, recipe.ca(ca).crl_dp_ou))),
        # … and the same shard over HTTP on this service (architecture §5).
        x509.UniformResourceIdentifier(urls.crl(ca, generation, frozen.name)),
    ]


@dataclass(frozen=True)
class ProfileParts:
    """The extensions of an end-entity certificate that depend only on its kind, its issuing
    CA generation and the holder's municipality (reference §1.2, architecture §5), each held
    as its DER encoding (``x509.UnrecognizedExtension``, which the builder copies as it is):
    built and encoded once per such triple (:class:`ProfileCache`) rather than once per
    certificate. The encodings are cryptography's own (``public_bytes``), so the TBS is byte
    for byte the one the typed values give (tests/jpki/authority/test_profiles.py); the lint
    parses the certificate back into typed extensions and checks those."""

    key_usage: x509.UnrecognizedExtension
    policies: x509.UnrecognizedExtension
    issuer_alt_name: x509.UnrecognizedExtension
    crl_dp: x509.UnrecognizedExtension
    freshest_crl: x509.UnrecognizedExtension
    aia: x509.UnrecognizedExtension
    aki: x509.UnrecognizedExtension


def _encoded(value: x509.ExtensionType) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(value.oid, value.public_bytes())


def profile_parts(kind: CertKind, issuer: Issuer, municipality: Municipality, recipe: Recipe,
                  urls: ServiceUrls) -> ProfileParts:
    if issuer.ca is not kind.ca:
        raise ValueError("certificate kind and issuing CA disagree")
    return ProfileParts(
        key_usage=_encoded(_end_entity_key_usage(kind)),
        policies=_encoded(x509.CertificatePolicies([
            x509.PolicyInformation(recipe.policies[kind], None)])),
        issuer_alt_name=_encoded(x509.IssuerAlternativeName([
            x509.DirectoryName(recipe.issuer_alt_name)])),
        crl_dp=_encoded(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=shard_names(recipe, urls, issuer.ca, issuer.generation, municipality),
            relative_name=None, reasons=None, crl_issuer=None)])),
        # RFC 5280 §4.2.1.15: where the shard's delta CRLs are. Not in the reference profile
        # (§1.2 lists no delta CRLs); validators such as pyhanko-certvalidator find deltas only
        # through the certificate, and refuse a base CRL whose Freshest CRL they cannot follow.
        freshest_crl=_encoded(x509.FreshestCRL([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(urls.crl_delta(
                issuer.ca, issuer.generation, municipality.shard))],
            relative_name=None, reasons=None, crl_issuer=None)])),
        aia=_encoded(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(urls.ocsp())),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(
                                       urls.ca_issuers(issuer.ca, issuer.generation))),
        ])),
        aki=_encoded(x509.AuthorityKeyIdentifier(key_identifier=issuer.subject_key_id,
                                                 authority_cert_issuer=None,
                                                 authority_cert_serial_number=None)),
    )


class ProfileCache:
    """:class:`ProfileParts` of one recipe and set of service URLs, by kind, issuing generation
    and CRL shard (whose names never change: architecture §5.6). The key names the generation
    by CA, number *and* key identifier, so a rollover (a new generation, or a generation re-made
    with another key) never meets the parts of the one before; old entries are simply never
    asked for again (and the cache is emptied when it grows past ``limit``)."""

    def __init__(self, recipe: Recipe, urls: ServiceUrls, *, limit: int = 4096) -> None:
        self._recipe = recipe
        self._urls = urls
        self._limit = limit
        self._parts: dict[tuple[CertKind, CaKind, int, bytes, str], ProfileParts] = {}

    def __len__(self) -> int:
        return len(self._parts)

    def parts(self, kind: CertKind, issuer: Issuer, municipality: Municipality) -> ProfileParts:
        key = (kind, issuer.ca, issuer.generation, issuer.subject_key_id, municipality.shard)
        found = self._parts.get(key)
        if found is None:
            if len(self._parts) >= self._limit:
                self._parts.clear()
            found = self._parts[key] = profile_parts(kind, issuer, municipality, self._recipe,
                                                     self._urls)
        return found


def build_end_entity(spec: EndEntitySpec, recipe: Recipe, urls: ServiceUrls,
                     parts: ProfileParts | None = None) -> x509.CertificateBuilder:
    """A card or mobile end-entity certificate (reference §1.2–1.3, architecture §3).

    ``parts``: the extension values of this kind, issuer and municipality, from a
    :class:`ProfileCache`; built here when not given (the certificate is the same)."""
    if spec.kind.is_signing != (spec.basic4 is not None):
        raise ValueError("signing certificates carry the basic 4 information; auth ones never")
    issuer = spec.issuer
    if issuer.ca is not spec.kind.ca:
        raise ValueError("certificate kind and issuing CA disagree")
    if parts is None:
        parts = profile_parts(spec.kind, issuer, spec.municipality, recipe, urls)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_for(spec))
        .issuer_name(issuer.subject)
        .public_key(spec.public_key)
        .serial_number(spec.serial)
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(parts.key_usage, critical=True)
        .add_extension(parts.policies, critical=False)
    )
    if spec.basic4 is not None:
        builder = builder.add_extension(personal_data_san(spec.basic4), critical=False)
    return (
        builder
        .add_extension(parts.issuer_alt_name, critical=False)
        .add_extension(parts.crl_dp, critical=False)
        .add_extension(parts.freshest_crl, critical=False)
        .add_extension(parts.aia, critical=False)
        .add_extension(parts.aki, critical=False)
        # Last, on purpose: see the module docstring.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(spec.public_key),
                       critical=False)
    )


def root_validity(recipe: CaRecipe, now: datetime) -> tuple[datetime, datetime]:
    """§1.1: from now to 23:59:59 JST of the day before the same date `validity_years` later
    (signca03: 2023-07-16 00:50:27Z – 2033-07-15 14:59:59Z) — 民法 §143(2) counting from the
    first day, as the real roots do.

    A root made on 29 February whose last year is a common year has no such date: §143(2)'s
    proviso ends the period at the end of that month, 28 February (as jpki.validity reads the
    proviso for birthdays), not on the day before a substituted 28th."""
    from jpki.validity import end_of_day_jst, jst_date

    start = jst_date(now)
    year = start.year + recipe.validity_years
    if start.month == 2 and start.day == 29 and not calendar.isleap(year):
        return now, end_of_day_jst(date(year, 2, 28))
    return now, end_of_day_jst(start.replace(year=year) - timedelta(days=1))
