"""Authentication and authorisation of every route, by principal kind, scope and municipality.

The matrix is generated from the table of jpki.access.authz: each route names its operation (the
dependency api.deps.authorized, or admitted for a relying party's calls), the table says which
kinds of principal may make it with which scope, and every route is called as every kind of API
client. A route that names no operation must be declared public or holder-signed below, so a new
route cannot be served without deciding who may call it; each authorised route also needs a probe
(a call that changes nothing), so it cannot be served untested.
"""

from __future__ import annotations

import base64
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.params import Depends as DependsParam

from api.app import create_app
from api.deps import authorized, operations_of
from jpki.access.authz import TABLE, MunicipalityRule, Operation, authorize
from jpki.access.principals import CLIENT_KINDS, PrincipalKind
from jpki.model import ClientRole, ClientStatus
from tests.api.harness import ADULT, IN_PERSON_B, OTHER, Api
from tests.api.harness import basic_auth as basic

OPERATOR, STATION, CALLCENTER, RP = (ClientRole.OPERATOR, ClientRole.STATION,
                                     ClientRole.CALLCENTER, ClientRole.RP)
KIOSK, HOLDER_APP = ClientRole.KIOSK, ClientRole.HOLDER_APP

# Served to anyone: health, the API description, and the CA certificates that certificates point
# at (RFC 5280 §4.2.2.1 caIssuers).
PUBLIC = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json"), ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"), ("GET", "/ca/{ca}/g{generation}.cer"),
    # Revocation information is public by design: relying parties' software fetches the URLs
    # written into certificates (RFC 5280 §4.2.1.13). /ocsp is served before routing.
    ("GET", "/crl/{ca}/g{generation}/{name}"),
}

# The holder's phone: no client credentials — each request is a CMS SignedData made with the
# card's or the phone's own key, and that signature is the authorisation (jpki.mobile.service,
# which asks the table for the holder's grant).
HOLDER_SIGNED = {
    ("POST", "/v1/mobile/applications"), ("POST", "/v1/mobile/revocations"),
    ("POST", "/v1/mobile/suspension-lifts"), ("POST", "/v1/mobile/check-ins"),
    # The holder withdraws a consent to the latest basic 4 information
    # (jpki.relying_parties.consents).
    ("POST", "/v1/consents/withdrawals"),
}
# …and the challenge those requests sign, which anyone may ask for (single use, minutes).
CHALLENGE = ("POST", "/v1/mobile/challenges")
# The operator console's pages (api.console.pages): a person's session, not API credentials; each
# page authorises its operations against this same table as the signed-in person's principal,
# and tests/api/console/ holds every page to it (by role and by municipality).
CONSOLE = {
    ("GET", "/console/"), ("GET", "/console/login"), ("POST", "/console/login"),
    ("GET", "/console/login/code"), ("POST", "/console/login/code"),
    ("POST", "/console/logout"), ("GET", "/console/residents"),
    ("POST", "/console/residents/search"), ("GET", "/console/residents/new"),
    ("POST", "/console/residents/new"), ("POST", "/console/residents/events"),
    ("GET", "/console/callcentre"), ("POST", "/console/callcentre"),
    ("POST", "/console/callcentre/phone-hold"), ("POST", "/console/callcentre/card-lost"),
    ("GET", "/console/dashboard"), ("GET", "/console/dashboard/{name}.csv"),
    ("POST", "/console/residents/dv-request"), ("GET", "/console/dv"),
    ("POST", "/console/dv/decide"), ("GET", "/console/admin"), ("POST", "/console/admin/accounts"),
    ("POST", "/console/admin/accounts/status"), ("POST", "/console/admin/stations/status"),
    ("POST", "/console/admin/kiosks/status"),
    ("POST", "/console/admin/relying-parties/status"), ("POST", "/console/residents/card-event"),
    ("POST", "/console/residents/revoke"), ("GET", "/console/station-tasks/new"),
    ("POST", "/console/station-tasks"), ("GET", "/console/station-tasks/{task_id}"),
    ("POST", "/console/station-tasks/{task_id}/cancel"), ("GET", "/console/mobile-sweeps"),
    ("GET", "/console/counter/proofing"),
    ("POST", "/console/counter/delivery"), ("POST", "/console/counter/abandonment"),
    ("POST", "/console/counter/card"),
}
UNAUTHORISED = PUBLIC | HOLDER_SIGNED | {CHALLENGE} | CONSOLE

# Identifiers that exist nowhere, so that an allowed caller gets a precise "not found" and nothing
# is ever changed by the matrix.
NO_RESIDENT = "0" * 32
NO_SERIAL = "7fffffffffffffff0000"
NO_CARD = "NOSUCHCARD0000"
NO_PROOFING = "0" * 32
COUNTER_ROUTES = {("POST", "/v1/stations/proofings"), ("POST", "/v1/stations/pin-resets"),
                  ("POST", "/v1/stations/certificates/{serial}/delivery"),
                  ("POST", "/v1/stations/certificates/{serial}/abandonment")}
UNREGISTERED_MUNICIPALITY = "139998"  # Tokyo, valid check digit, not in the seed
KIYOSE = "132217"
NO_CONSENT = "cs_" + "0" * 24
NO_RP = "rp_" + "0" * 16
RP_SCOPES = ("basic4", "linkage", "status")  # what the matrix's relying party may do
# Refusals on the relying-party routes are audited (api.rp_audit), and so are the refused
# requests of the signing-password reset (jpki.pin_reset); nothing else may change.
RP_AUDITED = frozenset({"rp.refused", "pin_reset.refused"})
NO_CHALLENGE = base64.b64encode(bytes(32)).decode()


@dataclass(frozen=True)
class Probe:
    path: str  # the concrete path to call
    body: dict[str, Any] | None
    # What an allowed caller gets for these non-existent targets: a problem (status, code), or
    # (200, None) for the calls that answer about nothing in particular without changing
    # anything (a status lookup of an unknown serial, a listing, a ping).
    answer: tuple[int, str | None]


def probes(key: bytes) -> dict[tuple[str, str], Probe]:
    """A call of each authorised route that changes nothing, whoever makes it."""
    pem = key.decode("ascii")
    return {
        ("POST", "/v1/operators/residents"): Probe(
            "/v1/operators/residents", {**ADULT, "municipality_code": UNREGISTERED_MUNICIPALITY},
            (404, "municipality.not_found")),
        ("GET", "/v1/operators/residents/{resident_id}"): Probe(
            f"/v1/operators/residents/{NO_RESIDENT}", None, (404, "resident.not_found")),
        ("POST", "/v1/operators/resident-searches"): Probe(
            "/v1/operators/resident-searches", {"name": "誰 もいない", "birth_date": "1901-01-01"},
            (200, None)),
        ("POST", "/v1/operators/residents/{resident_id}/events"): Probe(
            f"/v1/operators/residents/{NO_RESIDENT}/events", {"kind": "death"},
            (404, "resident.not_found")),
        ("POST", "/v1/operators/residents/{resident_id}/dv-requests"): Probe(
            f"/v1/operators/residents/{NO_RESIDENT}/dv-requests",
            {"turn_on": True, "category": "dv"}, (404, "resident.not_found")),
        ("GET", "/v1/operators/dv-requests"): Probe("/v1/operators/dv-requests", None,
                                                    (200, None)),
        ("POST", "/v1/operators/dv-requests/{request_id}/decision"): Probe(
            f"/v1/operators/dv-requests/{NO_RESIDENT}/decision", {"approve": False},
            (404, "not_found")),
        ("POST", "/v1/operators/station-tasks"): Probe(
            "/v1/operators/station-tasks",
            {"resident_id": NO_RESIDENT, "station": "jpki_" + "0" * 24, "kind": "issue",
             "proofing": {"presence": "in_person",
                          "applicant_documents": [{"type": "my_number_card"}],
                          "measures": ["pin_entry"]}}, (404, "resident.not_found")),
        ("GET", "/v1/operators/station-tasks/{task_id}"): Probe(
            f"/v1/operators/station-tasks/{NO_RESIDENT}", None, (404, "station_task.not_found")),
        ("POST", "/v1/operators/station-tasks/{task_id}/cancellation"): Probe(
            f"/v1/operators/station-tasks/{NO_RESIDENT}/cancellation", None,
            (404, "station_task.not_found")),
        # A station with nothing queued: 204, nothing claimed.
        ("POST", "/v1/stations/task-claims"): Probe("/v1/stations/task-claims", None,
                                                    (204, None)),
        ("POST", "/v1/stations/tasks/{task_id}/reports"): Probe(
            f"/v1/stations/tasks/{NO_RESIDENT}/reports", {"step": "keygen"},
            (404, "station_task.not_found")),
        ("POST", "/v1/operators/cards"): Probe(
            "/v1/operators/cards", {"resident_id": NO_RESIDENT}, (404, "resident.not_found")),
        ("POST", "/v1/operators/cards/{number}/events"): Probe(
            f"/v1/operators/cards/{NO_CARD}/events", {"kind": "lost"}, (404, "card.not_found")),
        ("POST", "/v1/stations/certificates"): Probe(
            "/v1/stations/certificates", {"resident_id": NO_RESIDENT, "auth_public_key": pem},
            (404, "resident.not_found")),
        # An allowed caller's batch of one order for nobody: 200, the order refused (404) alone.
        ("POST", "/v1/stations/certificate-batches"): Probe(
            "/v1/stations/certificate-batches",
            {"orders": [{"resident_id": NO_RESIDENT, "auth_public_key": pem}]}, (200, None)),
        ("POST", "/v1/stations/renewals"): Probe(
            "/v1/stations/renewals", {"resident_id": NO_RESIDENT, "auth_public_key": pem},
            (404, "resident.not_found")),
        ("POST", "/v1/operators/certificates/{serial}/revocation"): Probe(
            f"/v1/operators/certificates/{NO_SERIAL}/revocation", {"reason": "keyCompromise"},
            (404, "certificate.not_found")),
        ("GET", "/v1/certificates/{serial}"): Probe(
            f"/v1/certificates/{NO_SERIAL}", None, (404, "certificate.not_found")),
        ("POST", "/v1/stations/proofings"): Probe(
            "/v1/stations/proofings", {"resident_id": NO_RESIDENT, **IN_PERSON_B},
            (404, "resident.not_found")),
        ("POST", "/v1/stations/pin-resets"): Probe(
            "/v1/stations/pin-resets",
            {"resident_id": NO_RESIDENT, "pin": "sign", "proofing_id": NO_PROOFING},
            (404, "resident.not_found")),
        ("POST", "/v1/stations/certificates/{serial}/delivery"): Probe(
            f"/v1/stations/certificates/{NO_SERIAL}/delivery", None,
            (404, "certificate.not_found")),
        ("POST", "/v1/stations/certificates/{serial}/abandonment"): Probe(
            f"/v1/stations/certificates/{NO_SERIAL}/abandonment", None,
            (404, "certificate.not_found")),
        ("POST", "/v1/callcenter/holds"): Probe(
            "/v1/callcenter/holds", {"resident_id": NO_RESIDENT}, (404, "resident.not_found")),
        ("POST", "/v1/callcenter/certificates/{serial}/hold"): Probe(
            f"/v1/callcenter/certificates/{NO_SERIAL}/hold", None,
            (404, "certificate.not_found")),
        ("POST", "/v1/operators/relying-parties"): Probe(
            "/v1/operators/relying-parties",
            {"name": "Matrix SP", "kind": "service_provider", "parent_id": NO_RP,
             "purposes": ["test"], "scopes": ["status"]}, (404, "rp.not_found")),
        ("GET", "/v1/operators/relying-parties"): Probe(
            "/v1/operators/relying-parties", None, (200, None)),
        ("POST", "/v1/operators/relying-parties/{rp_id}/secret-rotations"): Probe(
            f"/v1/operators/relying-parties/{NO_RP}/secret-rotations", {},
            (404, "rp.not_found")),
        ("POST", "/v1/operators/relying-parties/{rp_id}/status"): Probe(
            f"/v1/operators/relying-parties/{NO_RP}/status", {"status": "suspended"},
            (404, "rp.not_found")),
        ("GET", "/v1/rp/ping"): Probe("/v1/rp/ping", None, (200, None)),
        ("GET", "/v1/operators/statistics"): Probe(
            "/v1/operators/statistics?days=1", None, (200, None)),
        ("POST", "/v1/status"): Probe(
            "/v1/status", {"purpose": "test", "serials": [NO_SERIAL]}, (200, None)),
        ("POST", "/v1/linkage"): Probe(
            "/v1/linkage", {"purpose": "test", "serial": NO_SERIAL, "consent_id": NO_CONSENT},
            (404, "consent.not_found")),
        ("POST", "/v1/basic4"): Probe(
            "/v1/basic4", {"purpose": "test", "consent_id": NO_CONSENT},
            (404, "consent.not_found")),
        ("GET", "/metrics"): Probe("/metrics", None, (200, None)),
        ("GET", "/v1/operators/jobs"): Probe("/v1/operators/jobs", None, (200, None)),
        ("GET", "/v1/operators/municipalities"): Probe(
            "/v1/operators/municipalities", None, (200, None)),
        ("GET", "/v1/operators/municipalities/{code}"): Probe(
            f"/v1/operators/municipalities/{UNREGISTERED_MUNICIPALITY}", None,
            (404, "municipality.not_found")),
        ("POST", "/v1/operators/municipalities"): Probe(
            "/v1/operators/municipalities",
            {"code": KIYOSE, "name_ja": "清瀬市", "name_romaji": "Kiyose-shi"},
            (409, "municipality.exists")),
        ("POST", "/v1/operators/municipalities/{code}/rename"): Probe(
            f"/v1/operators/municipalities/{UNREGISTERED_MUNICIPALITY}/rename",
            {"name_romaji": "Matrix-shi"}, (404, "municipality.not_found")),
        ("POST", "/v1/operators/municipalities/{code}/merge"): Probe(
            f"/v1/operators/municipalities/{UNREGISTERED_MUNICIPALITY}/merge",
            {"into": KIYOSE}, (404, "municipality.not_found")),
        ("GET", "/v1/operators/mobile/sweeps"): Probe("/v1/operators/mobile/sweeps", None,
                                                      (200, None)),
        ("GET", "/v1/operators/mobile/sweeps/{sweep_id}"): Probe(
            f"/v1/operators/mobile/sweeps/{'0' * 32}", None, (404, "mobile.sweep_not_found")),
        # The signing-password reset (architecture §7.1): a challenge changes nothing the
        # snapshot holds (single use, minutes); a request with a challenge the CA never gave is
        # refused (and audited, without personal data); an unknown reset is closed.
        ("POST", "/v1/holder-app/challenges"): Probe("/v1/holder-app/challenges", None,
                                                     (201, None)),
        ("POST", "/v1/holder-app/online-passwords"): Probe(
            "/v1/holder-app/online-passwords",
            {"challenge": NO_CHALLENGE, "auth_certificate": NO_CHALLENGE,
             "auth_signature": NO_CHALLENGE, "assertion": NO_CHALLENGE,
             "assertion_signature": NO_CHALLENGE}, (400, "pin_reset.challenge_invalid")),
        ("POST", "/v1/kiosk/challenges"): Probe("/v1/kiosk/challenges", None, (201, None)),
        ("POST", "/v1/kiosk/resets"): Probe(
            "/v1/kiosk/resets",
            {"challenge": NO_CHALLENGE, "auth_certificate": NO_CHALLENGE,
             "auth_signature": NO_CHALLENGE, "online_password": "ABCD-EFGH-JKMN",
             "card_challenge": NO_CHALLENGE}, (400, "pin_reset.challenge_invalid")),
        ("POST", "/v1/kiosk/resets/{reset_id}/result"): Probe(
            f"/v1/kiosk/resets/{NO_RESIDENT}/result", {"outcome": "done"},
            (409, "pin_reset.reset_closed")),
        ("POST", "/v1/kiosk/card-refusals"): Probe(
            "/v1/kiosk/card-refusals", {"challenge": NO_CHALLENGE, "code": "card.wrong_pin"},
            (400, "pin_reset.challenge_invalid")),
        # An export is audited: a municipality that does not exist is refused before that.
        ("GET", "/v1/operators/notices/expiry"): Probe(
            f"/v1/operators/notices/expiry?municipality={UNREGISTERED_MUNICIPALITY}"
            "&from=2027-01-01&to=2027-04-01", None, (404, "municipality.not_found")),
    }


def served_routes(app: FastAPI) -> Iterator[tuple[str, str, Any]]:
    """(method, path template, route) of every route the app serves, included routers
    flattened."""
    try:  # FastAPI ≥ 0.160 keeps included routers as lazily expanded entries
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI lists the routes themselves
        contexts: Any = app.routes
    else:
        contexts = iter_route_contexts(app.routes)
    for route in contexts:
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                yield method, route.path, route


def route_operations(app: FastAPI) -> dict[tuple[str, str], set[Operation]]:
    """The operations each served route's dependencies authorise (none for a public route)."""
    return {(method, path): operations_of(route.dependant) if hasattr(route, "dependant")
            else set() for method, path, route in served_routes(app)}


def undecided(operations: dict[tuple[str, str], set[Operation]]) -> set[tuple[str, str]]:
    """Routes that neither authorise exactly one operation of the table nor are declared
    public or holder-signed."""
    return {route for route, ops in operations.items()
            if (len(ops) != 1 or not ops <= set(TABLE)) and route not in UNAUTHORISED}


def declared_operations(endpoint: Any) -> set[Operation]:
    """The operations an endpoint's parameters are typed with (Grant[Literal[...]] or
    RpContext[Literal[...]]), which the service it calls holds its grant to."""
    found = set()
    for hint in typing.get_type_hints(endpoint, include_extras=True).values():
        if typing.get_origin(hint) is typing.Annotated:
            wrapped, *metadata = typing.get_args(hint)
            if any(isinstance(m, DependsParam) for m in metadata):
                for arg in typing.get_args(wrapped):
                    found |= set(typing.get_args(arg))
    return found


def test_every_route_has_an_authorisation_entry(api: Api, subject_keys: list[bytes]) -> None:
    app = create_app(api.services.settings, services=api.services)
    operations = route_operations(app)
    served = set(operations)

    assert undecided(operations) == set(), "routes without an operation of the table"
    assert served >= UNAUTHORISED
    assert all(operations[r] == set() for r in UNAUTHORISED), "declared public, yet authorised"
    authorised = served - UNAUTHORISED
    assert set(probes(subject_keys[0])) == authorised, "every authorised route needs a probe"
    # The table has an entry for every operation, and names a kind for each.
    assert set(TABLE) == set(Operation) and all(rule.kinds for rule in TABLE.values())
    # The counter's routes are served, so the checks above hold them to the table too.
    assert served >= COUNTER_ROUTES
    # Each route's dependency decides the operation its grant parameter is typed with (which the
    # service then requires).
    for method, path, route in served_routes(app):
        if (method, path) in authorised:
            assert declared_operations(route.endpoint) == operations[(method, path)], path
    # ... and the check can fail: a route added without an operation is reported, and so is
    # one that authorises two.
    extra = FastAPI()
    extra.add_api_route("/v1/new", lambda: None, methods=["POST"])
    extra.add_api_route("/v1/double", lambda: None, methods=["GET"],
                        dependencies=[Depends(authorized(Operation.RP_READ)),
                                      Depends(authorized(Operation.RP_REGISTER))])
    assert undecided({**operations, **route_operations(extra)}) == \
        {("POST", "/v1/new"), ("GET", "/v1/double")}
    # Cross-check the enumeration against the published description of the API, which also
    # describes /ocsp (anonymous, served before routing: api.ocsp_http).
    described = {(m.upper(), p) for p, ops in api.http.get("/openapi.json").json()["paths"].items()
                 for m in ops}
    assert described <= served | {("POST", "/ocsp"), ("GET", "/ocsp/{request}")}


def test_no_principal_kind_is_a_wildcard() -> None:
    """Every kind is refused something, and the kinds that are not API clients (the holder, the
    CLI's local operator, the maintenance jobs) are reached by no route's credentials."""
    for kind in PrincipalKind:
        assert any(kind not in rule.kinds for rule in TABLE.values()), kind
    assert set(PrincipalKind) - CLIENT_KINDS == {PrincipalKind.HOLDER,
                                                 PrincipalKind.LOCAL_OPERATOR,
                                                 PrincipalKind.SYSTEM_JOB}


def _client_kinds(api: Api) -> dict[PrincipalKind, dict[str, str]]:
    """Credentials of an API client of every kind (the relying party with every scope; the post
    office designated by Kiyose, which it must be to exist at all)."""
    return {
        PrincipalKind.OPERATOR: api.caller(OPERATOR).headers,
        PrincipalKind.STATION: api.caller(STATION).headers,
        PrincipalKind.POST_OFFICE: api.caller(STATION, f"municipality:{KIYOSE}",
                                              station_kind="post_office").headers,
        PrincipalKind.CALL_CENTRE: api.caller(CALLCENTER).headers,
        PrincipalKind.RELYING_PARTY: api.caller(RP, *RP_SCOPES).headers,
        PrincipalKind.KIOSK: api.caller(KIOSK, "chain:matrix").headers,
        PrincipalKind.HOLDER_APP: api.caller(HOLDER_APP).headers,
    }


def test_authorisation_matrix(api: Api, subject_keys: list[bytes]) -> None:
    """Every route × every kind of caller: 401, 403 or the answer of an allowed caller, as the
    table says."""
    api.remember(ADULT)
    app = create_app(api.services.settings, services=api.services)
    operations = route_operations(app)
    kinds = _client_kinds(api)
    assert set(kinds) == CLIENT_KINDS
    suspended = api.caller(OPERATOR, "municipality:132217")
    api.services.clients.set_status(authorize(api.operator, Operation.CLIENT_SET_STATUS),
                                    suspended.client_id, ClientStatus.SUSPENDED)
    wrong = basic(api.caller(OPERATOR).client_id, "not-the-secret")
    refused: dict[str, tuple[dict[str, str], tuple[int, str]]] = {
        "no credentials": ({}, (401, "auth.required")),
        "wrong secret": (wrong, (401, "auth.invalid_credentials")),
        "unknown client": (basic("jpki_000000000000000000000000", "x" * 43),
                           (401, "auth.invalid_credentials")),
        "suspended operator": (suspended.headers, (403, "auth.client_suspended")),
    }
    before = api.snapshot()
    failures = []
    calls = 0
    for route, probe in probes(subject_keys[0]).items():
        (operation,) = operations[route]
        expected_by: dict[str, tuple[dict[str, str], tuple[int, str | None]]] = {
            **refused,
            **{kind.value: (headers, probe.answer if kind in TABLE[operation].kinds
                            else (403, "auth.role_forbidden"))
               for kind, headers in kinds.items()}}
        for who, (headers, expected) in expected_by.items():
            r = api.http.request(route[0], probe.path, json=probe.body, headers=headers)
            calls += 1
            try:
                if expected[1] is None:
                    assert r.status_code == expected[0], r.text
                else:
                    api.problem(r, expected[0], expected[1])
            except AssertionError as exc:
                failures.append(f"{route[0]} {route[1]} ({operation}) as {who}: {exc}")
    assert not failures, "\n".join(failures)
    assert calls == len(probes(subject_keys[0])) * (len(refused) + len(CLIENT_KINDS))
    # Refused relying-party calls are audited; the successful ones (status, ping) leave their
    # own records, and so does a resident search (that it was made, not what it asked);
    # nothing else changes.
    api.unchanged(before, audited=RP_AUDITED | {"rp.status", "resident.searched"})


def test_scopes_and_municipality_rules_of_the_table(api: Api, subject_keys: list[bytes]) -> None:
    """The table's other columns, route by route: a relying party without the operation's scope
    is refused it; an operator scoped to a municipality is refused the national operations."""
    app = create_app(api.services.settings, services=api.services)
    operations = route_operations(app)
    kiyose_operator = api.caller(OPERATOR, f"municipality:{KIYOSE}").headers
    lacking = {scope: api.caller(RP, *(s for s in RP_SCOPES if s != scope)).headers
               for scope in RP_SCOPES}
    before = api.snapshot()
    checked = {"scope": 0, "national": 0}
    for route, probe in probes(subject_keys[0]).items():
        (operation,) = operations[route]
        rule = TABLE[operation]
        if rule.scope is not None:
            r = api.http.request(route[0], probe.path, json=probe.body,
                                 headers=lacking[rule.scope])
            body = api.problem(r, 403, "auth.scope_missing")
            assert body["context"] == {"scope": rule.scope}, route
            checked["scope"] += 1
        if rule.municipality is MunicipalityRule.NATIONAL:
            r = api.http.request(route[0], probe.path, json=probe.body, headers=kiyose_operator)
            body = api.problem(r, 403, "auth.scope_missing")
            assert body["context"] == {"scope": "national"}, route
            checked["national"] += 1
    # Three scoped calls (status, linkage, basic4) and twelve national ones (relying parties,
    # the national statistics, the decisions on DV support measures, the mobile sweep's reports,
    # adding, renaming and merging municipalities).
    assert checked == {"scope": 3, "national": 12}
    api.unchanged(before, audited=RP_AUDITED)


def test_holder_signed_routes_refuse_anything_but_a_valid_signature(api: Api) -> None:
    """Client credentials neither help nor are needed: only a verifying CMS signature does."""
    for _, path in sorted(HOLDER_SIGNED):
        for headers in ({}, api.op, api.station):
            r = api.http.post(path, headers=headers, json={"signed_data": "MIIBAAAA" * 4})
            api.problem(r, 400, "cms.invalid")
        api.problem(api.http.post(path, json={}), 422, "request.invalid")
    r = api.http.post("/v1/mobile/challenges", json={"purpose": "application"})
    assert r.status_code == 201 and r.json()["challenge"]


def test_public_routes_need_no_credentials(api: Api) -> None:
    for path in ("/healthz", "/openapi.json", "/docs", "/redoc", "/ca/sign/g01.cer",
                 "/ca/auth/g01.cer"):
        assert api.http.get(path).status_code == 200, path


def test_credentials_are_checked_before_the_body(api: Api) -> None:
    """Whoever may not call a route learns nothing from it about their request body."""
    api.remember(ADULT)
    invalid = {**ADULT, "sex": 9, "surplus": True}
    api.problem(api.http.post("/v1/operators/residents", json=invalid), 401, "auth.required")
    api.problem(api.http.post("/v1/operators/residents", json=invalid,
                              headers=api.caller(CALLCENTER).headers), 403, "auth.role_forbidden")
    api.problem(api.http.post("/v1/stations/certificates", json={"resident_id": NO_RESIDENT},
                              headers=api.caller(RP).headers), 403, "auth.role_forbidden")
    api.problem(api.http.post("/v1/stations/proofings", json={"presence": "by_carrier_pigeon"},
                              headers=api.caller(OPERATOR).headers), 403, "auth.role_forbidden")


def test_malformed_credentials_are_401(api: Api) -> None:
    caller = api.caller(OPERATOR)
    path = f"/v1/operators/residents/{NO_RESIDENT}"
    cases = {
        "bearer token": {"Authorization": f"Bearer {caller.secret}"},
        "empty basic": {"Authorization": "Basic "},
        "not base64": {"Authorization": "Basic ***"},
        "no colon": {"Authorization": "Basic " + base64.b64encode(b"jpki_abc").decode()},
        "empty secret": basic(caller.client_id, ""),
        "not utf-8": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
        "overlong id": basic("x" * 65, caller.secret),
    }
    for name, headers in cases.items():
        r = api.http.get(path, headers=headers)
        body = api.problem(r, 401, "auth.invalid_credentials")
        assert caller.secret not in r.text, name
        assert body["status"] == 401, name


def test_suspension_takes_effect_at_once_and_can_be_lifted(api: Api) -> None:
    caller = api.caller(STATION)
    path = f"/v1/operators/residents/{NO_RESIDENT}"
    api.problem(api.http.get(path, headers=caller.headers), 404, "resident.not_found")

    api.services.clients.set_status(
        authorize(api.operator, Operation.CLIENT_SET_STATUS),
        caller.client_id, ClientStatus.SUSPENDED)
    api.problem(api.http.get(path, headers=caller.headers), 403, "auth.client_suspended")

    api.services.clients.set_status(
        authorize(api.operator, Operation.CLIENT_SET_STATUS), caller.client_id, ClientStatus.ACTIVE)
    api.problem(api.http.get(path, headers=caller.headers), 404, "resident.not_found")


# --- municipality scopes ---------------------------------------------------------------------


def test_operator_scoped_to_another_municipality_is_refused(
        api: Api, subject_keys: list[bytes]) -> None:
    kiyose = api.register(ADULT)  # 132217
    issued = api.issue(kiyose, sign=subject_keys[0], auth=subject_keys[1])
    serial, number = issued["certificates"][0]["serial"], issued["card_number"]
    chiyoda = api.caller(OPERATOR, "municipality:131016").headers

    before = api.snapshot()
    refused = [
        api.http.get(f"/v1/operators/residents/{kiyose}", headers=chiyoda),
        api.http.post(f"/v1/operators/residents/{kiyose}/events", headers=chiyoda,
                      json={"kind": "address", "address": OTHER["address"]}),
        api.http.post(f"/v1/operators/certificates/{serial}/revocation", headers=chiyoda,
                      json={"reason": "keyCompromise"}),
        api.http.get(f"/v1/certificates/{serial}", headers=chiyoda),
        api.http.post(f"/v1/operators/cards/{number}/events", headers=chiyoda,
                      json={"kind": "lost"}),
        api.http.post("/v1/operators/cards", headers=chiyoda, json={"resident_id": kiyose}),
        api.http.post("/v1/operators/residents", headers=chiyoda, json=ADULT),
    ]
    for r in refused:
        body = api.problem(r, 403, "auth.scope_missing")
        assert body["context"] == {"scope": "municipality:132217"}
    api.unchanged(before)

    # The same client acts on its own municipality.
    api.remember(OTHER)
    mine = api.http.post("/v1/operators/residents", headers=chiyoda, json=OTHER)
    assert mine.status_code == 201, mine.text
    got = api.http.get(f"/v1/operators/residents/{mine.json()['id']}", headers=chiyoda)
    assert got.status_code == 200 and got.json()["municipality_code"] == "131016"


def test_station_scoped_to_another_municipality_is_refused(
        api: Api, subject_keys: list[bytes]) -> None:
    kiyose = api.register(ADULT)
    issued = api.issue(kiyose, auth=subject_keys[0])
    serial = issued["certificates"][0]["serial"]
    chiyoda = api.caller(STATION, "municipality:131016").headers
    # A proofing of this resident that exists (made by an unscoped station): the scope is
    # refused before the proofing is looked at.
    proofing = api.proof(kiyose)

    before = api.snapshot()
    for path, body in (("/v1/stations/certificates",
                        {"resident_id": kiyose, "sign_public_key": subject_keys[1].decode(),
                         "proofing_id": proofing}),
                       ("/v1/stations/renewals",
                        {"resident_id": kiyose, "auth_public_key": subject_keys[1].decode(),
                         "proofing_id": proofing}),
                       ("/v1/stations/proofings", {"resident_id": kiyose, **IN_PERSON_B}),
                       ("/v1/stations/pin-resets",
                        {"resident_id": kiyose, "pin": "auth", "proofing_id": proofing})):
        answer = api.problem(api.http.post(path, headers=chiyoda, json=body), 403,
                             "auth.scope_missing")
        assert answer["context"] == {"scope": "municipality:132217"}, path
    api.problem(api.http.get(f"/v1/operators/residents/{kiyose}", headers=chiyoda), 403,
                "auth.scope_missing")
    api.problem(api.http.get(f"/v1/certificates/{serial}", headers=chiyoda), 403,
                "auth.scope_missing")
    api.unchanged(before)

    kiyose_station = api.caller(STATION, "municipality:132217").headers
    r = api.http.post("/v1/stations/certificates", headers=kiyose_station,
                      json={"resident_id": kiyose, "sign_public_key": subject_keys[1].decode(),
                            "proofing_id": api.proof(kiyose, kiyose_station)})
    assert r.status_code == 201, r.text


def test_scope_is_checked_before_the_resident_state_is_revealed(
        api: Api, subject_keys: list[bytes]) -> None:
    """A client outside the resident's municipality learns nothing about the record, not even
    that it has ended."""
    kiyose = api.register(ADULT)
    r = api.http.post(f"/v1/operators/residents/{kiyose}/events", headers=api.op,
                      json={"kind": "death"})
    assert r.status_code == 200, r.text
    chiyoda = api.caller(OPERATOR, "municipality:131016").headers
    api.problem(api.http.post(f"/v1/operators/residents/{kiyose}/events", headers=chiyoda,
                              json={"kind": "death"}), 403, "auth.scope_missing")
    chiyoda_station = api.caller(STATION, "municipality:131016").headers
    api.problem(api.http.post("/v1/stations/certificates", headers=chiyoda_station,
                              json={"resident_id": kiyose,
                                    "auth_public_key": subject_keys[0].decode()}),
                403, "auth.scope_missing")
