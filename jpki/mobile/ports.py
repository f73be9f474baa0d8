"""What the mobile services read and write, as the narrow units of work they are given
(architecture §2.3: narrow ports).

:class:`MobileWork` is what the mobile service's steps reach inside a transaction — its own,
or issuance's, in which an application verifies itself and settles (jpki.issuance_port: issuance
hands it its unit of work, which satisfies this port; the steps never commit it).
:class:`MobileUnitOfWork` adds the transaction, for the service's own requests;
:class:`SweepUnitOfWork` is the layered measures' (jpki.mobile.sweep). The store's unit of work
satisfies them structurally, which mypy checks where the composition root (api.composition)
passes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from jpki.lifecycle.residents import ResidentReads
from jpki.lifecycle.revocation import LinkedCertificates, RevocationWork
from jpki.model import Certificate, CertKind, MobileChallenge, MobileDevice
from jpki.ports import MobileSweepRepository, Transaction

# --- The repositories, as much of each as the mobile services call --------------------------


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


class MobileCertificates(LinkedCertificates, Protocol):
    """The signer of a request, the holder's card and mobile certificates, a device's."""

    def get(self, cert_id: int) -> Certificate | None: ...
    def get_by_serial(self, serial: str, *, for_update: bool = False) -> Certificate | None: ...
    def for_resident(self, resident_id: str, kinds: Sequence[CertKind] | None = None,
                     ) -> Sequence[Certificate]: ...
    def for_device(self, device_id: str) -> Sequence[Certificate]: ...
    def public_keys_in_use(self, public_key_sha256s: Sequence[str]) -> set[str]: ...


class SilentDevices(Protocol):
    """The devices the sweep flags and holds: listed, then each re-read locked."""

    def device(self, device_id: str, *, for_update: bool = False) -> MobileDevice | None: ...

    def silent_device_ids(self, before: datetime, *, unflagged: bool = False) -> list[str]:
        """The ids of the active devices last seen before ``before`` (and not flagged yet)."""
        ...


class SweptCertificates(LinkedCertificates, Protocol):
    """The mobile certificates the sweep revokes or holds, and the card certificate each is
    linked to."""

    def get(self, cert_id: int) -> Certificate | None: ...
    def get_by_serial(self, serial: str, *, for_update: bool = False) -> Certificate | None: ...
    def for_device(self, device_id: str) -> Sequence[Certificate]: ...
    def mobile_orphans(self, at: datetime) -> list[str]: ...


# --- The units of work ------------------------------------------------------------------------


class MobileWork(RevocationWork, Protocol):
    """Inside a transaction, the mobile service's own or issuance's (module docstring)."""

    @property
    def mobile(self) -> DeviceRecords: ...
    @property
    def certificates(self) -> MobileCertificates: ...
    @property
    def residents(self) -> ResidentReads: ...


class MobileUnitOfWork(Transaction, MobileWork, Protocol):
    """jpki.mobile.service: challenges, the holder's requests, the call centre's holds."""


class SweepUnitOfWork(Transaction, RevocationWork, Protocol):
    """jpki.mobile.sweep: the layered measures, batch by batch, and their reports."""

    @property
    def mobile(self) -> SilentDevices: ...
    @property
    def certificates(self) -> SweptCertificates: ...
    @property
    def residents(self) -> ResidentReads: ...
    @property
    def mobile_sweeps(self) -> MobileSweepRepository: ...


MobileUnitOfWorkFactory = Callable[[], MobileUnitOfWork]
SweepUnitOfWorkFactory = Callable[[], SweepUnitOfWork]
