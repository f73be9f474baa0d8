"""What another context asks of issuance, and what issuance answers (architecture §3.3, §4.5).

Mobile issuance does not call the issuance pipeline's stages; it hands the one entry,
:class:`DeviceIssuance` (``IssuanceService.issue_for_device``, wired in by api.composition), a
:class:`DeviceApplication`. Issuance opens the transaction that records the intents and asks
the application to verify itself inside it (the challenge consumed, the signer checked, the
device added: all of it rolls back with a refusal); the application answers with the
:class:`DeviceOrder` — which keys, linked to which card certificates — that issuance's mobile
planner turns into certificates. After signing, issuance opens the transaction that stores
them and lets the application settle there (a new device supersedes the old one's
certificates in that same transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from jpki.model import Certificate, CertKind, Resident
from jpki.ports import UnitOfWork
from jpki.public_keys import SubjectKey


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str
    kind: CertKind
    der: bytes
    not_before: datetime
    not_after: datetime
    card_number: str
    predecessor: str | None
    renewal: bool

    def pem(self) -> bytes:
        return x509.load_der_x509_certificate(self.der).public_bytes(Encoding.PEM)


@dataclass(frozen=True)
class LinkedRequest:
    """One mobile certificate: its key, and the card certificate it follows."""

    kind: CertKind  # a mobile kind
    key: SubjectKey  # checked (jpki.public_keys), its possession proven
    linked_to: Certificate  # the holder's valid card certificate of the same use
    predecessor: Certificate | None = None  # the mobile certificate it replaces, if any
    # The valid mobile certificate of the other kind on the same device, when it is not in the
    # same order (signing↔auth linkage).
    partner: Certificate | None = None


@dataclass(frozen=True)
class DeviceOrder:
    resident: Resident  # the holder, who applies (the card's signature is the authorisation)
    device_id: str
    requests: tuple[LinkedRequest, ...]


@dataclass(frozen=True)
class DeviceIssued:
    certificates: tuple[IssuedCertificate, ...]
    chain: tuple[bytes, ...]  # each certificate's issuing CA certificate (DER), in order


class DeviceApplication(Protocol):
    def verify(self, uow: UnitOfWork, now: datetime) -> DeviceOrder:
        """Check the application and make its own changes inside the transaction that will
        record the intents; raise to refuse it (everything rolls back)."""
        ...

    def settle(self, uow: UnitOfWork, now: datetime) -> None:
        """Inside the transaction that stores the certificates, after they are stored."""
        ...


class DeviceIssuance(Protocol):
    def issue_for_device(self, application: DeviceApplication) -> DeviceIssued: ...
