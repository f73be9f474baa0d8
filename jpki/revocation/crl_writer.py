"""A streaming CRL writer: millions of entries in bounded memory, signed in the HSM.

The CRL (RFC 5280 §5.1) is assembled from three parts:

1. everything except the revoked-certificates list — version, signature algorithm, issuer,
   thisUpdate, nextUpdate and the extensions — built by cryptography's CRL builder for an *empty*
   list (signed by a recording stand-in key, :mod:`jpki.signing`), so names, times and
   extensions are encoded by the library;
2. the revokedCertificates SEQUENCE, streamed: its length is known in advance (the store sums the
   stored entry lengths inside the same snapshot), so its header is written first and the
   entries are copied from the database cursor to the output while being hashed;
3. the signature: the SHA-256 digest of the TBS, signed by the CA key in the HSM as a prehashed
   PKCS#1 v1.5 signature, verified before the file is published.

Memory is bounded by the cursor batch, not by the number of entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from jpki import der
from jpki.authority.profiles import Issuer
from jpki.errors import SignatureMismatch
from jpki.signing import RecordingKey


@dataclass(frozen=True)
class CrlPlan:
    issuer: Issuer
    this_update: datetime
    next_update: datetime
    number: int
    idp: x509.IssuingDistributionPoint
    delta_base: int | None = None  # a delta CRL: the number of its base (RFC 5280 §5.2.4)
    freshest_url: str | None = None  # a full CRL: where its deltas are (RFC 5280 §5.2.6)


@dataclass(frozen=True)
class WrittenCrl:
    size: int
    sha256: str
    entries: int


def _frame(plan: CrlPlan) -> tuple[bytes, bytes, bytes]:
    """(fields before the entry list, the signature AlgorithmIdentifier, the [0] extensions)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(plan.issuer.subject)
        .last_update(plan.this_update)
        .next_update(plan.next_update)
        .add_extension(x509.AuthorityKeyIdentifier(key_identifier=plan.issuer.subject_key_id,
                                                   authority_cert_issuer=None,
                                                   authority_cert_serial_number=None),
                       critical=False)
        .add_extension(x509.CRLNumber(plan.number), critical=False)
        # RFC 5280 §5.2.5: the IDP is critical; it scopes this CRL to one shard.
        .add_extension(plan.idp, critical=True)
    )
    if plan.delta_base is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(plan.delta_base), critical=True)
    elif plan.freshest_url is not None:
        builder = builder.add_extension(x509.FreshestCRL([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(plan.freshest_url)], relative_name=None,
            reasons=None, crl_issuer=None)]), critical=False)
    recorder = RecordingKey(plan.issuer.public_key)
    builder.sign(recorder, hashes.SHA256())
    assert recorder.recorded is not None
    fields = list(der.children(recorder.recorded))
    # An empty CRL's TBSCertList: version, signature, issuer, thisUpdate, nextUpdate, [0] exts.
    if len(fields) != 6 or fields[-1][0] != 0xA0:
        raise SignatureMismatch("unexpected TBSCertList layout from the CRL builder")
    return b"".join(fields[:5]), fields[1], fields[5]


def write_crl(plan: CrlPlan, entry_count: int, entries_length: int,
              entries: Iterable[bytes], key: rsa.RSAPrivateKey, out: BinaryIO) -> WrittenCrl:
    """Write a signed CRL to ``out``; ``entries`` yields concatenated entry DER in chunks."""
    prefix, sig_alg, extensions = _frame(plan)
    # RFC 5280 §5.1.2.6: with no revoked certificates the list is absent, not empty.
    entries_header = der.header(der.SEQUENCE, entries_length) if entry_count else b""
    tbs_length = len(prefix) + len(entries_header) + entries_length + len(extensions)
    tbs_header = der.header(der.SEQUENCE, tbs_length)
    sig_size = (key.key_size + 7) // 8
    bit_string_header = der.header(der.BIT_STRING, sig_size + 1) + b"\x00"
    total = len(tbs_header) + tbs_length + len(sig_alg) + len(bit_string_header) + sig_size
    outer = der.header(der.SEQUENCE, total)

    file_hash = hashlib.sha256()
    tbs_hash = hashlib.sha256()

    def emit(chunk: bytes, in_tbs: bool) -> None:
        out.write(chunk)
        file_hash.update(chunk)
        if in_tbs:
            tbs_hash.update(chunk)

    emit(outer, False)
    emit(tbs_header + prefix + entries_header, True)
    streamed = 0
    for chunk in entries:
        streamed += len(chunk)
        if streamed > entries_length:
            raise SignatureMismatch("the CRL entries changed while the CRL was written")
        emit(chunk, True)
    if streamed != entries_length:
        raise SignatureMismatch("the CRL entries changed while the CRL was written")
    emit(extensions, True)
    digest = tbs_hash.digest()
    signature = key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    try:
        plan.issuer.public_key.verify(signature, digest, padding.PKCS1v15(),
                                      Prehashed(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureMismatch("the HSM's CRL signature does not verify") from exc
    emit(sig_alg + bit_string_header + signature, False)
    return WrittenCrl(size=len(outer) + total, sha256=file_hash.hexdigest(), entries=entry_count)
