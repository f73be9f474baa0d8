"""`jpki notices expiry` and `jpki mobile sweep` / `sweeps`, driven as scripts drive them: as
subprocesses on a data directory of their own (tests/api/test_cli.py's helpers)."""

from __future__ import annotations

import csv
import io
import json
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from api.maintenance_lease import FileLease
from jpki.validity import jst_date
from tests.api.test_cli import (  # noqa: F401 - fixtures
    NAME,
    PERSONAL,
    Base,
    KeyMaker,
    add_resident,
    base,
    copy_data_dir,
    jpki,
    jpki_ok,
    public_keys,
    tools,
)

pytestmark = pytest.mark.hsm


def test_the_sweep_by_hand_reports_and_steps_aside_for_a_server(
        base: Base, tmp_path: Path) -> None:  # noqa: F811
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    report = jpki_ok("mobile", "sweep", data_dir=d)
    assert (report["outcome"], report["counts"]) == ("ok", {"revoked": 0, "flagged": 0,
                                                            "held": 0})
    assert (report["flag_after_days"], report["hold_after_days"]) == (90, 180)
    (listed,) = jpki_ok("mobile", "sweeps", data_dir=d)["sweeps"]
    assert (listed["id"], listed["counts"]) == (report["id"], report["counts"])
    one = jpki_ok("mobile", "sweeps", "--id", report["id"], data_dir=d)
    assert (one["revoked"], one["flagged"], one["held"]) == ([], [], [])
    missing = jpki("mobile", "sweeps", "--id", "0" * 32, "--json", data_dir=d)
    assert (missing.rc, missing.error()["code"]) == (1, "mobile.sweep_not_found")

    # A server holds the maintenance lease and runs the sweep itself: the CLI does not.
    lease = FileLease(d)
    assert lease.held()
    try:
        refused = jpki("mobile", "sweep", "--json", data_dir=d)
    finally:
        lease.release()
    assert (refused.rc, refused.error()["code"]) == (1, "jobs.locked")
    assert len(jpki_ok("mobile", "sweeps", data_dir=d)["sweeps"]) == 1  # nothing ran


def test_notices_expiry_lists_the_holders_as_csv_or_json(
        base: Base, tmp_path: Path, public_keys: KeyMaker) -> None:  # noqa: F811
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    resident = add_resident(d)
    issued = [jpki_ok("cert", "issue", "--resident", resident, "--kind", kind, "--public-key",
                      public_keys(tmp_path), "--out", tmp_path / f"{kind}.pem", data_dir=d)
              for kind in ("auth", "sign")]
    expires = min(jst_date(datetime.fromisoformat(c["not_after"])) for c in issued)
    window = ("--from", (expires - timedelta(days=30)).isoformat(),
              "--to", (expires + timedelta(days=1)).isoformat())

    out = jpki("notices", "expiry", "--municipality", "132217", *window, data_dir=d)
    assert out.rc == 0, out.err
    (row,) = list(csv.DictReader(io.StringIO(out.out)))
    assert (row["resident_id"], row["expires_on"], row["certificates"],
            row["address_withheld"]) == (resident, expires.isoformat(), "sign auth", "false")
    assert row["name"].replace("\u3000", " ") == NAME and row["address"]

    target = tmp_path / "notices.json"
    written = jpki("notices", "expiry", "--municipality", "132217", *window, "--format", "json",
                   "--output", target, data_dir=d)
    assert written.rc == 0, written.err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert (doc["count"], [n["resident_id"] for n in doc["notices"]]) == (1, [resident])
    again = jpki("notices", "expiry", "--municipality", "132217", *window, "--format", "json",
                 "--output", target, data_dir=d)
    assert (again.rc, again.error()["code"]) == (1, "request.invalid")  # never overwritten

    for args, code in (
            (("--municipality", "132217", "--from", "2031-02-01", "--to", "2031-01-01"),
             "notices.window_invalid"),
            (("--municipality", "139998", *window), "municipality.not_found"),
            (("--municipality", "132218", *window), "municipality.invalid"),
            (("--municipality", "132217", "--from", "someday", "--to", "2031-01-01"),
             "request.invalid")):
        refused = jpki("notices", "expiry", *args, "--format", "json", data_dir=d)
        assert (refused.rc, refused.error()["code"]) == (1, code), args
        for secret in PERSONAL:
            assert secret not in refused.err

    assert jpki_ok("audit", "verify", data_dir=d)["ok"] is True
    # The CSV and the JSON exports; every refusal came before anything was read or audited.
    exports = [r for r in _audit(d) if r[0] == "notices.expiry_exported"]
    assert [(s, json.loads(p)["format"], json.loads(p)["count"]) for _, s, p in exports] == [
        ("132217", "csv", 1), ("132217", "json", 1)]
    for _, _, payload in exports:
        for secret in PERSONAL:
            assert secret not in payload


def _audit(data_dir: Path) -> list[tuple[str, str, str]]:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(data_dir / "jpki.db")) as db:
        return list(db.execute("SELECT action, subject, payload FROM audit_log ORDER BY seq"))
