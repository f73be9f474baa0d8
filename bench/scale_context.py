"""What every measurement of the national-scale bench (:mod:`bench.scale`) is given: one
PostgreSQL database loaded by :mod:`bench.population` at one size, the SoftHSM token whose CA
keys signed it, and a scratch directory.

A measurement is a function ``measure(ctx: ScaleContext) -> dict[str, float | int]`` whose keys
are figure names (``"crl_full_largest_s"``, ``"ocsp_hot_rps"``…) and whose values are numbers;
the runner stores them per size, plots each against the number of certificates (log-log) and
fits the growth order. A measurement may change the database (a mass revocation does): the
runner orders them so that those come last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from api.composition import Services
from bench.common import BenchHsm, open_services


@dataclass(frozen=True)
class PopulationSummary:
    """What :func:`bench.population.load_population` wrote."""

    certificates: int
    """Rows in ``certificates`` (every kind, revoked ones included)."""
    residents: int
    cards: int
    mobile_devices: int
    revoked: int
    """Certificates revoked and not yet expired: the entries the CRLs list."""
    shards: dict[str, int] = field(default_factory=dict)
    """Certificates per CRL shard (the municipality code)."""
    revoked_by_shard: dict[str, int] = field(default_factory=dict)
    now: datetime | None = None
    """The instant the population was generated for (real time at load: validity is real)."""
    load_seconds: float = 0.0

    @property
    def largest_shard(self) -> str:
        """The shard with the most CRL entries (the largest CRL)."""
        return max(self.revoked_by_shard, key=lambda s: self.revoked_by_shard[s])


@dataclass
class ScaleContext:
    hsm: BenchHsm
    url: str
    """SQLAlchemy URL of the loaded PostgreSQL database (``postgresql+psycopg://…``)."""
    work: Path
    """A scratch directory for this size, removed afterwards."""
    population: PopulationSummary
    _services: Services | None = None

    def services(self) -> Services:
        """The CA's services on this database (built once; the key ceremony is a no-op on a
        loaded database: it finds the CA generations there)."""
        if self._services is None:
            self._services = open_services(self.hsm, self.url)
        return self._services

    def close(self) -> None:
        if self._services is not None:
            self._services.uow.engine.dispose()
            self._services = None


class Measurement(Protocol):
    def __call__(self, ctx: ScaleContext) -> dict[str, float | int]: ...
