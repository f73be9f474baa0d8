"""The status-change feed on the store (jpki.ports.StatusChangeFeed; jpki.change_feed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jpki.model import StatusChange
from jpki.ports import UnitOfWorkFactory


class SqlStatusChangeFeed:
    """Each read is one index range read of ``certificates.revocation_recorded_at``
    (SqlCertificates.status_changes_since), in a unit of work of its own — on the read-only
    engine when given one, so that on SQLite a poll never queues behind the writer."""

    def __init__(self, read_uow: UnitOfWorkFactory) -> None:
        self._read_uow = read_uow

    def changes_since(self, since: datetime | None) -> Sequence[StatusChange]:
        with self._read_uow() as uow:
            return uow.certificates.status_changes_since(since)
