"""`jpki rp …`: register, list, rotate, suspend and resume relying parties, as scripts do — a
subprocess per command on its own data directory (see tests/api/test_cli.py)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.api.test_cli import Base, base, copy_data_dir, jpki, jpki_ok, tools  # noqa: F401

pytestmark = pytest.mark.hsm


def test_register_list_rotate_suspend_and_resume(base: Base, tmp_path: Path) -> None:  # noqa: F811
    d = copy_data_dir(base.data_dir, tmp_path / "ca")
    pf = jpki_ok("rp", "add", "--name", "株式会社プラットフォーム", "--kind", "platform_operator",
                 "--purpose", "account_opening,address_update", "--purpose", "kyc",
                 "--scopes", "status,linkage,basic4", data_dir=d)
    rp = pf["relying_party"]
    assert rp["id"].startswith("rp_") and rp["kind"] == "platform_operator"
    assert rp["purposes"] == ["account_opening", "address_update", "kyc"]
    assert pf["client_id"].startswith("jpki_") and len(pf["client_secret"]) >= 43
    sp = jpki_ok("rp", "add", "--name", "SP Shop", "--kind", "service_provider",
                 "--parent", rp["id"], "--purpose", "kyc", "--scopes", "status", data_dir=d)
    assert sp["relying_party"]["parent_id"] == rp["id"]

    listed = {p["id"]: p for p in jpki_ok("rp", "list", data_dir=d)}
    assert set(listed) == {rp["id"], sp["relying_party"]["id"]}
    assert listed[rp["id"]]["clients"][0]["scopes"] == "status linkage basic4"

    rotated = jpki_ok("rp", "rotate-secret", "--id", rp["id"], "--overlap-hours", "2",
                      data_dir=d)
    assert rotated["client_id"] == pf["client_id"]
    assert rotated["client_secret"] != pf["client_secret"] and rotated["previous_valid_until"]
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        stored = db.execute("SELECT secret_hash, previous_secret_hash FROM api_clients "
                            "WHERE client_id = ?", (pf["client_id"],)).fetchone()
    assert all(h.startswith("hmac-sha256$client-secret-mac$") for h in stored)
    assert pf["client_secret"] not in "".join(stored)

    suspended = jpki_ok("rp", "suspend", "--id", rp["id"], data_dir=d)
    assert suspended == {"id": rp["id"], "status": "suspended", "clients": [pf["client_id"]]}
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        (status,) = db.execute("SELECT status FROM api_clients WHERE client_id = ?",
                               (pf["client_id"],)).fetchone()
    assert status == "suspended"
    assert jpki_ok("rp", "resume", "--id", rp["id"], data_dir=d)["status"] == "active"

    audit = jpki_ok("audit", "verify", data_dir=d)
    assert audit["ok"] is True
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        actions = [a for (a,) in db.execute("SELECT action FROM audit_log WHERE action "
                                            "LIKE 'rp.%' ORDER BY seq")]
        payloads = " ".join(p for (p,) in db.execute("SELECT payload FROM audit_log"))
    assert actions == ["rp.registered", "rp.registered", "rp.secret_rotated", "rp.suspended",
                       "rp.active"]
    assert "プラットフォーム" not in payloads and rotated["client_secret"] not in payloads


def test_refusals_have_codes_and_change_nothing(base: Base, tmp_path: Path) -> None:  # noqa: F811
    d = copy_data_dir(base.data_dir, tmp_path / "ca")
    cases = [
        (("rp", "add", "--name", "SP", "--kind", "service_provider", "--purpose", "kyc",
          "--scopes", "status"), "rp.invalid"),
        (("rp", "add", "--name", "PF", "--kind", "platform_operator", "--purpose", "KYC!",
          "--scopes", "status"), "rp.invalid"),
        (("rp", "add", "--name", "PF", "--kind", "platform_operator", "--purpose", "kyc",
          "--scopes", "everything"), "rp.invalid"),
        (("rp", "suspend", "--id", "rp_0000000000000000"), "rp.not_found"),
        (("rp", "rotate-secret", "--id", "rp_0000000000000000"), "rp.not_found"),
        (("rp", "rotate-secret", "--id", "rp_0000000000000000", "--overlap-hours", "-1"),
         "rp.invalid"),
        (("client", "add", "--name", "bare", "--role", "rp", "--scopes", "status"),
         "request.invalid"),
    ]
    for args, code in cases:
        run = jpki(*args, "--json", data_dir=d)
        assert run.rc == 1, (args, run.out)
        assert run.error()["code"] == code, (args, run.err)
        assert run.out == ""
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        assert db.execute("SELECT count(*) FROM relying_parties").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM api_clients").fetchone() == (0,)
    assert json.loads(jpki("rp", "list", "--json", data_dir=d).out) == []
