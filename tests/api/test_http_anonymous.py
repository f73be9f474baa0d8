"""What anyone may ask without credentials is bounded: a rate per source address on every such
route (api.anonymous), a cap on the smartphone challenges one source — and all sources together —
hold unused, and the maintenance job deletes the challenges that can no longer be used.

Every test runs on SQLite and on PostgreSQL (the ``services`` fixture), on the real HSM.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from api.app import maintenance
from jpki.rate_limits import TokenBuckets, TooManyRequests
from jpki.store.tables import mobile_challenges
from tests.api.harness import Api
from tests.conftest import FixedClock

CHALLENGES = "/v1/mobile/challenges"
# Every route that takes no credentials and does work for the caller. Bodies that are refused
# later (not base64) still cost a token: the limit is checked first.
ANONYMOUS_ROUTES = ["/v1/mobile/applications", "/v1/mobile/revocations",
                    "/v1/mobile/suspension-lifts", "/v1/mobile/check-ins",
                    "/v1/consents/withdrawals"]
NOT_SIGNED = {"signed_data": "not base64, but long enough"}


def client(api: Api, host: str) -> TestClient:
    """Another client of the same app, from ``host``."""
    return TestClient(api.http.app, client=(host, 50000), raise_server_exceptions=True)


def challenge(http: TestClient) -> Any:
    return http.post(CHALLENGES, json={"purpose": "application"})


def stored_challenges(api: Api) -> int:
    with api.services.uow.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(mobile_challenges)).scalar_one())


@pytest.fixture
def now() -> list[float]:
    return [1000.0]


@pytest.fixture
def slow_buckets(api: Api, now: list[float]) -> TokenBuckets:
    """2 requests a second, a burst of 4, on a clock the test moves."""
    buckets = TokenBuckets(api.services.limits, "anonymous", 2, 4, clock=lambda: now[0],
                           error=TooManyRequests)
    api.services.anonymous = buckets
    return buckets


def test_requests_without_credentials_are_rate_limited_per_source(
        api: Api, slow_buckets: TokenBuckets, now: list[float]) -> None:
    first, second = client(api, "203.0.113.10"), client(api, "203.0.113.11")
    for _ in range(4):
        assert challenge(first).status_code == 201
    refused = challenge(first)
    body = api.problem(refused, 429, "request.rate_limited")
    assert refused.headers["retry-after"] == "1", refused.headers
    assert "203.0.113" not in refused.text  # the address is not echoed
    # Another source has a bucket of its own; the refused one refills at the rate.
    assert challenge(second).status_code == 201
    now[0] += 0.5
    assert challenge(first).status_code == 201
    api.problem(challenge(first), 429, "request.rate_limited")
    assert body["context"] == {"retry_after": 1}


def test_every_route_without_credentials_is_limited_before_it_reads_the_body(
        api: Api, slow_buckets: TokenBuckets) -> None:
    for n, route in enumerate(ANONYMOUS_ROUTES):
        http = client(api, f"198.51.100.{n + 1}")
        for _ in range(4):
            r = http.post(route, json=NOT_SIGNED)
            assert r.status_code in (400, 422), (route, r.text)
        before = api.snapshot()
        api.problem(http.post(route, json=NOT_SIGNED), 429, "request.rate_limited")
        api.problem(http.post(route, content=b"{not json", headers={
            "content-type": "application/json"}), 429, "request.rate_limited")
        # Not even audited (a withdrawal's refusals otherwise are): a flood costs nothing.
        api.unchanged(before)
    # Routes with credentials are not counted against the source (they have their own rules).
    http = client(api, "198.51.100.1")
    r = http.get("/v1/operators/relying-parties", headers=api.op)
    assert r.status_code == 200, r.text


def test_an_ipv6_source_is_its_64(api: Api, slow_buckets: TokenBuckets) -> None:
    """Within one /64 an address costs nothing to change (RFC 6177): it is one source."""
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3",
                 "2001:db8:1:2:ffff:ffff:ffff:ffff"):
        assert challenge(client(api, host)).status_code == 201
    api.problem(challenge(client(api, "2001:db8:1:2:abcd::9")), 429, "request.rate_limited")
    assert challenge(client(api, "2001:db8:1:3::1")).status_code == 201


def test_unused_challenges_are_capped_per_source_and_in_all(api: Api, clock: FixedClock) -> None:
    api.services.mobile.max_per_source = 3
    api.services.mobile.max_outstanding = 5
    first, second = client(api, "203.0.113.20"), client(api, "203.0.113.21")
    for _ in range(3):
        assert challenge(first).status_code == 201
    refused = challenge(first)
    api.problem(refused, 429, "mobile.too_many_challenges")
    assert refused.headers["retry-after"] == "300", refused.headers  # the earliest expires then
    stored = stored_challenges(api)
    for _ in range(2):
        assert challenge(second).status_code == 201
    exhausted = challenge(client(api, "203.0.113.22"))
    api.problem(exhausted, 503, "mobile.challenges_exhausted")
    assert exhausted.headers["retry-after"] == "300", exhausted.headers
    assert stored_challenges(api) == stored + 2  # nothing stored for the refusals

    # A used challenge is no longer outstanding …
    with api.services.uow.engine.begin() as conn:
        conn.execute(update(mobile_challenges).where(
            mobile_challenges.c.source == "203.0.113.20").values(used_at=clock.now()))
    assert challenge(first).status_code == 201  # 3 outstanding: 1 of the first, 2 of the second
    # … nor is an expired one.
    clock.advance(minutes=4)
    third = client(api, "203.0.113.23")
    for _ in range(2):
        assert challenge(third).status_code == 201
    exhausted = challenge(client(api, "203.0.113.24"))
    api.problem(exhausted, 503, "mobile.challenges_exhausted")
    assert exhausted.headers["retry-after"] == "60", exhausted.headers
    clock.advance(minutes=1)  # the first three expire
    for _ in range(3):
        assert challenge(client(api, "203.0.113.24")).status_code == 201
    api.problem(challenge(client(api, "203.0.113.25")), 503, "mobile.challenges_exhausted")


def test_the_maintenance_deletes_expired_and_used_challenges(api: Api, clock: FixedClock) -> None:
    http = client(api, "203.0.113.30")
    early = [challenge(http).json() for _ in range(3)]
    clock.advance(minutes=3)
    late = [challenge(http).json() for _ in range(2)]
    with api.services.uow() as uow:  # one of the late ones is used
        api.services.mobile._consume_challenge(
            uow, base64.b64decode(late[0]["challenge"]), "application", clock.now())
        uow.commit()
    assert stored_challenges(api) == len(early) + len(late)

    clock.advance(minutes=2)  # the early ones expire at this instant
    maintenance(api.services)
    assert stored_challenges(api) == 1  # the late one never used
    with api.services.uow() as uow:
        held, earliest = uow.mobile.outstanding_challenges(clock.now())
    assert held == 1 and earliest is not None
    assert earliest.isoformat().replace("+00:00", "Z") == late[1]["expires_at"]
    clock.advance(minutes=3)
    maintenance(api.services)
    assert stored_challenges(api) == 0
