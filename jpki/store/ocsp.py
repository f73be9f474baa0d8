"""What the OCSP responder reads and writes (jpki.revocation.ocsp.ports.OcspStore), on the store.

Each call is one unit of work. Everything but storing and deleting signed responses only reads,
and reads on the read-only engine when one is given: on SQLite a read-only unit of work neither
takes the writer's lock nor queues behind it (jpki.store.engine), so the refresh poll and cache
misses never wait on issuance or on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jpki.model import CaGeneration, OcspResponder, StatusRow, StoredOcspResponse
from jpki.ports import UnitOfWorkFactory

# (generation id, hash algorithm, serial) — the responder's ResponseKey is one — and a signed
# response (DER, thisUpdate, nextUpdate) — its SignedResponse is one.
Key = tuple[int, str, int]
Signed = tuple[bytes, datetime, datetime]


class SqlOcspStore:
    def __init__(self, uow: UnitOfWorkFactory, read_uow: UnitOfWorkFactory | None = None) -> None:
        self._uow = uow
        self._read_uow = read_uow or uow

    def issuers(self) -> Sequence[tuple[CaGeneration, Sequence[OcspResponder]]]:
        with self._read_uow() as uow:
            return [(gen, list(uow.cas.responders(gen.id or 0)))
                    for gen in uow.cas.generations()]

    def status_rows(self, serials: Sequence[str]) -> Sequence[StatusRow]:
        if not serials:
            return []
        with self._read_uow() as uow:
            return uow.certificates.status_rows(serials)

    def stored(self, key: Key) -> StoredOcspResponse | None:
        generation_id, algorithm, serial = key
        serial_hex = format(serial, "x")
        with self._read_uow() as uow:
            row = uow.ocsp.get(generation_id, algorithm, serial_hex)
        if row is None:
            return None
        der, this_update, next_update = row
        return StoredOcspResponse(generation_id, algorithm, serial_hex, der, this_update,
                                  next_update)

    def store(self, responses: Sequence[tuple[Key, Signed]]) -> None:
        if not responses:
            return
        with self._uow() as uow:
            uow.ocsp.put_many([(g, a, format(s, "x"), der, this_update, next_update)
                               for (g, a, s), (der, this_update, next_update) in responses])
            uow.commit()

    def delete(self, keys: Sequence[Key]) -> None:
        if not keys:
            return
        with self._uow() as uow:
            uow.ocsp.delete([(g, a, format(s, "x")) for g, a, s in keys])
            uow.commit()

    def stored_for(self, serials: Sequence[str]) -> Sequence[StoredOcspResponse]:
        with self._read_uow() as uow:
            return uow.ocsp.entries_for(serials)

    def oldest_servable(self, now: datetime) -> datetime | None:
        with self._read_uow() as uow:
            return uow.ocsp.oldest_servable(now)

    def stored_after(self, after: StoredOcspResponse | None,
                     limit: int) -> Sequence[StoredOcspResponse]:
        cursor = None if after is None else (after.ca_generation_id, after.hash_algorithm,
                                             after.serial)
        with self._read_uow() as uow:
            return uow.ocsp.stored_after(cursor, limit)

    def missing(self, algorithm: str, fresh_from: datetime, now: datetime,
                limit: int, after: int = 0) -> Sequence[tuple[int, int, str]]:
        with self._read_uow() as uow:
            return uow.ocsp.missing(algorithm, fresh_from, now, limit, after)

    def count_missing(self, algorithm: str, fresh_from: datetime, now: datetime,
                      limit: int, sample_rows: int | None = None) -> int:
        with self._read_uow() as uow:
            return uow.ocsp.count_missing(algorithm, fresh_from, now, limit, sample_rows)
