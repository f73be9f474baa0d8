"""The operator's revocation of one certificate (POST
/v1/operators/certificates/{serial}/revocation,
``jpki cert revoke``), under the rules of jpki.lifecycle.revocation."""

from __future__ import annotations

from typing import Literal

from jpki.access.authz import Grant, Operation
from jpki.audit import AuditLog
from jpki.errors import CertificateNotFound, ResidentNotFound
from jpki.lifecycle.revocation import RevocationResult, revoke_in
from jpki.model import RevocationReason
from jpki.ports import Clock
from jpki.revocation.ports import RevocationUnitOfWorkFactory


class RevocationService:
    def __init__(self, uow_factory: RevocationUnitOfWorkFactory, clock: Clock,
                 audit: AuditLog) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    def revoke(self, grant: Grant[Literal[Operation.CERTIFICATE_REVOKE]], serial: str,
               reason: RevocationReason) -> RevocationResult:
        actor = grant.require(Operation.CERTIFICATE_REVOKE)
        with self._uow() as uow:
            cert = uow.certificates.get_by_serial(serial, for_update=True)
            if cert is None:
                raise CertificateNotFound(f"no certificate with serial {serial}", serial=serial)
            resident = uow.residents.get(cert.resident_id)
            if resident is None:  # pragma: no cover - foreign key
                raise ResidentNotFound("the certificate's resident is missing")
            grant.require_municipality(resident.municipality_code)
            now = self._clock.now()
            result = revoke_in(uow, self._audit, actor, cert, reason, now, now, cause="request")
            uow.commit()
        return result
