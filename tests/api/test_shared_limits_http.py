"""Two nodes on one database share the limits (docs/deployment.md, "What must hold across
nodes"): two applications, each with its own services (composition root, engines, memory),
over the same SQLite file or PostgreSQL database — as two `jpki serve` nodes behind a balancer.

A relying party calling both cannot get more than its one bucket (within the documented
tolerance), requests without credentials from one source are limited across both, and a
failure budget spent through one node locks the caller out on the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.composition import Services, build_services
from hsm.keystore import KeyStore
from jpki.access.auth_throttle import AuthThrottle, FailureBudgets
from jpki.rate_limits import TokenBuckets, TooManyRequests
from tests.api.harness import Api, basic_auth
from tests.api.test_relying_parties import register_rp
from tests.conftest import FixedClock, make_settings

pytestmark = pytest.mark.hsm

STATUS = "/v1/status"
CHALLENGES = "/v1/mobile/challenges"


@pytest.fixture
def second(api: Api, database_url: str, tmp_path: Path, keystore: KeyStore,
           clock: FixedClock) -> Iterator[TestClient]:
    """A second node: services of its own on the same database, and its app."""
    services = build_services(make_settings(tmp_path, database_url), keys=keystore,
                              clock=clock)
    client = TestClient(create_app(services.settings, services=services),
                        raise_server_exceptions=True)
    yield client
    client.close()
    services.audit_group.close()
    services.audit_writer.close()
    services.uow.engine.dispose()
    services.read_engine.dispose()


def node_services(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def test_a_relying_party_calling_two_nodes_gets_one_bucket(api: Api,
                                                          second: TestClient) -> None:
    """From a standing start at one instant (the clock held), the two nodes together admit at
    most the burst — the tokens either leased are gone from the shared row — and at least the
    burst less the blocks they hold unspent; later, at most what refilled plus those blocks
    (docs/deployment.md)."""
    now = [1000.0]
    rate, burst = 40.0, 20
    nodes = [api.http, second]
    for client in nodes:
        svc = node_services(client)
        svc.relying_parties.buckets = TokenBuckets(svc.limits, "rp", rate, burst,
                                                   clock=lambda: now[0])
    block = api.services.relying_parties.buckets.block
    assert block == 5
    rp = register_rp(api, scopes=("status",))
    body = {"purpose": "test", "serials": ["12"]}
    answers = {0: [], 1: []}  # type: dict[int, list[int]]
    for i in range(3 * burst):
        r = nodes[i % 2].post(STATUS, headers=rp.headers, json=body)
        answers[i % 2].append(r.status_code)
        if r.status_code == 429:
            assert r.json()["code"] == "rp.rate_limited" and int(r.headers["retry-after"]) >= 1
    admitted = [a.count(200) for a in answers.values()]
    assert all(a > 0 for a in admitted), answers  # both nodes served it
    assert burst - 2 * block <= sum(admitted) <= burst, answers  # not 2 × burst
    assert set(answers[0]) | set(answers[1]) == {200, 429}
    # Refilled: the time of a block later, both may serve again, together still bounded.
    now[0] += block / rate
    again = [nodes[i % 2].post(STATUS, headers=rp.headers, json=body).status_code
             for i in range(4 * block)]
    assert 1 <= again.count(200) <= block + 2 * block, again


def test_requests_without_credentials_from_one_source_are_limited_across_nodes(
        api: Api, second: TestClient) -> None:
    now = [1000.0]
    for client in (api.http, second):
        svc = node_services(client)
        svc.anonymous = TokenBuckets(svc.limits, "anonymous", 2, 4, clock=lambda: now[0],
                                     error=TooManyRequests)
    codes = [(api.http if i % 2 else second).post(CHALLENGES, json={}).status_code
             for i in range(12)]
    assert codes.count(429) == 8, codes  # a burst of 4 in all, not 4 per node
    assert all(code != 429 for code in codes[:4]), codes


def test_a_failure_budget_spent_on_one_node_locks_out_on_the_other(
        api: Api, second: TestClient) -> None:
    for client in (api.http, second):
        svc = node_services(client)
        svc.auth_throttle = AuthThrottle(
            by_client=FailureBudgets(svc.limits, "client", 3, 60),
            by_address=FailureBudgets(svc.limits, "address", 1000, 60), refusal_delay=0)
        svc.console._throttle = svc.auth_throttle
    rp = register_rp(api, scopes=("status",))
    body = {"purpose": "test", "serials": ["12"]}
    assert second.post(STATUS, headers=rp.headers, json=body).status_code == 200  # B has read
    wrong = basic_auth(rp.client_id, "w" * 43)
    for _ in range(3):
        api.problem(api.http.post(STATUS, headers=wrong, json=body), 401,
                    "auth.invalid_credentials")
    api.problem(api.http.post(STATUS, headers=rp.headers, json=body), 429, "auth.throttled")
    # Node B: even the right secret is refused, without a check — at once when its cache is
    # older than STALE_SECONDS, else within POLL_SECONDS (its read, claimed by a request).
    b = node_services(second).auth_throttle
    b._read_at = float("-inf")  # as a node that served nothing for a while
    refused = second.post(STATUS, headers=rp.headers, json=body)
    api.problem(refused, 429, "auth.throttled")
    assert int(refused.headers["retry-after"]) == 20  # 3 a minute: one back in 20 s
