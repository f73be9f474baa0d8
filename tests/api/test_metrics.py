"""Prometheus metrics at /metrics (api.metrics, api.probes): only for operators, counters that
move with what the CA does (certificates, OCSP, relying parties, rate limits, HSM, CRLs, jobs),
gauges read from the database, and no personal data in any label or value.

The counters of prometheus-client live as long as the test process, so every assertion is on the
difference between two scrapes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from prometheus_client.parser import text_string_to_metric_families

from api.app import maintenance
from api.probes import Probes
from jpki.model import CaKind
from jpki.rate_limits import TokenBuckets
from tests.api.harness import ADULT, OTHER, Api

pytestmark = pytest.mark.hsm

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: Api) -> Samples:
    r = api.http.get("/metrics", headers=api.op)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    api.assert_no_personal_data(r.text, "the metrics")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


class Delta:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.before = scrape(api)

    def __call__(self, name: str, **labels: str) -> float:
        after = scrape(self.api)
        return value(after, name, **labels) - value(self.before, name, **labels)


def uncached(api: Api) -> None:
    """Forget the presign backlog the probes keep for a while (api.probes)."""
    api.http.app.state.probes = Probes(api.services)  # type: ignore[attr-defined]


def by_kind(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in doc["certificates"]}


# --- access ---------------------------------------------------------------------------------------


def test_metrics_need_an_operator_credential(api: Api) -> None:
    api.problem(api.http.get("/metrics"), 401, "auth.required")
    api.problem(api.http.get("/metrics", headers=api.station), 403, "auth.role_forbidden")
    r = api.http.get("/metrics", headers=api.op)
    assert r.status_code == 200 and "jpki_http_requests_total" in r.text
    assert r.headers["cache-control"] == "no-store"


# --- certificates, HSM ----------------------------------------------------------------------------


def test_issuance_renewal_and_revocation_move_their_counters(api: Api, clock: Any,
                                                             subject_keys: list[bytes]) -> None:
    d = Delta(api)
    resident = api.register(ADULT)
    old = by_kind(api.issue(resident, sign=subject_keys[0], auth=subject_keys[1]))
    r = api.http.post(f"/v1/operators/certificates/{old['card_auth']['serial']}/revocation",
                      headers=api.op, json={"reason": "keyCompromise"})
    assert r.status_code == 200, r.text
    assert d("jpki_certificates_issued_total", kind="card_sign") == 1
    assert d("jpki_certificates_issued_total", kind="card_auth") == 1
    assert d("jpki_certificates_revoked_total", kind="card_auth", reason="keyCompromise") == 1
    assert d("jpki_certificates_revoked_total", kind="card_sign", reason="keyCompromise") == 0
    assert d("jpki_certificates_renewed_total", kind="card_sign") == 0
    # Two certificates signed in the HSM, and every audited change MACed there.
    assert d("jpki_hsm_operation_duration_seconds_count", operation="sign") >= 2
    assert d("jpki_hsm_operation_duration_seconds_count", operation="hmac") >= 1

    d = Delta(api)
    clock.set(datetime.fromisoformat(old["card_sign"]["not_after"].replace("Z", "+00:00"))
              - timedelta(days=60))
    r = api.http.post("/v1/stations/renewals", headers=api.station, json={
        "resident_id": resident, "sign_public_key": subject_keys[2].decode(),
        "proofing_id": api.proof(resident)})
    assert r.status_code == 201, r.text
    assert d("jpki_certificates_renewed_total", kind="card_sign") == 1
    assert d("jpki_certificates_issued_total", kind="card_sign") == 0
    assert d("jpki_certificates_revoked_total", kind="card_sign", reason="superseded") == 1


def test_a_refused_change_counts_nothing(api: Api) -> None:
    d = Delta(api)
    r = api.http.post("/v1/operators/certificates/7fffffffffffffff0000/revocation",
                      headers=api.op, json={"reason": "keyCompromise"})
    api.problem(r, 404, "certificate.not_found")
    assert total(scrape(api), "jpki_certificates_revoked_total") == \
        total(d.before, "jpki_certificates_revoked_total")
    assert d("jpki_http_requests_total", method="POST",
             route="/v1/operators/certificates/{serial}/revocation", status="404") == 1


# --- OCSP -----------------------------------------------------------------------------------------


def _ocsp_request(api: Api, resident: str, key: bytes) -> bytes:
    (cert,) = api.issue(resident, sign=key)["certificates"]
    leaf = x509.load_pem_x509_certificate(cert["pem"].encode())
    issuer = x509.load_der_x509_certificate(api.http.get("/ca/sign/g01.cer").content)
    return ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build() \
        .public_bytes(Encoding.DER)


def test_ocsp_requests_are_counted_by_outcome_and_timed(api: Api,
                                                        subject_keys: list[bytes]) -> None:
    request = _ocsp_request(api, api.register(ADULT), subject_keys[0])
    d = Delta(api)
    headers = {"content-type": "application/ocsp-request"}
    for _ in range(3):  # the first from the responder, the others replayed from memory
        r = api.http.post("/ocsp", content=request, headers=headers)
        assert r.status_code == 200
        assert ocsp.load_der_ocsp_response(r.content).response_status is \
            ocsp.OCSPResponseStatus.SUCCESSFUL
    assert api.http.post("/ocsp", content=b"\x30\x03\x02\x01\x01",
                         headers=headers).status_code == 200  # malformedRequest, in OCSP
    assert api.http.post("/ocsp", content=request,
                         headers={"content-type": "text/plain"}).status_code == 415
    name = "jpki_ocsp_request_duration_seconds_count"
    assert d(name, outcome="successful") == 3
    assert d(name, outcome="malformedRequest") == 1
    assert d(name, outcome="http_415") == 1
    after = scrape(api)
    assert value(after, "jpki_ocsp_request_duration_seconds_bucket", outcome="successful",
                 le="+Inf") == value(after, name, outcome="successful")


def test_the_ocsp_outcome_is_read_from_the_response_bytes() -> None:
    from api.metrics import ocsp_outcome
    from jpki.revocation.ocsp import MALFORMED

    assert ocsp_outcome(200, MALFORMED) == "malformedRequest"
    long_form = bytes([0x30, 0x82, 0x01, 0x00, 0x0A, 0x01, 0x00]) + b"\x00" * 256
    assert ocsp_outcome(200, long_form) == "successful"
    assert ocsp_outcome(200, b"") == "unknown"
    assert ocsp_outcome(200, b"\x04\x03abc") == "unknown"
    assert ocsp_outcome(413, b'{"status": 413}') == "http_413"


def test_presign_backlog_and_feed_lag(api: Api, clock: Any, subject_keys: list[bytes]) -> None:
    services = api.services
    resident = api.register(ADULT)
    api.issue(resident, sign=subject_keys[0], auth=subject_keys[1])
    uncached(api)
    assert value(scrape(api), "jpki_ocsp_presign_backlog") == 2
    assert services.ocsp.presign_missing() == 2
    uncached(api)
    assert value(scrape(api), "jpki_ocsp_presign_backlog") == 0
    services.ocsp.refresh()  # a complete poll, as the server's loop makes four times a second
    assert value(scrape(api), "jpki_ocsp_feed_lag_seconds") == 0
    clock.advance(seconds=7)
    # No poll for 7 s: a status change up to 7 s old may not be reflected.
    assert value(scrape(api), "jpki_ocsp_feed_lag_seconds") == 7
    services.ocsp.refresh()
    assert value(scrape(api), "jpki_ocsp_feed_lag_seconds") == 0


# --- relying parties ------------------------------------------------------------------------------


def _rp(api: Api) -> tuple[str, dict[str, str]]:
    r = api.http.post("/v1/operators/relying-parties", headers=api.op, json={
        "name": "株式会社計測", "kind": "platform_operator", "purposes": ["test"],
        "scopes": ["status"]})
    assert r.status_code == 201, r.text
    doc = r.json()
    from tests.api.harness import basic_auth

    return doc["relying_party"]["id"], basic_auth(doc["client_id"], doc["client_secret"])


def test_relying_party_calls_and_rate_limit_refusals_by_relying_party(api: Api) -> None:
    rp, headers = _rp(api)
    now = [0.0]
    api.services.relying_parties.buckets = TokenBuckets(api.services.limits, "rp", 1, 2,
                                                        clock=lambda: now[0])
    d = Delta(api)
    body = {"purpose": "test", "serials": ["12"]}
    for _ in range(2):
        assert api.http.post("/v1/status", headers=headers, json=body).status_code == 200
    api.problem(api.http.post("/v1/status", headers=headers, json=body), 429, "rp.rate_limited")
    now[0] += 5
    api.problem(api.http.post("/v1/status", headers=headers,
                              json={"purpose": "marketing", "serials": ["12"]}),
                403, "rp.purpose_undeclared")
    api.problem(api.http.post("/v1/linkage", headers=headers,
                              json={"purpose": "test", "serial": "12", "consent_id": "x"}),
                403, "auth.scope_missing")
    calls = "jpki_rp_calls_total"
    assert d(calls, relying_party=rp, call="status", outcome="ok") == 2
    assert d(calls, relying_party=rp, call="status", outcome="rp.rate_limited") == 1
    assert d(calls, relying_party=rp, call="status", outcome="rp.purpose_undeclared") == 1
    assert d(calls, relying_party=rp, call="linkage", outcome="auth.scope_missing") == 1
    assert d("jpki_rate_limit_refusals_total", relying_party=rp) == 1
    # An unauthenticated call has no relying party.
    api.problem(api.http.post("/v1/status", json=body), 401, "auth.required")
    assert d(calls, relying_party="none", call="status", outcome="auth.required") == 1


# --- CRLs, jobs, pools -----------------------------------------------------------------------


def test_crl_publication_and_maintenance_jobs(api: Api, subject_keys: list[bytes]) -> None:
    # A certificate pair under 132217: the shard of both CAs needs a CRL (jpki.revocation.crls
    # publishes only such scopes, and the ARLs).
    api.issue(api.register(ADULT), sign=subject_keys[0], auth=subject_keys[1])
    d = Delta(api)
    maintenance(api.services)
    samples = scrape(api)
    publication = api.services.crls.latest(
        api.services.crls.scope(CaKind.SIGN, 1, "132217"), "full")
    assert publication is not None
    labels = {"ca": "sign", "generation": "g01", "shard": "132217", "kind": "full"}
    assert value(samples, "jpki_crl_size_bytes", **labels) == publication.size
    assert value(samples, "jpki_crl_entries", **labels) == publication.entries
    assert value(samples, "jpki_crl_last_publication_duration_seconds", **labels) > 0
    scopes = len(api.services.crls.scopes())
    assert scopes == 2 + 2
    assert d("jpki_crl_publication_duration_seconds_count", kind="full") == scopes
    assert value(samples, "jpki_crl_scopes", state="overdue") == 0
    # The first run publishes every full CRL; deltas follow once one is due.
    assert value(samples, "jpki_crl_scopes", state="fresh") == scopes
    assert value(samples, "jpki_crl_scopes", state="unpublished") == scopes - 2  # no ARL deltas
    for job in ("abandon_stale_intents", "sweep_undelivered", "renew_responders",
                "publish_crls"):
        assert d("jpki_job_runs_total", job=job, outcome="ok") == 1, job
        assert value(samples, "jpki_job_last_run_failed", job=job) == 0, job
        assert value(samples, "jpki_job_last_run_timestamp_seconds", job=job) == \
            api.services.clock.now().timestamp()
    assert value(samples, "jpki_job_last_run_items", job="publish_crls", item="full") == scopes
    assert d("jpki_job_items_total", job="publish_crls", item="full") == scopes
    assert value(samples, "jpki_state_probe_up", probe="jobs") == 1


def test_pools_and_responders_are_gauged(api: Api) -> None:
    samples = scrape(api)
    assert value(samples, "jpki_hsm_sessions", state="in_use") + \
        value(samples, "jpki_hsm_sessions", state="idle") == api.services.keys.pool_size
    assert ("jpki_db_pool_connections", frozenset({("engine", "write"),
                                                   ("state", "checked_out")})) in samples
    assert value(samples, "jpki_ocsp_responder_certificate_seconds_left",
                 generation="sign/g01") > 7 * 86400
    assert value(samples, "jpki_worker_up") == 1


def test_labels_and_values_carry_no_personal_data(api: Api, subject_keys: list[bytes]) -> None:
    """Residents with distinctive basic 4 information go through registration, issuance, a
    refused registration and revocation; the exposition (checked by scrape()) holds none of it."""
    resident = api.register(ADULT)
    api.register(OTHER)
    issued = by_kind(api.issue(resident, sign=subject_keys[0]))
    api.http.post("/v1/operators/residents", headers=api.op,
                  json={**OTHER, "birth_date": "not a date"})
    api.http.post(f"/v1/operators/certificates/{issued['card_sign']['serial']}/revocation",
                  headers=api.op, json={"reason": "keyCompromise"})
    text = api.http.get("/metrics", headers=api.op).text
    api.assert_no_personal_data(text, "the metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label, label_value in sample.labels.items():
                assert label_value.isascii(), (sample.name, label, label_value)


def test_the_ocsp_tally_added_at_once_equals_observing_one_by_one() -> None:
    """MeteredOcsp adds its tally to the histogram in one go (api.metrics._add_to_histogram):
    the result must be exactly what observing each duration would have given."""
    from bisect import bisect_left

    from prometheus_client import CollectorRegistry, Histogram

    from api.metrics import _OCSP_BUCKETS, _add_to_histogram

    registry = CollectorRegistry()
    one_by_one = Histogram("one_seconds", "", buckets=_OCSP_BUCKETS, registry=registry)
    at_once = Histogram("once_seconds", "", buckets=_OCSP_BUCKETS, registry=registry)
    durations = [0.00005, 0.0001, 0.0003, 0.0003, 0.002, 0.7, 3.0]
    tally = [0] * (len(_OCSP_BUCKETS) + 1)
    for d in durations:
        one_by_one.observe(d)
        tally[bisect_left(_OCSP_BUCKETS, d)] += 1
    _add_to_histogram(at_once, tally, sum(durations))

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        (family,) = [f for f in registry.collect() if f.name == name]
        return [(s.name.removeprefix(name), s.labels, s.value) for s in family.samples
                if not s.name.endswith("_created")]

    assert samples("one_seconds") == samples("once_seconds")
