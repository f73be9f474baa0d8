"""A harness for testing the REST API end to end, in process.

:class:`Api` (the ``api`` fixture in conftest.py) wraps a ``TestClient`` around ``create_app`` on
the session's real services (SoftHSM, and SQLite or PostgreSQL through the ``services`` fixture),
makes API clients of each role, and gives the three checks almost every test here needs:

* :meth:`Api.problem` — an RFC 9457 problem+json answer with the exact status and ``code``, whose
  body holds none of the personal data the test registered (non-negotiable: the basic 4
  information never appears in an error);
* :meth:`Api.snapshot` — the audit head and the full contents of the residents, cards,
  certificates, audit-log and proofings tables, so that a refused request can be shown to have
  changed nothing at all (not even used up an identity proofing);
* (in the fixture) a log check — no record logged during the test holds any of that personal
  data.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.composition import Services
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.basic4 import normalize_address, normalize_name
from jpki.errors import InvalidBasic4
from jpki.model import AuditRecord, ClientRole
from jpki.store.tables import audit_log, cards, certificates, consents, proofings, residents

PROBLEM_JSON = "application/problem+json"
ISSUE = "/v1/stations/certificates"
RENEW = "/v1/stations/renewals"
PROOFINGS = "/v1/stations/proofings"
# The applicant at the counter with two 本人確認書類 甲 (pattern B, reference §5).
IN_PERSON_B: dict[str, Any] = {
    "presence": "in_person",
    "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}],
}

# Distinctive basic 4 information, so that finding it anywhere in an answer or a log is meaningful.
HOME = "東京都清瀬市中里一丁目２番３号 メゾン秘密３０１"
ADULT = {"name": "瀬戸内 ひかり", "birth_date": "1990-01-02", "sex": 2, "address": HOME,
         "municipality_code": "132217"}
CHILD = {"name": "瀬戸内 こはる", "birth_date": "2015-05-05", "sex": 2, "address": HOME,
         "municipality_code": "132217"}
OTHER = {"name": "小鳥遊 宗一郎", "birth_date": "1975-03-30", "sex": 1,
         "address": "東京都千代田区千代田一番一号 皇居前ハイツ", "municipality_code": "131016"}


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


@dataclass(frozen=True)
class Caller:
    client_id: str
    secret: str
    role: ClientRole

    @property
    def headers(self) -> dict[str, str]:
        return basic_auth(self.client_id, self.secret)


@dataclass
class Api:
    services: Services
    operator: Principal
    http: TestClient
    personal: set[str] = field(default_factory=set)
    _callers: dict[tuple[ClientRole, tuple[str, ...], str | None], Caller] = field(
        default_factory=dict)

    # --- clients ------------------------------------------------------------------------------

    def caller(self, role: ClientRole, *scopes: str, station_kind: str | None = None) -> Caller:
        """An API client of ``role`` with ``scopes`` (one per distinct role, scopes and station
        kind)."""
        key = (role, scopes, station_kind)
        if key not in self._callers:
            if role is ClientRole.RP:
                # Relying-party clients belong to a registered relying party (one per caller,
                # declaring the purpose "test"), which needs at least one scope.
                rp = self.services.relying_parties.register(
                    authorize(self.operator, Operation.RP_REGISTER),
                    name=f"RP {len(self._callers)}", kind="platform_operator",
                    purposes=["test"], scopes=list(scopes) or ["status"])
                self._callers[key] = Caller(rp.client_id, rp.client_secret, role)
                return self._callers[key]
            if role is ClientRole.HOLDER_APP:
                # A holder app is registered with the key its assertions are signed with.
                spki = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
                app = self.services.pin_reset.register_app(
                    authorize(self.operator, Operation.CLIENT_CREATE), self.services.clients,
                    name=f"app {len(self._callers)}", public_key=spki)
                self._callers[key] = Caller(app.client.client_id, app.client_secret, role)
                return self._callers[key]
            made = self.services.clients.create(
                authorize(self.operator, Operation.CLIENT_CREATE),
                name=f"{role.value} {len(self._callers)}", role=role,
                scopes=list(scopes), station_kind=station_kind)
            self._callers[key] = Caller(made.client.client_id, made.client_secret, role)
        return self._callers[key]

    @property
    def op(self) -> dict[str, str]:
        return self.caller(ClientRole.OPERATOR).headers

    @property
    def station(self) -> dict[str, str]:
        return self.caller(ClientRole.STATION).headers

    # --- personal data ------------------------------------------------------------------------

    def remember(self, person: dict[str, Any]) -> None:
        """Every form of this person's basic 4 information that must never leak."""
        for key, normalize in (("name", normalize_name), ("address", normalize_address)):
            if key in person:
                raw = str(person[key])
                self.personal.add(raw)
                with contextlib.suppress(InvalidBasic4):  # a value made to be refused
                    self.personal.add(normalize(raw))
                self.personal.update(part for part in raw.split() if len(part) >= 2)
        if "birth_date" in person:
            self.personal.add(str(person["birth_date"]))

    def assert_no_personal_data(self, text: str, where: str) -> None:
        leaked = sorted(s for s in self.personal if s in text)
        assert not leaked, f"personal data in {where}: {leaked}"

    # --- residents and certificates through the API -------------------------------------------

    def register(self, person: dict[str, Any], headers: dict[str, str] | None = None) -> str:
        self.remember(person)
        r = self.http.post("/v1/operators/residents", json=person, headers=headers or self.op)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def proof(self, resident_id: str, headers: dict[str, str] | None = None,
              evidence: dict[str, Any] | None = None) -> str:
        """Record an identity proofing at the counter (by default in person, pattern B) and
        return its id, which one issuance, renewal or PIN reset by the same station consumes."""
        r = self.http.post(PROOFINGS, json={"resident_id": resident_id,
                                            **(IN_PERSON_B if evidence is None else evidence)},
                           headers=headers or self.station)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def issue(self, resident_id: str, *, sign: bytes | None = None, auth: bytes | None = None,
              path: str = ISSUE, headers: dict[str, str] | None = None,
              proofing_id: str | None = None) -> dict[str, Any]:
        """Issue (or, with ``path=RENEW``, renew) as a station would: the identity proofing
        first (unless ``proofing_id`` names one already made), then the request naming it."""
        headers = headers or self.station
        body: dict[str, Any] = {"resident_id": resident_id,
                                "proofing_id": proofing_id or self.proof(resident_id, headers)}
        if sign is not None:
            body["sign_public_key"] = sign.decode("ascii")
        if auth is not None:
            body["auth_public_key"] = auth.decode("ascii")
        r = self.http.post(path, json=body, headers=headers)
        assert r.status_code == 201, r.text
        result: dict[str, Any] = r.json()
        return result

    def renew(self, resident_id: str, *, sign: bytes | None = None, auth: bytes | None = None,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
        return self.issue(resident_id, sign=sign, auth=auth, path=RENEW, headers=headers)

    # --- checks -------------------------------------------------------------------------------

    def problem(self, response: httpx.Response, status: int, code: str) -> dict[str, Any]:
        """Assert an RFC 9457 problem with exactly this status and code, and no personal data."""
        assert response.status_code == status, (status, code, response.text)
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        assert media_type == PROBLEM_JSON, response.headers.get("content-type")
        body: dict[str, Any] = response.json()
        assert body["code"] == code, body
        assert body["status"] == status, body
        assert body["type"] == f"urn:jpki:problem:{code}", body
        assert isinstance(body["title"], str) and body["title"], body
        if status == 401:
            assert response.headers.get("www-authenticate", "").startswith("Basic "), \
                response.headers
        # Both the bytes as sent and the decoded JSON (the 413 guard escapes non-ASCII).
        self.assert_no_personal_data(response.text, f"the {code} answer")
        self.assert_no_personal_data(json.dumps(body, ensure_ascii=False), f"the {code} answer")
        return body

    def snapshot(self) -> dict[str, Any]:
        """Everything a refused request must leave exactly as it was."""
        with self.services.uow() as uow:
            head = uow.audit.head()
        tables = {}
        with self.services.uow.engine.connect() as conn:
            for table in (residents, cards, certificates, audit_log, proofings, consents):
                tables[table.name] = sorted(repr(tuple(row)) for row in
                                            conn.execute(select(table)).all())
        return {"audit_head": head, **tables}

    def unchanged(self, before: dict[str, Any], *,
                  audited: frozenset[str] = frozenset()) -> list[AuditRecord]:
        """Nothing changed — except, with ``audited``, new audit records of those actions
        (refusals on the relying-party routes are audited), which are returned."""
        after = self.snapshot()
        skip = {"audit_head", "audit_log"} if audited else set()
        changed = [k for k in before if k not in skip and before[k] != after[k]]
        assert not changed, f"a refused request changed {changed}"
        if not audited:
            return []
        assert set(before["audit_log"]) <= set(after["audit_log"]), "an audit record changed"
        new = self.audit_since(before["audit_head"][0])
        assert {r.action for r in new} <= audited, [r.action for r in new]
        return new

    def audit_since(self, seq: int) -> list[AuditRecord]:
        """Audit records after ``seq``, each checked to hold no personal data."""
        with self.services.uow() as uow:
            records = [r for r in uow.audit.iterate() if r.seq > seq]
        for r in records:
            self.assert_no_personal_data(f"{r.actor} {r.action} {r.subject} {r.payload}",
                                         "the audit log")
        return records
