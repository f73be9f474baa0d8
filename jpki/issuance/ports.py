"""What the issuance pipeline reads and writes, as the narrow unit of work it is given
(architecture §2.3: narrow ports).

:class:`IssuanceUnitOfWork` is every transaction of jpki.issuance.service — the intents'
(step 4), the stored certificates' (step 7), an abandonment's — and what the card planner
(jpki.issuance.card) plans in. Most of what the pipeline touches goes through the plain
statements of :class:`~jpki.ports.IssuanceRecords` (``uow.issuance``); besides those it reads
the resident's municipality, the CA's current generation (jpki.authority.ca.CurrentCaWork),
a few certificates as entities (the one renewed, revoked as superseded through
jpki.lifecycle.revocation.revoke_in; the pending ones abandoned), and stages audit records.

A device application verifies itself and settles inside these transactions
(jpki.issuance_port.DeviceApplication), so the port extends :class:`MobileWork` — what those
steps reach — and issuance hands the application its own unit of work. The store's unit of work
(jpki.store.uow) satisfies the port structurally, which mypy checks where the composition root
(api.composition) passes its factory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from jpki.authority.ca import CurrentGenerations
from jpki.issuance_port import MobileCertificates, MobileWork
from jpki.lifecycle.revocation import LinkedCertificates, RevocationWork
from jpki.model import Certificate
from jpki.municipalities import Municipality
from jpki.ports import IssuanceRecords, Transaction

# --- The repositories, as much of each as the pipeline calls ----------------------------------


class IssuingMunicipalities(Protocol):
    """The resident's municipality as it is now: its name and current CRL shard (§5.6)."""

    def get(self, code: str, *, for_update: bool = False,
            for_share: bool = False) -> Municipality | None: ...


class IssuanceCertificates(MobileCertificates, LinkedCertificates, Protocol):
    """The certificates a device application reaches, and the pipeline's own reads: the one a
    renewal names or supersedes (by serial, locked), an intent to abandon (by id), the intents
    left pending by a crash."""

    def pending_before(self, before: datetime) -> Sequence[Certificate]: ...


# --- The unit of work -------------------------------------------------------------------------


class IssuanceUnitOfWork(Transaction, MobileWork, RevocationWork, Protocol):
    """jpki.issuance.service and its card planner (module docstring)."""

    @property
    def issuance(self) -> IssuanceRecords: ...
    @property
    def certificates(self) -> IssuanceCertificates: ...
    @property
    def municipalities(self) -> IssuingMunicipalities: ...
    @property
    def cas(self) -> CurrentGenerations: ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: a deferred order of a batch is planned and recorded in one,
        so that its refusal undoes its writes and nothing else (jpki.issuance.service)."""
        ...


IssuanceUnitOfWorkFactory = Callable[[], IssuanceUnitOfWork]
