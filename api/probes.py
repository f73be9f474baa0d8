"""What the database says about the service's state, for the readiness probe (api.health) and
the gauges a scrape reads (api.metrics): the same for every process and node.

- The OCSP presign backlog: the responder's own count (``OcspResponder.presign_backlog``, the
  unexpired certificates without a response signed within half a validity period), kept for
  :data:`BACKLOG_TTL_SECONDS`, and estimated from a sample on a large database, where the
  count is a scan of every certificate. (The feed lag is a
  figure of each process, not of the database: api.metrics samples it.)
- CRL freshness: the newest CRL of every scope (each shard's full and delta CRL, each
  generation's ARL) is still within its nextUpdate. A CRL never published yet is not stale: the
  HTTP endpoint publishes it on its first request (api.routers.crl); one whose newest is past its
  nextUpdate is served stale, and means publication has stopped.
- Each CA generation's newest OCSP responder certificate and the time it has left.
- The jobs' ledger (jpki.jobs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jpki.model import JobRun
from jpki.revocation.crls import DELTA, FULL
from jpki.store import observe

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from api.composition import Services

BACKLOG_CAP = 1_000_000
BACKLOG_TTL_SECONDS = 30.0
# Past ten times this many certificates the gauge is estimated from a sample of about this many
# (TABLESAMPLE on PostgreSQL): the exact count reads the whole table, on every node at every
# scrape, and grows with it (docs/scale.md). Resolution: 1 / BACKLOG_SAMPLE_ROWS of the store.
BACKLOG_SAMPLE_ROWS = 20_000


@dataclass(frozen=True)
class CrlFreshness:
    fresh: int  # scopes × kinds whose newest CRL is within its nextUpdate
    overdue: list[str]  # "sign/g01/132217 delta": newest past its nextUpdate
    unpublished: int  # never published yet (published on first request)


@dataclass(frozen=True)
class ResponderTime:
    generation: str  # "sign/g01"
    not_after: datetime | None  # None: the generation has no responder certificate


class Probes:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._backlog: tuple[float, int] | None = None
        self._lock = threading.Lock()

    def _now(self) -> datetime:
        return self._services.clock.now()

    # --- OCSP ---------------------------------------------------------------------------------

    def presign_backlog(self) -> int:
        with self._lock:
            cached = self._backlog
            if cached is not None and time.monotonic() - cached[0] < BACKLOG_TTL_SECONDS:
                return cached[1]
        count = self._services.ocsp.presign_backlog(limit=BACKLOG_CAP,
                                                    sample_rows=BACKLOG_SAMPLE_ROWS)
        with self._lock:
            self._backlog = (time.monotonic(), count)
        return count

    # --- CRLs and responders --------------------------------------------------------------------

    def crl_freshness(self) -> CrlFreshness:
        now = self._now()
        with self._services.read_engine.connect() as conn:
            newest = observe.latest_crl_next_updates(conn)
        fresh, overdue, unpublished = 0, [], 0
        for scope in self._services.crls.scopes(at=now):
            for kind in (FULL,) if scope.is_arl else (FULL, DELTA):
                next_update = newest.get((scope.generation.id or 0, scope.name, kind))
                if next_update is None:
                    unpublished += 1
                elif next_update > now:
                    fresh += 1
                else:
                    overdue.append(f"{scope.label} {kind}")
        return CrlFreshness(fresh=fresh, overdue=overdue, unpublished=unpublished)

    def responders(self) -> list[ResponderTime]:
        now = self._now()
        out = []
        with self._services.uow() as uow:
            for gen in uow.cas.generations():
                if gen.not_after <= now:
                    continue  # an expired generation answers no OCSP request
                newest = max((r.not_after for r in uow.cas.responders(gen.id or 0)),
                             default=None)
                out.append(ResponderTime(f"{gen.ca.value}/g{gen.generation:02d}", newest))
        return sorted(out, key=lambda r: r.generation)

    # --- jobs -----------------------------------------------------------------------------------

    def jobs(self) -> list[JobRun]:
        return self._services.jobs.runs()


class StateCollector(Collector):
    """The probes as gauges, read at scrape time. A probe that fails (the database is down)
    reports ``jpki_state_probe_up{probe} 0`` instead of failing the scrape."""

    def __init__(self, probes: Probes, now: Callable[[], datetime]) -> None:
        self._probes = probes
        self._now = now

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("jpki_state_probe_up",
                               "Whether a database-backed probe of this scrape answered.",
                               labels=["probe"])
        for name, probe in (("ocsp", self._ocsp), ("crl", self._crl),
                            ("responders", self._responders), ("jobs", self._jobs)):
            try:
                families = list(probe())
            except Exception:  # reported as the gauge below, never with its text
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up

    def _ocsp(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("jpki_ocsp_presign_backlog",
                                "Unexpired certificates without a fresh pre-signed OCSP response "
                                f"(counted up to {BACKLOG_CAP}, every {BACKLOG_TTL_SECONDS:g} s "
                                "at most; estimated from a sample of "
                                f"{BACKLOG_SAMPLE_ROWS} past ten times that many certificates).",
                                value=self._probes.presign_backlog())

    def _crl(self) -> Iterable[Metric]:
        freshness = self._probes.crl_freshness()
        scopes = GaugeMetricFamily("jpki_crl_scopes",
                                   "CRL scopes (and kinds) by whether their newest CRL is within "
                                   "its nextUpdate (fresh), past it (overdue), or was never "
                                   "published (unpublished).", labels=["state"])
        scopes.add_metric(["fresh"], freshness.fresh)
        scopes.add_metric(["overdue"], len(freshness.overdue))
        scopes.add_metric(["unpublished"], freshness.unpublished)
        yield scopes

    def _responders(self) -> Iterable[Metric]:
        left = GaugeMetricFamily("jpki_ocsp_responder_certificate_seconds_left",
                                 "Time left on each CA generation's newest OCSP responder "
                                 "certificate (0: none).", labels=["generation"])
        now = self._now()
        for r in self._probes.responders():
            seconds = 0.0 if r.not_after is None else (r.not_after - now).total_seconds()
            left.add_metric([r.generation], max(0.0, seconds))
        yield left

    def _jobs(self) -> Iterable[Metric]:
        runs = self._probes.jobs()
        families: dict[str, GaugeMetricFamily] = {
            "last": GaugeMetricFamily("jpki_job_last_run_timestamp_seconds",
                                      "When each job's latest run started.", labels=["job"]),
            "duration": GaugeMetricFamily("jpki_job_last_duration_seconds",
                                          "How long each job's latest run took.",
                                          labels=["job"]),
            "failed": GaugeMetricFamily("jpki_job_last_run_failed",
                                        "1 if each job's latest run failed.", labels=["job"]),
            "success": GaugeMetricFamily("jpki_job_last_success_timestamp_seconds",
                                         "When each job last succeeded.", labels=["job"]),
        }
        items = GaugeMetricFamily("jpki_job_last_run_items", "What each job's latest run did.",
                                  labels=["job", "item"])
        for run in runs:
            families["last"].add_metric([run.job], run.started_at.timestamp())
            families["duration"].add_metric([run.job], run.duration_ms / 1000)
            families["failed"].add_metric([run.job], 0 if run.outcome == "ok" else 1)
            if run.last_success_at is not None:
                families["success"].add_metric([run.job], run.last_success_at.timestamp())
            for item, count in sorted(run.counts.items()):
                items.add_metric([run.job, item], count)
        yield from families.values()
        yield items
