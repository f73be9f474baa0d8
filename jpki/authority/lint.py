"""Profile checks run on every to-be-signed certificate before the CA key is used.

Boulder lints each TBS before signing (architecture §10). pkilint is the independent checker in the
test suite, but at ~3.7 ms per certificate it is too slow for every issuance (docs/components.md);
these checks are the fast, profile-specific half: each rule has an id (``e_`` = error) and cites the
clause it enforces. A finding stops issuance with :class:`~jpki.errors.LintFailure`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, SignatureAlgorithmOID

from jpki import der
from jpki.authority.profiles import Issuer
from jpki.authority.recipe import Recipe
from jpki.basic4 import Basic4, personal_data_other_names
from jpki.errors import LintFailure
from jpki.model import CertKind


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str


# Extension order per kind (reference §1.2; the SKI last, §1.2 HITACHI).
_EE_ORDER_SIGN = [
    ExtensionOID.KEY_USAGE,
    ExtensionOID.CERTIFICATE_POLICIES,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.ISSUER_ALTERNATIVE_NAME,
    ExtensionOID.CRL_DISTRIBUTION_POINTS,
    ExtensionOID.FRESHEST_CRL,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
]
_EE_ORDER_AUTH = [oid for oid in _EE_ORDER_SIGN if oid != ExtensionOID.SUBJECT_ALTERNATIVE_NAME]
_ROOT_ORDER = [
    ExtensionOID.KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.CRL_DISTRIBUTION_POINTS,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
]


def _common(cert: x509.Certificate) -> list[Finding]:
    out: list[Finding] = []
    if cert.version is not x509.Version.v3:
        out.append(Finding("e_version_v3", "RFC 5280 §4.1.2.1: extensions require v3"))
    serial = cert.serial_number
    if serial <= 0 or (serial.bit_length() + 8) // 8 > 20:
        out.append(Finding("e_serial_range",
                           "RFC 5280 §4.1.2.2: positive, at most 20 octets"))
    elif serial.bit_length() < 64:
        out.append(Finding("e_serial_entropy", "serials carry at least 64 random bits"))
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSA_WITH_SHA256:
        out.append(Finding("e_signature_algorithm",
                           "reference §0: sha256WithRSAEncryption"))
    if cert.not_valid_before_utc >= cert.not_valid_after_utc:
        out.append(Finding("e_validity_order", "RFC 5280 §4.1.2.5: notBefore < notAfter"))
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048 \
            or key.public_numbers().e != 65537:
        out.append(Finding("e_public_key", "reference §0: RSA ≥ 2048, e = 65537"))
    try:
        cert.extensions  # noqa: B018 - parsed on first access
    except x509.DuplicateExtension:
        # `cryptography` refuses to parse an extension list with a repeat (so does every later
        # check here): the finding is the refusal itself.
        out.append(Finding("e_duplicate_extension", "RFC 5280 §4.2: each extension once"))
    return out


def _unreadable(findings: list[Finding]) -> bool:
    """No extension can be read from a certificate with a repeated one: stop at _common."""
    return any(f.rule == "e_duplicate_extension" for f in findings)


def _order(cert: x509.Certificate, expected: list[x509.ObjectIdentifier]) -> list[Finding]:
    got = [ext.oid for ext in cert.extensions]
    if got != expected:
        names = ", ".join(getattr(o, "_name", o.dotted_string) for o in got)
        return [Finding("e_extension_set", f"unexpected extension set or order: {names}")]
    return []


def _ext(cert: x509.Certificate,
         oid: x509.ObjectIdentifier) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def _ski(cert: x509.Certificate) -> list[Finding]:
    ext = _ext(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return [Finding("e_public_key", "reference §0: RSA keys only")]
    expected = x509.SubjectKeyIdentifier.from_public_key(key).digest
    if ext is None or not isinstance(ext.value, x509.SubjectKeyIdentifier) \
            or ext.value.digest != expected:
        return [Finding("e_ski_method_1",
                        "RFC 5280 §4.2.1.2 (1): SKI = SHA-1 of the subjectPublicKey")]
    return []


def _key_usage(cert: x509.Certificate, *, signing: bool) -> list[Finding]:
    ext = _ext(cert, ExtensionOID.KEY_USAGE)
    if ext is None or not ext.critical or not isinstance(ext.value, x509.KeyUsage):
        return [Finding("e_key_usage_critical", "reference §1.2: keyUsage is critical")]
    ku = ext.value
    ok = (ku.digital_signature and ku.content_commitment == signing and not ku.key_cert_sign
          and not ku.crl_sign and not ku.key_encipherment and not ku.data_encipherment
          and not ku.key_agreement)
    if not ok:
        want = "digitalSignature, nonRepudiation" if signing else "digitalSignature"
        return [Finding("e_key_usage_bits", f"reference §1.2: keyUsage = {want}")]
    return []


def _basic4_san(cert: x509.Certificate, b4: Basic4) -> list[Finding]:
    ext = _ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if ext is None or not isinstance(ext.value, x509.SubjectAlternativeName):
        return [Finding("e_basic4_san_missing", "reference §1.3: six otherNames")]
    names = list(ext.value)
    expected = personal_data_other_names(b4)
    if len(names) != len(expected) or not all(isinstance(n, x509.OtherName) for n in names):
        return [Finding("e_basic4_san_shape", "reference §1.3: exactly six otherNames")]
    for got, (oid, value) in zip(names, expected, strict=True):
        assert isinstance(got, x509.OtherName)
        if got.type_id.dotted_string != oid:
            return [Finding("e_basic4_san_order", "reference §1.3: otherName order")]
        if _utf8_string(got.value) != value:
            # Never the value itself: this message may reach an operator's log.
            return [Finding("e_basic4_san_value",
                            f"otherName {oid} is not the expected UTF8String")]
    return []


def _utf8_string(encoded: bytes) -> str | None:
    """The value of ``encoded`` when it is exactly one UTF8String TLV (X.690 §8.23), else None.
    Read with jpki.der's reader, not the encoder the profile used."""
    try:
        tag, start, end = der.read_tlv(encoded, 0)
        if tag != der.UTF8_STRING or end != len(encoded):
            return None
        return encoded[start:end].decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def lint_end_entity(cert: x509.Certificate, *, kind: CertKind, issuer: Issuer, recipe: Recipe,
                    basic4: Basic4 | None) -> list[Finding]:
    out = _common(cert)
    if _unreadable(out):
        return out
    out += _order(cert, _EE_ORDER_SIGN if kind.is_signing else _EE_ORDER_AUTH)
    if cert.issuer != issuer.subject:
        out.append(Finding("e_issuer_name", "RFC 5280 §4.1.2.4: issuer = CA subject"))
    after = cert.not_valid_after_utc
    if (after.hour, after.minute, after.second) != (14, 59, 59):
        out.append(Finding("e_not_after_jst", "reference §1.4: expires 23:59:59 JST"))
    out += _key_usage(cert, signing=kind.is_signing)
    pol = _ext(cert, ExtensionOID.CERTIFICATE_POLICIES)
    if pol is None or not isinstance(pol.value, x509.CertificatePolicies) or \
            [p.policy_identifier for p in pol.value] != [recipe.policies[kind]]:
        out.append(Finding("e_policy", "reference §1.2: exactly the kind's policy OID"))
    if kind.is_signing:
        if basic4 is None:
            out.append(Finding("e_basic4_missing", "signing certificates carry basic 4"))
        else:
            out += _basic4_san(cert, basic4)
    else:
        # §1.2: the auth certificate carries no personal data: no SAN, CN-only subject.
        if _ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME) is not None:
            out.append(Finding("e_auth_no_san", "reference §1.2: no SAN on auth certs"))
        if [a.oid for a in cert.subject] != [x509.NameOID.COMMON_NAME]:
            out.append(Finding("e_auth_subject", "reference §1.2: CN-only subject"))
    aki = _ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if aki is None or not isinstance(aki.value, x509.AuthorityKeyIdentifier) \
            or aki.value.key_identifier != issuer.subject_key_id:
        out.append(Finding("e_aki", "RFC 5280 §4.2.1.1: AKI = issuer's SKI"))
    out += _ski(cert)
    dp = _ext(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS)
    if dp is None or not isinstance(dp.value, x509.CRLDistributionPoints) or len(dp.value) != 1:
        out.append(Finding("e_crl_dp", "architecture §5: exactly one distribution point"))
    else:
        full = dp.value[0].full_name or []
        if [type(n) for n in full] != [x509.DirectoryName, x509.UniformResourceIdentifier]:
            out.append(Finding("e_crl_dp_names",
                               "architecture §5.2: directoryName and HTTP URI of the shard"))
    return out


def lint_root(cert: x509.Certificate) -> list[Finding]:
    out = _common(cert)
    if _unreadable(out):
        return out
    out += _order(cert, _ROOT_ORDER)
    if cert.issuer != cert.subject:
        out.append(Finding("e_root_self_issued", "reference §1.1: self-signed roots"))
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if bc is None or not bc.critical or not isinstance(bc.value, x509.BasicConstraints) \
            or not bc.value.ca or bc.value.path_length is not None:
        out.append(Finding("e_root_basic_constraints",
                           "reference §1.1: critical CA:TRUE without pathLen"))
    out += _ski(cert)
    return out


def lint_responder(cert: x509.Certificate, issuer: Issuer) -> list[Finding]:
    out = _common(cert)
    if _unreadable(out):
        return out
    eku = _ext(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    if eku is None or not isinstance(eku.value, x509.ExtendedKeyUsage) or \
            list(eku.value) != [ExtendedKeyUsageOID.OCSP_SIGNING]:
        out.append(Finding("e_ocsp_eku", "RFC 6960 §4.2.2.2: id-kp-OCSPSigning"))
    if _ext(cert, ExtensionOID.OCSP_NO_CHECK) is None:
        out.append(Finding("e_ocsp_nocheck", "RFC 6960 §4.2.2.2.1: id-pkix-ocsp-nocheck"))
    if cert.issuer != issuer.subject:
        out.append(Finding("e_issuer_name", "RFC 6960 §4.2.2.2: issued by the CA itself"))
    out += _ski(cert)
    return out


def require_clean(findings: list[Finding], what: str) -> None:
    if findings:
        rules = ", ".join(f.rule for f in findings)
        raise LintFailure(f"{what} failed profile checks: {rules}", rules=rules)

