"""Request ids and the request log (api.request_log, api.logs): an id for every request, taken
from a well-formed X-Request-ID or made, returned in the response, stamped on the audit records
the request causes and on its one JSON log line — which names the route template, status,
duration and client, and nothing a resident could be recognised by."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.logs import JsonFormatter, RequestIdFilter
from jpki.correlation import bound
from jpki.model import ClientRole
from tests.api.harness import ADULT, Api

pytestmark = pytest.mark.hsm

GENERATED = re.compile(r"[0-9a-f]{32}")


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The request log's lines, as the server's formatter writes them."""
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "jpki.request"]


def test_a_well_formed_request_id_is_kept_and_anything_else_replaced(api: Api) -> None:
    def sent(value: str | bytes | None) -> str:
        headers = {} if value is None else {"X-Request-ID": value}
        r = api.http.get("/healthz", headers=headers)
        return str(r.headers["x-request-id"])

    assert sent("lb-7f3a.2:x_9") == "lb-7f3a.2:x_9"
    assert GENERATED.fullmatch(sent(None))
    assert sent(None) != sent(None)
    for bad in ("a" * 65, "a b", "<script>", "瀬戸内".encode(), "", "-x"):
        replaced = sent(bad)
        assert GENERATED.fullmatch(replaced), (bad, replaced)


def test_errors_carry_the_request_id_too(api: Api) -> None:
    for method, path, expected in (("GET", "/no/such/route", 404),
                                   ("GET", "/v1/operators/relying-parties", 401),
                                   ("POST", "/v1/operators/residents", 401)):
        r = api.http.request(method, path, headers={"X-Request-ID": "req-err"})
        assert (r.status_code, r.headers["x-request-id"]) == (expected, "req-err")


def test_an_unexpected_failure_is_a_500_with_its_request_id_and_a_line(
        api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"a message quoting {ADULT['name']}")

    monkeypatch.setattr(api.services.residents, "get", broken)
    client = TestClient(create_app(api.services.settings, services=api.services),
                        raise_server_exceptions=False)
    r = client.get("/v1/operators/residents/" + "0" * 32,
                   headers={**api.op, "X-Request-ID": "req-500"})
    assert (r.status_code, r.headers["x-request-id"]) == (500, "req-500")
    (line,) = [x for x in request_lines(caplog) if x["request_id"] == "req-500"]
    assert (line["status"], line["route"]) == (500, "/v1/operators/residents/{resident_id}")


def test_audit_records_of_a_request_carry_its_id(api: Api) -> None:
    operator = api.op  # made (and audited) first
    with api.services.uow() as uow:
        head = uow.audit.head()[0]
    api.remember(ADULT)
    r = api.http.post("/v1/operators/residents", json=ADULT,
                      headers={**operator, "X-Request-ID": "req-register"})
    assert r.status_code == 201
    # A refused relying-party call is audited by the middleware, through a group commit.
    refused = api.http.post("/v1/status", json={"purpose": "test", "serials": ["1"]},
                            headers={"X-Request-ID": "req-refused"})
    assert refused.status_code == 401
    records = api.audit_since(head)
    assert [(r.action, r.request_id) for r in records] == [
        ("resident.registered", "req-register"), ("rp.refused", "req-refused")]
    with api.services.uow() as uow:
        api.services.audit.verify(uow)


def test_one_line_per_request_with_the_route_template_and_no_personal_data(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    resident = api.register(ADULT)
    caplog.clear()
    name = ADULT["name"]
    api.http.get(f"/v1/operators/residents/{resident}", params={"name": name},
                 headers={**api.op, "X-Request-ID": "req-show"})
    api.http.post("/v1/operators/residents", headers={**api.op, "X-Request-ID": "req-bad"},
                  json={**ADULT, "birth_date": "19900102"})
    api.http.get(f"/no/such/{name}", headers={"X-Request-ID": "req-404"})
    lines = {x["request_id"]: x for x in request_lines(caplog)}
    assert set(lines) == {"req-show", "req-bad", "req-404"}
    show = lines["req-show"]
    assert show["route"] == "/v1/operators/residents/{resident_id}"
    assert (show["method"], show["status"], show["event"]) == ("GET", 200, "request")
    assert show["client"] == f"client:{api.caller(ClientRole.OPERATOR).client_id}"
    assert show["duration_ms"] >= 0 and show["level"] == "info" and show["logger"] == \
        "jpki.request"
    assert (lines["req-bad"]["status"], lines["req-bad"]["route"]) == \
        (422, "/v1/operators/residents")
    assert (lines["req-404"]["route"], lines["req-404"]["client"]) == ("unmatched", None)
    text = "\n".join(json.dumps(x, ensure_ascii=asc) for x in lines.values()
                     for asc in (False, True))
    api.assert_no_personal_data(text, "the request log")
    assert resident not in text  # the path as sent is not logged either


def test_exceptions_are_logged_as_their_type_and_frames_only() -> None:
    logger = logging.getLogger("jpki.test")
    try:
        raise ValueError("瀬戸内 ひかり, 東京都清瀬市中里一丁目")
    except ValueError:
        record = logger.makeRecord("jpki.test", logging.ERROR, __file__, 1, "failed: %s",
                                   ("ValueError",), sys.exc_info())
    with bound("req-exc"):
        RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["exception"] == "builtins.ValueError"
    assert line["message"] == "failed: ValueError" and line["request_id"] == "req-exc"
    assert any("test_exceptions_are_logged" in frame for frame in line["stack"])
    assert "瀬戸内" not in json.dumps(line, ensure_ascii=False)


def test_the_access_log_drops_the_query_string() -> None:
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/ocsp/MEMw?name=%E7%80%AC", "1.1", 200), None)
    line = json.loads(JsonFormatter().format(record))
    assert (line["method"], line["path"], line["status"]) == ("GET", "/ocsp/MEMw", 200)
    assert "%E7" not in json.dumps(line) and "127.0.0.1" not in json.dumps(line)
