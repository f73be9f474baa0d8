"""The resident a request acts for: present, in the caller's municipality, and not ended."""

from __future__ import annotations

from jpki.access.authz import Grant
from jpki.errors import ResidentInactive, ResidentNotFound
from jpki.model import Resident, ResidentStatus
from jpki.ports import UnitOfWork


def load_active_resident(uow: UnitOfWork, resident_id: str, grant: Grant) -> Resident:
    resident = uow.residents.get(resident_id, for_update=True)
    if resident is None:
        raise ResidentNotFound("no resident with this id", resident=resident_id[:64])
    grant.require_municipality(resident.municipality_code)
    if resident.status is not ResidentStatus.ACTIVE:
        raise ResidentInactive("the resident record has ended", resident=resident_id)
    return resident
