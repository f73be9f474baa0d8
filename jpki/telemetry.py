"""What the core tells an observer, without knowing who listens (a port, like jpki.ports).

The core imports no metrics library: the composition root binds an implementation (api.metrics,
Prometheus) to the services it built; unbound, nothing is observed. Two kinds of news:

- audit records, once their transaction has committed — every state change the CA makes is one,
  so counts derived from them (certificates issued, renewed, revoked; relying-party calls and
  refusals) can never disagree with the audit trail, and a rolled-back change counts nothing;
- how long a CRL took to generate, sign and publish, which no record says.

An observer must be quick and must not raise; the callers also guard against it, because a
failing metric must never fail a change that is already durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jpki.model import AuditRecord, CrlPublication

# The OCSP endpoint's latency buckets (upper bounds, seconds; the last bucket, above the last
# bound, is implied): answers from memory take tens of microseconds, from the database or the HSM
# milliseconds, and the buckets separate the two. The Prometheus histogram (api.metrics) and the
# traffic the dashboard keeps by minute (jpki.store.tables.ocsp_traffic, one column per bucket)
# share them: changing them needs a migration.
OCSP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                1.0)


class Telemetry(Protocol):
    def audited(self, records: Sequence[AuditRecord]) -> None:
        """Records that have just been committed to the chain, in chain order."""
        ...

    def crl_published(self, ca: str, generation: int, publication: CrlPublication,
                      seconds: float) -> None:
        """One CRL written and recorded, ``seconds`` after its generation began."""
        ...


class NoTelemetry:
    """The default: nobody listens."""

    def audited(self, records: Sequence[AuditRecord]) -> None:
        return None

    def crl_published(self, ca: str, generation: int, publication: CrlPublication,
                      seconds: float) -> None:
        return None


NO_TELEMETRY = NoTelemetry()
