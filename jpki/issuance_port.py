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

Both steps run inside issuance's transactions, so the application is handed what it may reach
there as a narrow port (architecture §2.3), :class:`MobileWork`, declared here in the kernel
where both contexts can name it: issuance's own unit of work
(jpki.issuance.ports.IssuanceUnitOfWork) extends it, and jpki.mobile.ports builds the mobile
service's own on it. It never commits: the transaction is issuance's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from jpki.model import Certificate, CertKind, MobileChallenge, MobileDevice, Resident
from jpki.ports import AuditedWork, ResidentReads
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


class DeviceRecords(Protocol):
    """A holder's devices and the single-use challenges their requests answer."""

    def add_device(self, device: MobileDevice) -> None: ...
    def device(self, device_id: str, *, for_update: bool = False) -> MobileDevice | None: ...
    def active_devices(self, resident_id: str) -> Sequence[MobileDevice]: ...
    def add_challenge(self, challenge: MobileChallenge) -> None: ...
    def challenge(self, digest: str, *, for_update: bool = False) -> MobileChallenge | None: ...
    def outstanding_challenges(self, now: datetime, source: str | None = None,
                               ) -> tuple[int, datetime | None]: ...
    def delete_spent_challenges(self, now: datetime) -> int: ...


class MobileCertificates(Protocol):
    """The signer of a request, the holder's card and mobile certificates, a device's, and the
    mobile certificates linked to a card certificate (what
    jpki.lifecycle.revocation.revoke_in cascades to: this port satisfies its
    ``LinkedCertificates``)."""

    def get(self, cert_id: int) -> Certificate | None: ...
    def get_by_serial(self, serial: str, *, for_update: bool = False) -> Certificate | None: ...
    def for_resident(self, resident_id: str, kinds: Sequence[CertKind] | None = None,
                     ) -> Sequence[Certificate]: ...
    def for_device(self, device_id: str) -> Sequence[Certificate]: ...
    def public_keys_in_use(self, public_key_sha256s: Sequence[str]) -> set[str]: ...
    def linked_to(self, cert_id: int) -> Sequence[Certificate]: ...


class MobileWork(AuditedWork, Protocol):
    """What a device application's steps reach inside a transaction — issuance's, or the
    mobile service's own (module docstring). With the audit chain, it is also what
    jpki.lifecycle.revocation.revoke_in needs (``RevocationWork``), which a new device's
    superseding calls."""

    @property
    def mobile(self) -> DeviceRecords: ...
    @property
    def certificates(self) -> MobileCertificates: ...
    @property
    def residents(self) -> ResidentReads: ...


class DeviceApplication(Protocol):
    def verify(self, uow: MobileWork, now: datetime) -> DeviceOrder:
        """Check the application and make its own changes inside the transaction that will
        record the intents; raise to refuse it (everything rolls back)."""
        ...

    def settle(self, uow: MobileWork, now: datetime) -> None:
        """Inside the transaction that stores the certificates, after they are stored."""
        ...


class DeviceIssuance(Protocol):
    def issue_for_device(self, application: DeviceApplication) -> DeviceIssued: ...
