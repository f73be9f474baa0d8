"""Fixtures of the HTTP tests: the ``api`` harness (tests/api/harness.py) and keys to refuse."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from api.app import create_app
from api.composition import Services
from jpki.access.auth_throttle import AuthThrottle, FailureBudgets
from jpki.access.principals import Principal
from tests.api.harness import Api


@pytest.fixture
def api(services: Services, operator: Principal,
        caplog: pytest.LogCaptureFixture) -> Iterator[Api]:
    caplog.set_level(logging.DEBUG)
    # Failure budgets out of the way: the matrices here send many wrong credentials from one
    # test client on purpose. tests/jpki/test_shared_limits.py tests the budgets themselves.
    services.auth_throttle = AuthThrottle(
        by_client=FailureBudgets(services.limits, "client", 10**6, 60),
        by_address=FailureBudgets(services.limits, "address", 10**6, 60), refusal_delay=0)
    app = create_app(services.settings, services=services)
    # raise_server_exceptions: an unexpected exception fails the test instead of hiding in a 500.
    client = TestClient(app, raise_server_exceptions=True)
    harness = Api(services=services, operator=operator, http=client)
    yield harness
    client.close()
    # Non-negotiable: no log record written during the test holds personal data.
    for record in caplog.records:
        harness.assert_no_personal_data(record.getMessage(), f"the log ({record.name})")


# --- keys -------------------------------------------------------------------------------------


def _spki(key: Any) -> bytes:
    data: bytes = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return data


@pytest.fixture(scope="session")
def bad_keys() -> dict[str, bytes]:
    """Public keys the CA must refuse, in PEM."""
    return {
        "ec": _spki(ec.generate_private_key(ec.SECP256R1())),
        "rsa1024": _spki(rsa.generate_private_key(65537, 1024)),  # noqa: S505 - refused
        "garbage": b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n"
                   b"-----END PUBLIC KEY-----\n",
    }
