"""What the OCSP responder needs of the store, and the key a response is kept under.

The responder reads the status-change feed (:class:`jpki.ports.StatusChangeFeed`) and this port,
nothing else of the store: the CA generations with their responder certificates, the status rows
of the serials it is asked about, and the responses it signed ahead of time. Each call is its own
transaction; the store (jpki.store.ocsp) reads on its read-only engine, so the refresh poll and
cache misses never queue behind issuance on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, NamedTuple, Protocol

from jpki.model import CaGeneration, StatusRow, StoredOcspResponse
from jpki.model import OcspResponder as ResponderCertificate

# RFC 6960 §4.1.1 CertID hash algorithms we answer (RFC 5019 §2.1.1 clients use SHA-1).
HashName = Literal["sha1", "sha256"]


class ResponseKey(NamedTuple):
    """The one key of a response signed ahead of time, in memory and in the database: (CA
    generation, CertID hash algorithm, serial). A tuple, so a dictionary lookup on the hot path
    costs what a plain tuple's does."""

    generation_id: int
    hash_algorithm: str
    serial: int

    @property
    def serial_hex(self) -> str:
        """The serial as the store keeps it (lower-case hex, no leading zeros)."""
        return format(self.serial, "x")

    @classmethod
    def of(cls, stored: StoredOcspResponse) -> ResponseKey:
        return cls(stored.ca_generation_id, stored.hash_algorithm, int(stored.serial, 16))


class SignedResponse(NamedTuple):
    """A signed single-certificate OCSPResponse (DER) with its thisUpdate and nextUpdate."""

    der: bytes
    this_update: datetime
    next_update: datetime


class OcspStore(Protocol):
    """What the OCSP responder reads and writes (architecture §5.3)."""

    def issuers(self) -> Sequence[tuple[CaGeneration, Sequence[ResponderCertificate]]]:
        """Every CA generation with every responder certificate it issued."""
        ...

    def status_rows(self, serials: Sequence[str]) -> Sequence[StatusRow]:
        """The status of each serial we issued (unknown ones are absent), in one read."""
        ...

    def stored(self, key: ResponseKey) -> StoredOcspResponse | None: ...

    def store(self, responses: Sequence[tuple[ResponseKey, SignedResponse]]) -> None:
        """Store (upsert) these responses in one transaction. A stored response is never
        replaced by one produced earlier: a signer that read a status just before a change
        committed must not undo the re-signing that followed the change."""
        ...

    def delete(self, keys: Sequence[ResponseKey]) -> None:
        """Delete these stored responses in one transaction."""
        ...

    def stored_for(self, serials: Sequence[str]) -> Sequence[StoredOcspResponse]:
        """Every stored response of these serials (any generation and hash algorithm)."""
        ...

    def oldest_servable(self, now: datetime) -> datetime | None:
        """The thisUpdate of the oldest stored response unexpired at ``now``: nothing produced
        earlier can be served (jpki.change_feed)."""
        ...

    def stored_after(self, after: StoredOcspResponse | None,
                     limit: int) -> Sequence[StoredOcspResponse]:
        """Up to ``limit`` stored responses in key order, from the one after ``after``."""
        ...

    def missing(self, algorithm: str, fresh_from: datetime, now: datetime,
                limit: int, after: int = 0) -> Sequence[tuple[int, int, str]]:
        """(certificate id, generation id, serial) of unexpired certificates with no response
        for ``algorithm`` produced since ``fresh_from``, in id order from the one after id
        ``after``."""
        ...

    def count_missing(self, algorithm: str, fresh_from: datetime, now: datetime,
                      limit: int, sample_rows: int | None = None) -> int:
        """How many :meth:`missing` would list, counted up to ``limit``; with ``sample_rows``,
        estimated from a sample of about that many rows when the store is much larger."""
        ...
