"""Client authentication over HTTP: client ids checked at the edge, legacy Argon2id secrets
accepted and upgraded, the bounded legacy verifier, the failure budgets (429), and the
credentials each server process keeps (a change made by another process in every answer within
a second, a secret rotated there at once).

Every test runs on SQLite and on PostgreSQL (the ``api`` fixture), on the real HSM; the ``api``
fixture raises server exceptions, so a 500 fails the test loudly.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from api.app import create_app
from api.composition import build_services
from api.in_process import free_port, served_in_thread
from jpki.access.auth_throttle import AuthThrottle, FailureBudgets
from jpki.access.authz import Operation, authorize
from jpki.access.client_secrets import LegacyVerifier, SecretHasher, is_hmac, is_legacy
from jpki.access.principals import Principal
from jpki.errors import CaNotInitialised
from jpki.model import ClientRole, ClientStatus
from tests.api.harness import Api, Caller, basic_auth
from tests.conftest import CaMaterial, install_ca, make_settings

pytestmark = pytest.mark.hsm

PING = "/v1/rp/ping"
NO_RESIDENT = "0" * 32
RESIDENT = f"/v1/operators/residents/{NO_RESIDENT}"
# Legacy hashes as earlier revisions stored them, at the lowest cost (the parameters are in the
# hash; the verifier reads them from there).
LEGACY = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def raw_basic(credentials: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}


def stored(api: Api, client_id: str) -> tuple[str, str | None]:
    with api.services.uow() as uow:
        client = uow.clients.get_by_client_id(client_id)
        assert client is not None
        return client.secret_hash, client.previous_secret_hash


def make_legacy(api: Api, caller: Caller, *, previous: str | None = None,
                valid_for: timedelta = timedelta(hours=1)) -> None:
    """Store the caller's secret (and optionally a previous one) as Argon2id, as before."""
    with api.services.uow() as uow:
        client = uow.clients.get_by_client_id(caller.client_id)
        assert client is not None
        client.secret_hash = LEGACY.hash(caller.secret)
        if previous is not None:
            client.previous_secret_hash = LEGACY.hash(previous)
            client.previous_secret_expires_at = api.services.clock.now() + valid_for
        uow.commit()
    api.services.clients.forget(caller.client_id)


# --- client ids at the edge -------------------------------------------------------------------


@pytest.mark.parametrize("client_id", [
    "jpki_\0", "jpki_" + "0" * 23 + "\0", "\0" * 10, "jpki_" + "A" * 24, "jpki_" + "g" * 24,
    "jpki_" + "0" * 25, "jpki_" + "0" * 23, "jpki_" + "0" * 24 + "\n", "JPKI_" + "0" * 24,
    "jpki_" + "０" * 24, "jpki_" + "0" * 20 + "é" * 4, "x" * 64, "jpki_" + "0" * 1000,
    "jpki_0000 00000000000000000000", "'; DROP TABLE api_clients; --",
])
def test_ids_that_cannot_exist_are_401_on_every_route_and_never_looked_up(
        api: Api, client_id: str) -> None:
    looked_up: list[str] = []
    check = api.services.clients.check
    api.services.clients.check = lambda cid, secret: looked_up.append(cid) or check(cid, secret)  # type: ignore[method-assign]
    headers = raw_basic(client_id.encode("utf-8") + b":" + b"s" * 43)
    for method, path in (("GET", PING), ("GET", RESIDENT), ("POST", "/v1/status")):
        r = api.http.request(method, path, headers=headers,
                             json={"purpose": "test", "serials": ["01"]})
        api.problem(r, 401, "auth.invalid_credentials")
    assert looked_up == []
    # A NUL in the secret never reaches the database either: it is only hashed.
    caller = api.caller(ClientRole.RP, "status")
    r = api.http.get(PING, headers=raw_basic(caller.client_id.encode() + b":\0" + b"s" * 42))
    api.problem(r, 401, "auth.invalid_credentials")


def test_relying_party_ids_that_cannot_exist_are_refused_never_500(api: Api) -> None:
    """Over HTTP the schema refuses them (422); the service, which the CLI calls directly,
    answers "no such relying party" without asking the database (PostgreSQL errs on a NUL)."""
    from jpki.model import ClientStatus
    from jpki.relying_parties.service import RelyingPartyNotFound

    for rp_id in ("rp_\0", "rp_" + "0" * 15 + "\0", "rp_" + "G" * 16):
        quoted = rp_id.replace("\0", "%00")
        r = api.http.post(f"/v1/operators/relying-parties/{quoted}/status",
                          json={"status": "suspended"}, headers=api.op)
        api.problem(r, 422, "request.invalid")
        r = api.http.post("/v1/operators/relying-parties", headers=api.op,
                          json={"name": "SP", "kind": "service_provider", "parent_id": rp_id,
                                "purposes": ["test"], "scopes": ["status"]})
        api.problem(r, 422, "request.invalid")
        with pytest.raises(RelyingPartyNotFound):
            api.services.relying_parties.set_status(
                authorize(api.operator, Operation.RP_SET_STATUS), rp_id,
                ClientStatus.SUSPENDED)
        with pytest.raises(RelyingPartyNotFound):
            api.services.relying_parties.register(
                authorize(api.operator, Operation.RP_REGISTER),
                name="SP", kind="service_provider", purposes=["test"],
                scopes=["status"], parent_id=rp_id)


# --- legacy Argon2id secrets ------------------------------------------------------------------


def test_a_legacy_secret_is_accepted_once_through_argon2_and_upgraded(api: Api) -> None:
    caller = api.caller(ClientRole.RP, "status")
    make_legacy(api, caller)
    verifier = api.services.clients.legacy
    checks = verifier.checks
    before = api.snapshot()["audit_head"][0]

    r = api.http.get(PING, headers=basic_auth(caller.client_id, "wrong" * 9))
    api.problem(r, 401, "auth.invalid_credentials")
    assert verifier.checks == checks + 1
    assert is_legacy(stored(api, caller.client_id)[0])  # a failure changes nothing

    assert api.http.get(PING, headers=caller.headers).json() == {"ok": True}
    assert verifier.checks == checks + 2
    current, _ = stored(api, caller.client_id)
    assert is_hmac(current) and caller.secret not in current
    upgraded = [r for r in api.audit_since(before) if r.action == "client.secret_rehashed"]
    assert len(upgraded) == 1 and upgraded[0].subject == caller.client_id
    assert json.loads(upgraded[0].payload) == {"secret": "current", "from": "argon2id",
                                               "to": "hmac-sha256/client-secret-mac"}
    assert caller.secret not in upgraded[0].payload

    # From now on: no Argon2, whether the memory has the verification or not.
    api.services.clients.forget(caller.client_id)
    for _ in range(3):
        assert api.http.get(PING, headers=caller.headers).status_code == 200
    assert verifier.checks == checks + 2
    api.problem(api.http.get(PING, headers=basic_auth(caller.client_id, "wrong" * 9)), 401,
                "auth.invalid_credentials")
    assert verifier.checks == checks + 2


def test_a_legacy_previous_secret_keeps_its_deadline_when_upgraded(api: Api) -> None:
    caller = api.caller(ClientRole.OPERATOR)
    old = "old-secret-" + "x" * 32
    make_legacy(api, caller, previous=old, valid_for=timedelta(minutes=30))
    old_headers = basic_auth(caller.client_id, old)
    assert api.http.get(RESIDENT, headers=old_headers).status_code == 404
    assert api.http.get(RESIDENT, headers=caller.headers).status_code == 404
    current, previous = stored(api, caller.client_id)
    assert is_hmac(current) and previous is not None and is_hmac(previous)
    api.services.clock.advance(minutes=31)
    api.problem(api.http.get(RESIDENT, headers=old_headers), 401, "auth.invalid_credentials")
    assert api.http.get(RESIDENT, headers=caller.headers).status_code == 404


def test_suspension_refuses_a_legacy_client_at_once_too(api: Api) -> None:
    caller = api.caller(ClientRole.STATION)
    make_legacy(api, caller)
    from jpki.model import ClientStatus

    api.services.clients.set_status(
        authorize(api.operator, Operation.CLIENT_SET_STATUS),
        caller.client_id, ClientStatus.SUSPENDED)
    api.problem(api.http.get(RESIDENT, headers=caller.headers), 403, "auth.client_suspended")
    api.services.clients.set_status(
        authorize(api.operator, Operation.CLIENT_SET_STATUS), caller.client_id, ClientStatus.ACTIVE)
    assert api.http.get(RESIDENT, headers=caller.headers).status_code == 404


def test_unknown_ids_cost_one_hmac_never_an_argon2_run(api: Api) -> None:
    api.caller(ClientRole.RP, "status")
    make_legacy(api, api.caller(ClientRole.RP, "status"))
    checks = api.services.clients.legacy.checks
    for i in range(5):
        r = api.http.get(PING, headers=basic_auth("jpki_" + f"{i:024x}", "s" * 43))
        api.problem(r, 401, "auth.invalid_credentials")
    assert api.services.clients.legacy.checks == checks


def test_a_full_legacy_verifier_answers_503_with_retry_after(api: Api) -> None:
    caller = api.caller(ClientRole.RP, "status")
    make_legacy(api, caller)
    clients = api.services.clients
    clients.legacy = LegacyVerifier(workers=1, queue=0)
    release = threading.Event()
    blocker = clients.legacy.submit(lambda: release.wait(10))
    try:
        r = api.http.get(PING, headers=caller.headers)
        api.problem(r, 503, "auth.busy")
        assert r.headers["retry-after"] == "1"
        # HMAC clients do not wait for it.
        other = api.caller(ClientRole.OPERATOR)
        assert api.http.get(RESIDENT, headers=other.headers).status_code == 404
    finally:
        release.set()
        blocker.result(10)
    assert api.http.get(PING, headers=caller.headers).status_code == 200
    clients.legacy.close()


def test_without_the_client_secret_key_legacy_secrets_still_work_and_new_ones_wait(
        api: Api) -> None:
    """A data directory from before the key, not yet re-initialised."""
    caller = api.caller(ClientRole.OPERATOR)
    make_legacy(api, caller)
    clients = api.services.clients
    clients.hasher = SecretHasher(api.services.keys, "no-such-key")
    assert api.http.get(RESIDENT, headers=caller.headers).status_code == 404
    assert is_legacy(stored(api, caller.client_id)[0])  # not upgraded: there is no key
    with pytest.raises(CaNotInitialised):
        clients.create(
            authorize(api.operator, Operation.CLIENT_CREATE),
            name="new one", role=ClientRole.OPERATOR)


# --- failure budgets ----------------------------------------------------------------------------


def budgets(api: Api, *, per_client: int = 1000, per_address: int = 1000) -> None:
    limits = api.services.limits
    api.services.auth_throttle = AuthThrottle(
        by_client=FailureBudgets(limits, "client", per_client, 60),
        by_address=FailureBudgets(limits, "address", per_address, 60), refusal_delay=0)


def test_failures_for_one_client_id_are_throttled_without_checking_anything(api: Api) -> None:
    budgets(api, per_client=3)
    caller = api.caller(ClientRole.RP, "status")
    other = api.caller(ClientRole.OPERATOR)
    for _ in range(10):  # successes spend nothing
        assert api.http.get(PING, headers=caller.headers).status_code == 200
    wrong = basic_auth(caller.client_id, "wrong" * 9)
    for _ in range(3):
        api.problem(api.http.get(PING, headers=wrong), 401, "auth.invalid_credentials")
    checked: list[str] = []
    check = api.services.clients.check
    api.services.clients.check = lambda cid, s: checked.append(cid) or check(cid, s)  # type: ignore[method-assign]
    for headers in (wrong, caller.headers):  # now even the right secret is refused unchecked
        r = api.http.get(PING, headers=headers)
        body = api.problem(r, 429, "auth.throttled")
        assert 1 <= int(r.headers["retry-after"]) <= 20  # one failure's worth: 60 s / 3
        assert body["context"] == {"retry_after": int(r.headers["retry-after"])}
    assert checked == []
    # Another client from the same address is not affected.
    assert api.http.get(RESIDENT, headers=other.headers).status_code == 404


def test_failures_from_one_address_are_throttled_for_every_id_and_not_elsewhere(
        api: Api) -> None:
    budgets(api, per_address=4)
    caller = api.caller(ClientRole.OPERATOR)
    for i in range(4):  # unknown ids and malformed credentials spend the address's budget
        headers = basic_auth(f"jpki_{i:024x}", "s" * 43) if i % 2 else raw_basic(b"nonsense")
        api.problem(api.http.get(RESIDENT, headers=headers), 401, "auth.invalid_credentials")
    r = api.http.get(RESIDENT, headers=caller.headers)
    api.problem(r, 429, "auth.throttled")
    assert int(r.headers["retry-after"]) >= 1
    # No credentials: nothing to check, nothing throttled (the public routes stay open).
    assert api.http.get("/healthz").status_code == 200
    api.problem(api.http.get(RESIDENT), 401, "auth.required")
    # The same app seen from another address.
    elsewhere = TestClient(create_app(api.services.settings, services=api.services),
                           client=("192.0.2.10", 40000))
    assert elsewhere.get(RESIDENT, headers=caller.headers).status_code == 404
    elsewhere.close()


def test_throttled_calls_on_relying_party_routes_are_not_audited_one_by_one(api: Api) -> None:
    budgets(api, per_address=2)
    caller = api.caller(ClientRole.RP, "status")
    wrong = basic_auth(caller.client_id, "wrong" * 9)
    before = api.snapshot()
    for _ in range(2):
        api.problem(api.http.get(PING, headers=wrong), 401, "auth.invalid_credentials")
    for _ in range(20):
        api.problem(api.http.get(PING, headers=wrong), 429, "auth.throttled")
    new = api.unchanged(before, audited=frozenset({"rp.refused"}))
    assert [json.loads(r.payload)["code"] for r in new] == ["auth.invalid_credentials"] * 2


# --- credentials kept by each server process ----------------------------------------------------


def test_a_suspension_by_another_process_is_in_every_answer_within_a_second(
        database_url: str, tmp_path: Path, keystore: Any, ca_material: CaMaterial) -> None:
    """A server on the system clock, and a second instance of the services on its database — as
    `jpki rp suspend` or another worker is: what the other one changes reaches the server by its
    change feed (jpki.access.kept_clients), a suspension within a second, a rotated secret at
    once."""
    operator = Principal.local_operator("pytest")
    serving = build_services(make_settings(tmp_path / "serving", database_url), keys=keystore)
    other = build_services(make_settings(tmp_path / "other", database_url), keys=keystore)
    install_ca(serving, ca_material)
    try:
        made = other.relying_parties.register(
            authorize(operator, Operation.RP_REGISTER), name="RP", kind="platform_operator",
            purposes=["test"], scopes=["status"])
        rp_id, client_id = made.relying_party.id, made.client_id
        headers = basic_auth(client_id, made.client_secret)
        with served_in_thread(serving, free_port()) as url, \
                httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(5):  # kept, and the secret remembered: answered from memory
                assert http.get(PING, headers=headers).status_code == 200
            other.relying_parties.set_status(
                authorize(operator, Operation.RP_SET_STATUS), rp_id, ClientStatus.SUSPENDED)
            committed = time.monotonic()
            answers: list[tuple[float, int]] = []
            while not answers or answers[-1][0] < 1.5:
                started = time.monotonic() - committed
                answers.append((started, http.get(PING, headers=headers).status_code))
                time.sleep(0.02)
            # Every call begun a second after the suspension committed is refused.
            assert {code for at, code in answers if at >= 1.0} == {403}, answers

            other.relying_parties.set_status(
                authorize(operator, Operation.RP_SET_STATUS), rp_id, ClientStatus.ACTIVE)
            rotated = other.relying_parties.rotate_secret(
                authorize(operator, Operation.RP_ROTATE_SECRET), rp_id,
                overlap=timedelta(0))
            # The new secret matches nothing the server kept: it reads the row again, at once.
            r = http.get(PING, headers=basic_auth(client_id, rotated.client_secret))
            assert r.status_code == 200, r.text
    finally:
        for svc in (serving, other):
            svc.uow.engine.dispose()
            svc.read_engine.dispose()


def test_a_call_answered_from_memory_reads_nothing_and_checks_nothing_in_the_hsm(
        api: Api) -> None:
    caller = api.caller(ClientRole.RP, "status")
    kept = api.services.clients.kept
    # Later than every change so far, so that no poll from now on reports (and drops) the caller.
    api.services.clock.advance(seconds=10)
    kept.poll()
    assert api.http.get(PING, headers=caller.headers).status_code == 200
    reads: list[str] = []
    read, check = kept.read, api.services.clients.check
    kept.read = lambda cid: reads.append(cid) or read(cid)  # type: ignore[method-assign]
    api.services.clients.check = lambda cid, s: reads.append(cid) or check(cid, s)  # type: ignore[method-assign]
    for _ in range(3):
        assert api.http.get(PING, headers=caller.headers).status_code == 200
    assert reads == []
