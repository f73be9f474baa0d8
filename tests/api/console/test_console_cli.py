"""`jpki console …` (api.cli.console): the first supervisor is made at the CLI, and can sign in
with what it printed; bad input changes nothing."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pyotp

from tests.api.test_cli import (  # noqa: F401 - base and tools are fixtures
    Base,
    _env,
    _start_server,
    base,
    copy_data_dir,
    head_in_db,
    jpki,
    jpki_ok,
    tools,
)


def test_a_supervisor_made_at_the_cli_signs_in_with_what_it_printed(base: Base,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    made = jpki_ok("console", "add", "boss", "--role", "supervisor", "--json", data_dir=d)
    assert made["role"] == "supervisor" and made["municipality"] is None
    assert made["totp_uri"].startswith("otpauth://totp/jpki:boss?")
    listed = jpki_ok("console", "list", "--json", data_dir=d)["accounts"]
    assert [(a["username"], a["status"]) for a in listed] == [("boss", "active")]
    # `jpki serve` as deployed (over plain HTTP here, so the cookie is not marked Secure).
    server, url = _start_server(d, tmp_path / "serve.log",
                                _env(JPKI_CONSOLE_SECURE_COOKIES="false"))
    try:
        with httpx.Client(base_url=url, follow_redirects=False) as http:
            page = http.get("/console/login").text
            csrf = page.split('name="csrf" value="')[1].split('"')[0]
            first = http.post("/console/login", data={"csrf": csrf, "username": "boss",
                                                      "password": made["password"]})
            assert first.status_code == 303
            done = http.post("/console/login/code", data={
                "csrf": csrf, "code": pyotp.TOTP(made["totp_secret"]).now()})
            assert done.status_code == 303 and done.headers["location"] == "/console/"
            assert "統括管理者" in http.get("/console/").text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    suspended = jpki_ok("console", "suspend", "boss", "--json", data_dir=d)
    assert suspended == {"username": "boss", "status": "suspended"}


def test_bad_accounts_are_refused_and_nothing_is_recorded(base: Base,  # noqa: F811
                                                          tmp_path: Path) -> None:
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    head = head_in_db(d)
    for args, says in ((("clerk1", "--role", "clerk"), "works for one municipality"),
                       (("Bad Name", "--role", "agent"), "user name"),
                       (("clerk2", "--role", "clerk", "--municipality", "132218"),
                        "check digit")):
        run = jpki("console", "add", *args, "--json", data_dir=d)
        assert run.rc != 0 and run.out == "", run
        assert says in json.dumps(run.error()), run
    assert head_in_db(d) == head
    assert jpki_ok("console", "list", "--json", data_dir=d) == {"accounts": []}
