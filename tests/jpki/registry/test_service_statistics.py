"""The dashboard's service figures (jpki.registry.statistics, jpki.store.ocsp_traffic,
jpki.store.rp_usage): the OCSP traffic every process adds by minute, read per JST day with its
rate and latency quantiles; the relying parties' calls summed from the audit log exactly once,
in batches; the audit chain's last verification from the jobs' ledger. Both databases."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from api.composition import Services
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.jobs import AUDIT_VERIFY
from jpki.model import AuditRecord, JobRun
from jpki.registry.statistics import RpUsage, _quantile
from jpki.relying_parties.usage import Use, use_of
from jpki.store import rp_usage
from jpki.telemetry import OCSP_BUCKETS
from tests.conftest import FixedClock

pytestmark = pytest.mark.hsm

READ = authorize(Principal.local_operator("pytest"), Operation.STATISTICS_READ)
BUCKETS = len(OCSP_BUCKETS) + 1


def counts(**at: int) -> list[int]:
    """Bucket counts: ``b3=5`` puts 5 requests in the bucket of OCSP_BUCKETS[3]."""
    out = [0] * BUCKETS
    for name, n in at.items():
        out[int(name[1:])] = n
    return out


# --- OCSP -------------------------------------------------------------------------------------


def test_quantiles_interpolate_within_the_bucket_as_prometheus_does() -> None:
    assert _quantile(0.5, [0] * BUCKETS) is None
    # 10 requests in (0.1 ms, 0.25 ms]: the median is halfway through that bucket.
    assert _quantile(0.5, counts(b1=10)) == pytest.approx(0.175)
    # 99 fast (first bucket, from 0) and 1 above every bound: p99 is the first bucket's bound,
    # p100 the last bound (histogram_quantile's answer for +Inf).
    assert _quantile(0.99, counts(b0=99, b12=1)) == pytest.approx(0.1)
    assert _quantile(1.0, counts(b0=99, b12=1)) == pytest.approx(1000.0)


def test_every_processs_traffic_adds_up_per_jst_day(services: Services,
                                                    clock: FixedClock) -> None:
    # 14:59 UTC is 23:59 JST on the 27th; 15:00 UTC is 00:00 JST on the 28th.
    late = datetime(2026, 11, 27, 14, 59, tzinfo=UTC)
    midnight = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    # Two processes write the same minute: the rows add up.
    services.ocsp_traffic.add({(late, "successful"): (counts(b2=30), 0.012)})
    services.ocsp_traffic.add({(late, "successful"): (counts(b2=30), 0.012),
                               (late, "malformedRequest"): (counts(b0=6), 0.0003)})
    services.ocsp_traffic.add({(midnight, "successful"): (counts(b4=12), 0.024)})
    services.ocsp_traffic.add({(midnight + timedelta(minutes=1), "successful"):
                               (counts(b4=6), 0.012)})
    clock.set(datetime(2026, 11, 28, 3, 0, tzinfo=UTC))  # 12:00 JST
    first, second = services.statistics.report(READ, days=2).ocsp
    assert (first.day, first.requests, first.successful) == (date(2026, 11, 27), 66, 60)
    assert first.per_second == pytest.approx(66 / 86400)
    assert first.peak_per_second == pytest.approx(66 / 60)
    assert first.mean_ms == pytest.approx((0.024 + 0.0003) / 66 * 1000)
    assert first.p50_ms == pytest.approx(_quantile(0.5, counts(b0=6, b2=60)))
    assert (second.day, second.requests, second.successful) == (date(2026, 11, 28), 18, 18)
    # Today's mean over the twelve hours gone; the busiest minute had 12.
    assert second.per_second == pytest.approx(18 / (12 * 3600))
    assert second.peak_per_second == pytest.approx(12 / 60)
    assert second.p99_ms is not None and 1.0 < second.p99_ms <= 2.5
    # A day without traffic is there, as zeros.
    clock.set(datetime(2026, 11, 29, 3, 0, tzinfo=UTC))
    assert [(d.requests, d.p50_ms) for d in services.statistics.report(READ, days=1).ocsp] \
        == [(0, None)]


# --- relying parties ---------------------------------------------------------------------------


def record(action: str, subject: str, payload: dict[str, object]) -> AuditRecord:
    return AuditRecord(seq=1, at=datetime(2026, 11, 27, tzinfo=UTC), actor="client:x",
                       action=action, subject=subject, payload=json.dumps(payload),
                       prev_mac="", mac="")


@pytest.mark.parametrize(("action", "subject", "payload", "use"), [
    ("rp.status", "rp_1", {"purpose": "kyc", "count": 3}, Use("rp_1", "status", True, 3)),
    ("rp.linkage", "0a", {"relying_party": "rp_1"}, Use("rp_1", "linkage", True, 1)),
    ("basic4.provided", "c", {"relying_party": "rp_1"}, Use("rp_1", "basic4", True, 1)),
    ("rp.refused", "POST /v1/basic4", {"relying_party": "rp_1", "code": "x"},
     Use("rp_1", "basic4", False, 0)),
    # Nobody's usage: a refusal before the party was known, a route of no scope, other records.
    ("rp.refused", "POST /v1/status", {"relying_party": None}, None),
    ("rp.refused", "GET /v1/rp/ping", {"relying_party": "rp_1"}, None),
    ("rp.refused", "other", {"relying_party": "rp_1"}, None),
    ("certificate.issued", "0a", {"kind": "card_auth"}, None),
])
def test_which_records_are_whose_usage_of_which_scope(
        action: str, subject: str, payload: dict[str, object], use: Use | None) -> None:
    assert use_of(record(action, subject, payload)) == use


def test_the_roll_up_counts_each_call_once_in_batches(
        services: Services, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    audit = services.audit
    clock.set(datetime(2026, 11, 27, 14, 30, tzinfo=UTC))  # 23:30 JST on the 27th

    def calls(n: int, count: int = 1) -> None:
        with services.uow() as uow:
            for _ in range(n):
                audit.record(uow, actor="client:a", action="rp.status", subject="rp_a",
                             payload={"purpose": "kyc", "count": count})
            audit.record(uow, actor="cli:root", action="resident.registered", subject="r",
                         payload={})
            uow.commit()

    calls(3, count=2)
    monkeypatch.setattr(rp_usage, "BATCH", 2)  # several transactions per run
    assert services.rp_usage.roll_up() == {"records": 4, "calls": 3}
    assert services.rp_usage.roll_up() == {"records": 0, "calls": 0}  # nothing twice
    clock.set(datetime(2026, 11, 27, 15, 30, tzinfo=UTC))  # 00:30 JST on the 28th
    calls(1, count=5)
    with services.uow() as uow:
        audit.record(uow, actor="anonymous", action="rp.refused", subject="POST /v1/status",
                     payload={"relying_party": "rp_a", "status": 403, "code": "c"})
        uow.commit()
    assert services.rp_usage.roll_up() == {"records": 3, "calls": 2}
    clock.set(datetime(2026, 11, 28, 3, 0, tzinfo=UTC))
    report = services.statistics.report(READ, days=2)
    assert report.rp_usage == (RpUsage("rp_a", None, "status", 4, 1, 11),)
    assert report.rp_coverage.through == report.rp_coverage.head == 7
    assert report.rp_coverage.at == datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    # The window: only the 28th.
    assert services.statistics.report(READ, days=1).rp_usage == (
        RpUsage("rp_a", None, "status", 1, 1, 5),)


# --- the audit chain ---------------------------------------------------------------------------


def test_the_last_verification_is_the_ledgers(services: Services, clock: FixedClock) -> None:
    never = services.statistics.report(READ).audit_verification
    assert (never.at, never.outcome, never.records, never.runs) == (None, None, None, 0)
    at = clock.now()
    services.jobs.record(JobRun(job=AUDIT_VERIFY, started_at=at, duration_ms=3,
                                outcome="failed", error="AuditChainBroken",
                                counts={"records": 4, "broken_at": 5}, runs=1, failures=1,
                                last_success_at=None))
    seen = services.statistics.report(READ).audit_verification
    assert (seen.at, seen.outcome, seen.records, seen.broken_at, seen.error) == (
        at, "failed", 4, 5, "AuditChainBroken")
    assert (seen.runs, seen.failures, seen.last_success_at) == (1, 1, None)
