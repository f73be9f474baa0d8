"""What the mobile services read and write, as the narrow units of work they are given
(architecture §2.3: narrow ports).

:class:`MobileWork` is what the mobile service's steps reach inside a transaction — its own,
or issuance's, in which an application verifies itself and settles. It is declared in the kernel
(jpki.issuance_port), since issuance hands it its unit of work, which extends it
(jpki.issuance.ports); the steps never commit it.
:class:`MobileUnitOfWork` adds the transaction, for the service's own requests;
:class:`SweepUnitOfWork` is the layered measures' (jpki.mobile.sweep). The store's unit of work
satisfies them structurally, which mypy checks where the composition root (api.composition)
passes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from jpki.issuance_port import MobileWork
from jpki.lifecycle.revocation import LinkedCertificates, RevocationWork
from jpki.model import Certificate, MobileDevice
from jpki.ports import MobileSweepRepository, ResidentReads, Transaction

__all__ = ["MobileUnitOfWork", "MobileUnitOfWorkFactory", "MobileWork", "SweepUnitOfWork",
           "SweepUnitOfWorkFactory"]

# --- The repositories, as much of each as the mobile services call --------------------------
# DeviceRecords and MobileCertificates are the kernel's (jpki.issuance_port), with MobileWork.


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
