"""Schemathesis against the published OpenAPI of the relying-party endpoints: generated requests
(valid and invalid by the schema) sent over real HTTP to the app served by uvicorn, with a
registered relying party's credentials; none may be answered with a 5xx.

The schema is the app's own (``create_app(...).openapi()``, no server needed to read it). Requests
go through schemathesis's ``requests`` transport to a loopback server rather than its in-process
ASGI transport, which would start the app's lifespan (maintenance loops) and keep it running for
the rest of the test session.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.composition import Services
from api.in_process import free_port
from jpki.rate_limits import TokenBuckets
from jpki.settings import Settings
from tests.api.harness import basic_auth
from tests.conftest import LiveServer, serve
from tests.holder_kit import CA_OPERATOR

pytestmark = pytest.mark.hsm

RP_PATHS = r"^/v1/(status|linkage|basic4|rp/ping|consents/withdrawals)$"
EXAMPLES = 30

schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi()).include(
    path_regex=RP_PATHS)


@dataclass
class RpServer:
    url: str
    headers: dict[str, str]


@pytest.fixture
def rp_server(services: Services) -> Iterator[RpServer]:
    new = services.relying_parties.register(CA_OPERATOR, name="Fuzzing RP",
                                            kind="platform_operator",
                                            purposes=["test", "account_opening"],
                                            scopes=["status", "linkage", "basic4"])
    # Generous limits: the point is the answers, not the 429s.
    services.relying_parties.buckets = TokenBuckets(100_000, 100_000)
    server: LiveServer
    with serve(services, free_port()) as server:
        yield RpServer(server.url, basic_auth(new.client_id, new.client_secret))


def test_the_schema_covers_every_relying_party_endpoint() -> None:
    operations = {(op.method.upper(), op.path) for op in
                  (result.ok() for result in schema.get_all_operations())}
    assert operations == {("POST", "/v1/status"), ("POST", "/v1/linkage"),
                          ("POST", "/v1/basic4"), ("GET", "/v1/rp/ping"),
                          ("POST", "/v1/consents/withdrawals")}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_relying_party_request_gets_a_server_error(case: schemathesis.Case,
                                                      rp_server: RpServer) -> None:
    case.call_and_validate(base_url=rp_server.url, headers=rp_server.headers,
                           checks=[not_a_server_error])
