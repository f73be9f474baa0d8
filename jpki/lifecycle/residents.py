"""The resident a request acts for: present, in the caller's municipality, and not ended."""

from __future__ import annotations

from typing import Protocol, TypeVar

from jpki.access.authz import Grant
from jpki.errors import ResidentInactive, ResidentNotFound
from jpki.model import Resident, ResidentFacts, ResidentStatus

R = TypeVar("R", Resident, ResidentFacts)


def check_active_resident(resident: R | None, resident_id: str, grant: Grant) -> R:
    """The rule on a resident already read (an entity, or issuance's plain value): the same
    refusals, in the same order, whichever way it was read."""
    if resident is None:
        raise ResidentNotFound("no resident with this id", resident=resident_id[:64])
    grant.require_municipality(resident.municipality_code)
    if resident.status is not ResidentStatus.ACTIVE:
        raise ResidentInactive("the resident record has ended", resident=resident_id)
    return resident


class ResidentReads(Protocol):
    """The one read of a resident these rules make (and most services): by id, maybe locked."""

    def get(self, resident_id: str, *, for_update: bool = False) -> Resident | None: ...


class ResidentWork(Protocol):
    """What :func:`load_active_resident` reads (architecture §2.3: narrow ports)."""

    @property
    def residents(self) -> ResidentReads: ...


def load_active_resident(uow: ResidentWork, resident_id: str, grant: Grant) -> Resident:
    return check_active_resident(uow.residents.get(resident_id, for_update=True), resident_id,
                                 grant)
