"""/healthz says alive, /readyz says usable (api.health): it fails for each of its reasons — the
database unreachable, the HSM session unusable, a responder certificate expiring within N days, a
CRL past its nextUpdate — and for that reason only, and passes otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from hsm import KeyStore
from jpki.municipalities import load_seed
from jpki.store import UnitOfWorkFactory, create_store_engine

pytestmark = pytest.mark.hsm

CHECKS = {"database", "hsm", "ocsp_responders", "crls"}


@pytest.fixture
def http(services: Any) -> Iterator[TestClient]:
    """The app with its lifespan: the first maintenance run publishes every full CRL."""
    with TestClient(create_app(services.settings, services=services)) as client:
        yield client


def ready(http: TestClient, *failing: str) -> dict[str, Any]:
    """Assert exactly ``failing`` checks fail (none: 200 ready) and return the checks."""
    r = http.get("/readyz")
    body = r.json()
    assert set(body["checks"]) == CHECKS, body
    failed = {name for name, check in body["checks"].items() if not check["ok"]}
    assert failed == set(failing), body
    assert (r.status_code, body["status"]) == ((503, "unready") if failing else (200, "ready"))
    assert r.headers["cache-control"] == "no-store"
    return dict(body["checks"])


def test_healthz_is_alive_and_readyz_passes_when_everything_is_usable(http: TestClient) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    checks = ready(http)  # no credentials needed: load balancers ask
    assert checks["database"]["detail"] == "reachable"
    assert "2 generations" in checks["ocsp_responders"]["detail"]
    assert "within their nextUpdate" in checks["crls"]["detail"]


def test_not_ready_when_the_database_is_unreachable(http: TestClient, services: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1: every connection is refused, as with a server that is down.
    dead = create_store_engine("postgresql://jpki@127.0.0.1:1/jpki")
    monkeypatch.setattr(services, "uow", UnitOfWorkFactory(dead))
    monkeypatch.setattr(services, "read_engine", dead)
    checks = ready(http, "database", "ocsp_responders", "crls")  # the last two read it too
    assert checks["database"]["detail"] == "failed: OperationalError"
    dead.dispose()


def test_not_ready_when_the_hsm_session_is_unusable(http: TestClient, services: Any,
                                                    token_config: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    closed = KeyStore(token_config)
    closed.close()  # its sessions are gone: every operation is refused
    monkeypatch.setattr(services, "keys", closed)
    checks = ready(http, "hsm")
    assert checks["hsm"]["detail"] == "failed: HsmError"


def test_not_ready_when_a_responder_certificate_expires_within_n_days(
        http: TestClient, services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The session's responder certificates run 13 days from the test's clock.
    monkeypatch.setattr(services, "settings",
                        services.settings.model_copy(update={"ready_responder_days": 14}))
    checks = ready(http, "ocsp_responders")
    assert checks["ocsp_responders"]["detail"] == \
        "less than 14 days left on the responder certificate of auth/g01, sign/g01"
    monkeypatch.setattr(services, "settings",
                        services.settings.model_copy(update={"ready_responder_days": 12}))
    ready(http)


def test_not_ready_when_a_crl_is_past_its_next_update(http: TestClient, services: Any,
                                                      clock: Any) -> None:
    # Seven shards of both CAs published (live from then on: jpki.revocation.crls), and the
    # two ARLs.
    shards = [m.code for m in load_seed()[:7]]
    services.crls.publish_many(services.crls.scopes(shards, include_arl=False), kinds=("full",))
    assert len(services.crls.scopes()) == 7 * 2 + 2
    ready(http)
    clock.advance(hours=24, minutes=59)  # full CRLs: 24 h + 60 min of margin
    ready(http)
    clock.advance(minutes=2)
    checks = ready(http, "crls")
    scopes = len(services.crls.scopes())
    assert checks["crls"]["detail"].startswith("no CRL within its nextUpdate for ")
    assert checks["crls"]["detail"].endswith(f" and {scopes - 5} more")
    # Publishing again (what the maintenance loop does) makes it ready again.
    services.crls.publish_many(services.crls.scopes(), kinds=("full",))
    ready(http)


def test_a_crl_never_published_is_not_stale(services: Any) -> None:
    """Without the lifespan nothing is published: each CRL is then published on its first
    request (api.routers.crl), so readiness does not fail for it."""
    client = TestClient(create_app(services.settings, services=services))
    checks = ready(client)
    assert "not published yet" in checks["crls"]["detail"]
