"""The CAs we answer for: every CA generation, found by a CertID's issuer hashes, with the
delegated responder certificate that signs its responses (RFC 6960 §4.2.2.2).

A CertID names its issuer by the hashes of the issuer's name and public key (RFC 6960 §4.1.1),
SHA-1 or SHA-256; they are computed once per generation and looked up in one dictionary. A CertID
that matches no generation is ``unauthorized`` (RFC 6960 §2.3: not a CA we answer for) — after
one look in the store at most every :data:`RELOAD_SECONDS`, in case a rollover made a generation
since, so that requests for foreign issuers cannot hammer the database.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.model import CaGeneration
from jpki.model import OcspResponder as ResponderCertificate
from jpki.revocation.ocsp.ports import HashName
from jpki.revocation.ocsp.requests import HASHES, CertQuestion

RELOAD_SECONDS = 5.0
# Every process re-reads the generations and their responder certificates at least this often
# (OcspResponder.refresh): a responder renewed by the process that runs the maintenance job —
# another worker, another node — reaches every process within a minute, long before the old
# certificate expires (it is renewed days ahead, CaRecipe.responder.renew_before_days).
RESPONDERS_RELOAD_SECONDS = 60.0


class IssuerSource(Protocol):
    def issuers(self) -> Sequence[tuple[CaGeneration, Sequence[ResponderCertificate]]]: ...


@dataclass(frozen=True)
class Responder:
    """The responder certificate that signs a generation's responses: its newest one."""

    key_label: str
    certificate_der: bytes = field(repr=False)
    public_key: rsa.RSAPublicKey = field(repr=False)
    key_hash: bytes  # SHA-1 of its subjectPublicKey: the ResponderID byKey (RFC 6960 §4.2.2.3)


@dataclass(frozen=True)
class IssuerEntry:
    generation_id: int
    name_hashes: Mapping[str, bytes] = field(repr=False)
    key_hashes: Mapping[str, bytes] = field(repr=False)
    # The newest responder certificate, or None while the generation has none (then nothing
    # is answered for it: unauthorized); and every one it ever had, for checking what is stored.
    responder: Responder | None
    responder_certificates: frozenset[bytes] = field(repr=False)

    def question(self, algorithm: HashName, serial: int) -> CertQuestion:
        """The CertID of ``serial`` under this issuer."""
        return CertQuestion(algorithm, self.name_hashes[algorithm], self.key_hashes[algorithm],
                            serial)

    def names(self, question: CertQuestion) -> bool:
        """Whether ``question``'s CertID names this issuer."""
        return self.name_hashes.get(question.hash_algorithm) == question.issuer_name_hash \
            and self.key_hashes.get(question.hash_algorithm) == question.issuer_key_hash


def _public_key_bits(certificate_der: bytes) -> bytes:
    """The subjectPublicKey BIT STRING's contents, without the unused-bits octet."""
    spki = asn1_x509.Certificate.load(certificate_der).public_key
    return bytes(spki["public_key"].contents[1:])


def _responder(certificate: ResponderCertificate) -> Responder:
    key = x509.load_der_x509_certificate(certificate.certificate_der).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("an OCSP responder certificate without an RSA key")
    bits = _public_key_bits(certificate.certificate_der)
    return Responder(certificate.key_label, certificate.certificate_der, key,
                     hashlib.sha1(bits).digest())  # noqa: S324


def issuer_entry(generation: CaGeneration,
                 responders: Sequence[ResponderCertificate]) -> IssuerEntry:
    name = asn1_x509.Certificate.load(generation.certificate_der).subject.dump()
    key = _public_key_bits(generation.certificate_der)
    newest = max(responders, key=lambda r: r.not_after) if responders else None
    return IssuerEntry(generation.id or 0,
                       {a: h(name).digest() for a, h in HASHES.items()},
                       {a: h(key).digest() for a, h in HASHES.items()},
                       _responder(newest) if newest is not None else None,
                       frozenset(r.certificate_der for r in responders))


class IssuerRegistry:
    """Every CA generation, by CertID issuer hashes and by id; re-read by :meth:`reload` (after
    a rollover or a responder renewal) and, for a CertID it does not know, at most every
    :data:`RELOAD_SECONDS`."""

    def __init__(self, source: IssuerSource,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._monotonic = monotonic
        self._by_hashes: dict[tuple[str, bytes, bytes], IssuerEntry] = {}
        self._by_id: dict[int, IssuerEntry] = {}
        self._reloaded: float | None = None
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        entries = [issuer_entry(gen, responders) for gen, responders in self._source.issuers()]
        by_hashes: dict[tuple[str, bytes, bytes], IssuerEntry] = {
            (a, e.name_hashes[a], e.key_hashes[a]): e for e in entries for a in HASHES}
        with self._lock:
            self._by_hashes = by_hashes
            self._by_id = {e.generation_id: e for e in entries}
            self._reloaded = self._monotonic()

    def reload_if_older(self, seconds: float) -> bool:
        """Reload when the last reload is more than ``seconds`` old; whether it did."""
        reloaded = self._reloaded
        if reloaded is not None and self._monotonic() - reloaded <= seconds:
            return False
        self.reload()
        return True

    def for_question(self, question: CertQuestion) -> IssuerEntry | None:
        """The generation ``question``'s CertID names, or None (``unauthorized``)."""
        key = (question.hash_algorithm, question.issuer_name_hash, question.issuer_key_hash)
        found = self._by_hashes.get(key)
        if found is not None:
            return found
        reloaded = self._reloaded
        if not self._by_id or reloaded is None \
                or self._monotonic() - reloaded > RELOAD_SECONDS:
            self.reload()
            return self._by_hashes.get(key)
        return None

    def of_generation(self, generation_id: int) -> IssuerEntry | None:
        return self._by_id.get(generation_id)
