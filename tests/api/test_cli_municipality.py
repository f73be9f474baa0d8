"""`jpki municipality …`: list, add, rename and merge municipalities as scripts do — a
subprocess per command on its own data directory (see tests/api/test_cli.py). `jpki init`
registered japancode's 1,916 local public entities."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.api.test_cli import Base, base, copy_data_dir, jpki, jpki_ok, tools  # noqa: F401

pytestmark = pytest.mark.hsm


def test_init_registers_every_municipality(base: Base) -> None:  # noqa: F811
    listed = jpki_ok("municipality", "list", data_dir=base.data_dir)["municipalities"]
    assert len(listed) == 1916
    by_code = {m["code"]: m for m in listed}
    assert by_code["132217"]["name_romaji"] == "Kiyose-shi"  # the seed's, as certificates say
    assert by_code["011011"]["name_romaji"] == "Sapporo-shi Chuo-ku"
    assert all(m["status"] == "active" and m["shard"] == m["code"] for m in listed)
    tokyo = jpki_ok("municipality", "list", "--prefecture", "13",
                    data_dir=base.data_dir)["municipalities"]
    assert len(tokyo) == 62 and all(m["code"].startswith("13") for m in tokyo)


def test_add_rename_merge_and_crl_publication(base: Base, tmp_path: Path) -> None:  # noqa: F811
    d = copy_data_dir(base.data_dir, tmp_path / "ca")
    added = jpki_ok("municipality", "add", "139998", "--name-ja", "新清瀬市",
                    "--name-kana", "しんきよせし", data_dir=d)
    assert (added["name_romaji"], added["shard"]) == ("Shinkiyose-shi", "139998")
    renamed = jpki_ok("municipality", "rename", "139998", "--name-romaji", "Shin-Kiyose-shi",
                      data_dir=d)
    assert (renamed["previous_shard"], renamed["shard"]) == ("139998", "139998-2")
    merged = jpki_ok("municipality", "merge", "139998", "--into", "132217", data_dir=d)
    assert merged["merged"]["status"] == "merged" and merged["closed_shard"] == "139998-2"
    # Nothing was issued: publishing writes the two ARLs, not 2 × 1,917 empty shards.
    written = jpki_ok("crl", "publish", data_dir=d)["written"]
    assert sorted((w["ca"], w["scope"]) for w in written) == [("auth", "arl"), ("sign", "arl")]
    # A named shard is published on request, live or not.
    one = jpki_ok("crl", "publish", "--shard", "139998-2", data_dir=d)["written"]
    assert {(w["ca"], w["scope"], w["kind"]) for w in one} == {
        (ca, "139998-2", kind) for ca in ("auth", "sign") for kind in ("full", "delta")}
    assert jpki_ok("audit", "verify", data_dir=d)["ok"] is True
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        actions = [a for (a,) in db.execute("SELECT action FROM audit_log WHERE action LIKE "
                                            "'municipality.%' ORDER BY seq")]
    assert actions == ["municipality.seeded", "municipality.added", "municipality.renamed",
                       "municipality.merged"]


def test_refusals_have_codes_and_change_nothing(base: Base, tmp_path: Path) -> None:  # noqa: F811
    d = copy_data_dir(base.data_dir, tmp_path / "ca")
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        before = db.execute("SELECT count(*), max(seq) FROM audit_log").fetchone()
    cases = [
        (("municipality", "add", "139997", "--name-ja", "新清瀬市", "--name-romaji", "X-shi"),
         "municipality.invalid"),
        (("municipality", "add", "132217", "--name-ja", "清瀬市", "--name-romaji", "Y-shi"),
         "municipality.exists"),
        (("municipality", "add", "139998", "--name-ja", "新清瀬市", "--name-romaji",
          "Kiyose-shi"), "municipality.crl_name_taken"),
        (("municipality", "rename", "139998", "--name-romaji", "X-shi"),
         "municipality.not_found"),
        (("municipality", "merge", "132217", "--into", "132217"), "request.invalid"),
    ]
    for args, code in cases:
        run = jpki(*args, "--json", data_dir=d)
        assert run.rc != 0 and run.out == "", args
        assert run.error()["code"] == code, (args, run.err)
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        assert db.execute("SELECT count(*), max(seq) FROM audit_log").fetchone() == before
        assert db.execute("SELECT count(*) FROM municipalities").fetchone() == (1916,)
