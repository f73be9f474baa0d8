"""The relying parties' fast path (api.rp_fast): a remembered client's status and basic 4 calls
are answered before routing with exactly the route's answers, refusals and audit records, and
every call it cannot take goes the regular way with its body intact.

"The regular way" is observed by counting the calls the fast path hands to the routed app, and
"exactly the route's" by asking the routed app itself (``JpkiApp.routed``) the same question.
Both databases, the real HSM.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from api.app import JpkiApp
from jpki.access.authz import Operation, authorize
from jpki.model import ClientStatus
from tests.api.harness import Api, basic_auth
from tests.api.test_relying_parties import (
    BASIC4,
    STATUS,
    Rp,
    head,
    key_pool,
    keys,
    person,
    records,
    refused,
    register_rp,
    submit_consent,
)

pytestmark = pytest.mark.hsm
__all__ = ["key_pool", "keys"]  # the fixtures, shared


class Routed:
    """Counts the calls the fast path hands to the regular app."""

    def __init__(self, app: JpkiApp) -> None:
        self.paths: list[str] = []
        self._next = app.rp_fast.fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope["path"])
        await self._next(scope, receive, send)


@pytest.fixture
def routed(api: Api) -> Routed:
    app = api.http.app
    assert isinstance(app, JpkiApp)
    counter = Routed(app)
    app.rp_fast.fallback = counter
    return counter


@pytest.fixture
def router(api: Api) -> Iterator[TestClient]:
    """The same app, every request routed by FastAPI (no fast path)."""
    app = api.http.app
    assert isinstance(app, JpkiApp)
    client = TestClient(app.routed, raise_server_exceptions=True)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _kept_fresh_long(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory answers only while its last poll is recent (1 s), and each poll drops a client
    whose relying party changed in the feed's look-back (5 s) — a registration or a consent
    just made by the test. Both are jpki.access.kept_clients' own behaviour, tested there; on a
    loaded machine they sent these tests' calls the regular way at random. Here the tests poll
    when they say so (:func:`remembered`), and what is kept stays usable for a minute."""
    kept = api.services.clients.kept
    monkeypatch.setattr(kept, "_max_stale", 60.0)
    monkeypatch.setattr(kept, "_refresh", 60.0)


def remembered(api: Api, *rps: Rp) -> None:
    """Poll the client change feed now, then keep these relying parties' credentials as read
    after it (what a regular call after a poll does)."""
    kept = api.services.clients.kept
    kept.poll()
    for rp in rps:
        assert kept.read(rp.client_id) is not None


def send(client: TestClient, headers: dict[str, str], body: Any) -> httpx.Response:
    """POST /v1/status with ``body``: JSON, bytes, or a generator of chunks (no length)."""
    if callable(body):
        return client.post(STATUS, headers=headers, content=body())
    if isinstance(body, bytes):
        return client.post(STATUS, headers=headers, content=body)
    return client.post(STATUS, headers=headers, json=body)


def same_problem(fast: httpx.Response, slow: httpx.Response) -> None:
    assert (fast.status_code, fast.headers["content-type"]) == \
        (slow.status_code, slow.headers["content-type"])
    assert fast.json() == slow.json()


def test_a_remembered_clients_calls_skip_the_router_with_the_routes_answers(
        api: Api, routed: Routed, router: TestClient, keys: list[rsa.RSAPrivateKey],
        caplog: pytest.LogCaptureFixture) -> None:
    rp = register_rp(api)
    h = person(api, keys)
    first = submit_consent(api, rp, h)  # a new consent: verified on the regular path
    assert routed.paths == [BASIC4]
    standing = {"purpose": "test", "consent_id": first["consent_id"]}
    serials = [h.serial(), "7fffffffffffffff0001", h.serial().upper()]
    status = {"purpose": "test", "serials": serials}

    since = head(api)
    caplog.clear()
    remembered(api, rp)
    fast_b4 = api.http.post(BASIC4, headers=rp.headers, json=standing)
    remembered(api, rp)
    fast_st = api.http.post(STATUS, headers=rp.headers, json=status)
    assert routed.paths == [BASIC4]  # neither went through the router
    slow_b4 = router.post(BASIC4, headers=rp.headers, json=standing)
    slow_st = router.post(STATUS, headers=rp.headers, json=status)
    for fast, slow in ((fast_b4, slow_b4), (fast_st, slow_st)):
        assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
        assert fast.headers["content-type"] == slow.headers["content-type"]
    assert fast_b4.content == slow_b4.content  # byte for byte
    assert {**fast_st.json(), "produced_at": None} == {**slow_st.json(), "produced_at": None}
    assert [r["status"] for r in fast_st.json()["results"]] == ["good", "unknown", "good"]

    # The same audit records; the fast path's under their requests' ids (the router alone
    # is not wrapped by the request log that binds one).
    audited = records(api, since)
    assert [r.action for r in audited] == ["basic4.provided", "rp.status"] * 2
    assert audited[0].payload == audited[2].payload and audited[1].payload == audited[3].payload
    assert audited[0].request_id == fast_b4.headers["x-request-id"]

    # The request log names the route template and the client, as for any routed call.
    lines = [getattr(r, "fields", {}) for r in caplog.records if r.name == "jpki.request"]
    assert [(x["method"], x["route"], x["status"], x["client"]) for x in lines[:2]] == [
        ("POST", BASIC4, 200, f"client:{rp.client_id}"),
        ("POST", STATUS, 200, f"client:{rp.client_id}")]
    assert fast_st.headers["x-request-id"] == audited[1].request_id


def test_calls_the_fast_path_cannot_answer_go_the_regular_way_with_their_body(
        api: Api, routed: Routed, router: TestClient) -> None:
    rp = register_rp(api, scopes=("status",))
    ok = {"purpose": "test", "serials": ["12"]}
    # Not yet remembered: the regular path checks the secret, and remembers it.
    assert api.http.post(STATUS, headers=rp.headers, json=ok).status_code == 200
    assert routed.paths == [STATUS]
    remembered(api, rp)
    assert api.http.post(STATUS, headers=rp.headers, json=ok).status_code == 200
    assert routed.paths == [STATUS]

    big = json.dumps({"purpose": "test", "serials": ["1" * 60] * 2000}).encode()
    assert len(big) > api.services.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:  # no content-length: the limit found while reading
        yield big[:40_000]
        yield big[40_000:]

    json_type = {"content-type": "application/json"}
    cases: list[tuple[str, dict[str, str], Any, int, str]] = [
        ("wrong secret", basic_auth(rp.client_id, "wrong"), ok, 401, "auth.invalid_credentials"),
        ("unknown client", basic_auth("jpki_" + "a" * 22, "x"), ok, 401,
         "auth.invalid_credentials"),
        ("no credentials", {}, ok, 401, "auth.required"),
        ("not JSON", {**rp.headers, "content-type": "text/plain"}, b'{"purpose":"test"}', 415,
         "request.unsupported_media_type"),
        ("malformed", {**rp.headers, **json_type}, b'{"purpose": "te', 400,
         "request.malformed"),
        ("an unknown field", rp.headers, {**ok, "extra": 1}, 422, "request.invalid"),
        ("a coerced type", rp.headers, {"purpose": "test", "serials": [12]}, 422,
         "request.invalid"),
        ("over the limit", {**rp.headers, **json_type}, big, 413, "request.too_large"),
        ("chunked over the limit", {**rp.headers, **json_type}, chunks, 413,
         "request.too_large"),
    ]
    for name, headers, body, status, code in cases:
        seen = len(routed.paths)
        before = api.snapshot()
        fast = send(api.http, headers, body)
        assert routed.paths[seen:] == [STATUS], name
        refused(api, fast, status, code, before)  # the problem, and its audit record
        same_problem(fast, send(router, headers, body))


def test_refusals_after_admission_are_the_routes_own(
        api: Api, routed: Routed, router: TestClient) -> None:
    rp = register_rp(api, scopes=("status",))
    ok = {"purpose": "test", "serials": ["12"]}
    assert api.http.post(STATUS, headers=rp.headers, json=ok).status_code == 200
    routed.paths.clear()
    unknown = {"purpose": "test", "consent_id": "cs_" + "0" * 24}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (BASIC4, unknown, 403, "auth.scope_missing"),
        (STATUS, {"purpose": "marketing", "serials": ["12"]}, 403, "rp.purpose_undeclared"),
        (STATUS, {"purpose": "test", "serials": []}, 400, "status.batch_empty"),
        (STATUS, {"purpose": "test", "serials": ["12", "xyz"]}, 400, "serial.invalid"),
    ]
    for path, body, status, code in cases:
        before = api.snapshot()
        remembered(api, rp)
        fast = api.http.post(path, headers=rp.headers, json=body)
        refused(api, fast, status, code, before)
        (record,) = records(api, before["audit_head"][0])
        assert record.actor == f"client:{rp.client_id}" and record.subject == f"POST {path}"
        assert json.loads(record.payload)["relying_party"] == rp.id
        same_problem(fast, router.post(path, headers=rp.headers, json=body))
    assert routed.paths == []

    # A consent the relying party has no standing consent under: the service's refusal.
    both = register_rp(api, scopes=("status", "basic4"))
    assert api.http.post(STATUS, headers=both.headers, json=ok).status_code == 200
    routed.paths.clear()
    before = api.snapshot()
    remembered(api, both)
    fast = api.http.post(BASIC4, headers=both.headers, json=unknown)
    assert routed.paths == []
    refused(api, fast, fast.status_code, fast.json()["code"], before)
    assert fast.status_code == 404
    same_problem(fast, router.post(BASIC4, headers=both.headers, json=unknown))

    # Suspended: the kept credentials say so at once, and the regular path refuses it.
    api.services.relying_parties.set_status(
        authorize(api.operator, Operation.RP_SET_STATUS), both.id, ClientStatus.SUSPENDED)
    before = api.snapshot()
    fast = api.http.post(STATUS, headers=both.headers, json=ok)
    refused(api, fast, 403, fast.json()["code"], before)
    same_problem(fast, router.post(STATUS, headers=both.headers, json=ok))


def test_the_fast_path_logs_an_unexpected_error_by_type_only(
        api: Api, routed: Routed, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rp = register_rp(api, scopes=("status",))
    ok = {"purpose": "test", "serials": ["12"]}
    assert api.http.post(STATUS, headers=rp.headers, json=ok).status_code == 200

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret detail 東京都")

    monkeypatch.setattr(api.services.status_lookup, "lookup_from_memory", broken)
    caplog.clear()
    remembered(api, rp)
    r = api.http.post(STATUS, headers=rp.headers, json=ok)
    assert (r.status_code, r.json()["code"]) == (500, "internal")
    assert routed.paths == [STATUS]  # only the first call
    messages = [x.getMessage() for x in caplog.records if x.levelno >= logging.ERROR]
    assert messages == ["unexpected RuntimeError in POST /v1/status"]
