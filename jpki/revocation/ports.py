"""What the operator's revocation reads and writes, as the narrow unit of work it is given
(architecture §2.3: narrow ports).

:class:`RevocationUnitOfWork` is jpki.revocation.service's: the certificate named, locked, its
resident's municipality (the operator's grant is checked against it), and what
jpki.lifecycle.revocation.revoke_in needs — the linked mobile certificates it cascades to and
the audit chain (:class:`~jpki.lifecycle.revocation.RevocationWork`). CRL publication has its
own port in the kernel (:class:`jpki.ports.CrlUnitOfWork`). The store's unit of work satisfies
both structurally, which mypy checks where the composition root (api.composition) passes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from jpki.lifecycle.revocation import LinkedCertificates, RevocationWork
from jpki.model import Certificate
from jpki.ports import ResidentReads, Transaction


class RevokedCertificates(LinkedCertificates, Protocol):
    """The certificate an operator revokes, read by serial and locked, and those linked to it."""

    def get_by_serial(self, serial: str, *, for_update: bool = False) -> Certificate | None: ...


class RevocationUnitOfWork(Transaction, RevocationWork, Protocol):
    """jpki.revocation.service (module docstring)."""

    @property
    def certificates(self) -> RevokedCertificates: ...
    @property
    def residents(self) -> ResidentReads: ...


RevocationUnitOfWorkFactory = Callable[[], RevocationUnitOfWork]
