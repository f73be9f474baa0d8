"""bench.scale_revocation's cheap measurements (sizes, CRLs, batch jobs) on a tiny national
population (bench.population): every figure is there and agrees with what was loaded.

The measurements run in a process of their own (tests/bench/scale_tiny.py): the bench opens its
own SoftHSM token, and SoftHSM reads its configuration once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.common import postgres_admin_url
from bench.scale_revocation import SIZE_TABLES
from tests.components import missing_component

REPO = Path(__file__).resolve().parents[2]
CERTIFICATES = 800  # a few hundred shards: ~1,000 CRL scopes

pytestmark = [pytest.mark.postgres, pytest.mark.hsm, pytest.mark.slow]


def _require_postgres() -> None:
    url = postgres_admin_url().replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure to connect means no server
        missing_component(f"PostgreSQL is not reachable ({type(exc).__name__}); set "
                          "JPKI_BENCH_POSTGRES_URL or JPKI_TEST_POSTGRES_URL")


@pytest.fixture(scope="module")
def run(softhsm_module: str) -> dict[str, Any]:
    _require_postgres()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.bench.scale_tiny", "--certificates", str(CERTIFICATES),
         "--measure", "sizes,crl,jobs"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_sizes_cover_every_table_and_index(run: dict[str, Any]) -> None:
    sizes = run["figures"]["sizes"]
    for table in SIZE_TABLES:
        total = sizes[f"size_{table}_total_mb"]
        assert total >= sizes[f"size_{table}_heap_mb"] + sizes[f"size_{table}_indexes_mb"] - 1e-9
    assert sizes["size_certificates_heap_mb"] > 0
    assert sizes["size_index_uq_certificates_serial_mb"] > 0
    assert sizes["size_index_ix_certificates_shard_revoked_mb"] > 0
    assert sizes["size_database_mb"] > sizes["size_certificates_total_mb"]


def test_crls_list_what_was_revoked(run: dict[str, Any]) -> None:
    crl, expected = run["figures"]["crl"], run["population"]["expected"]
    assert crl["crl_largest_entries"] == expected["largest_scope_entries"]
    assert crl["crl_all_entries"] == expected["all_entries"]
    # 0.1 % of the largest shard, under the largest scope's CA: its delta lists each.
    assert crl["crl_delta_revoked"] >= 1
    assert crl["crl_delta_largest_entries"] == crl["crl_delta_revoked"]
    assert 0 < crl["crl_largest_bytes"] < crl["crl_all_bytes"]
    assert crl["crl_all_scopes"] >= 2
    for name in ("crl_full_largest", "crl_full_all", "crl_delta_largest", "crl_delta_all"):
        assert crl[f"{name}_s"] > 0
        assert crl[f"{name}_rss_mb"] > 10  # a Python process with the CRL service loaded
    assert crl["crl_full_largest_publish_s"] < crl["crl_full_largest_s"]


def test_jobs_revoke_one_percent_and_presign_the_backlog(run: dict[str, Any]) -> None:
    jobs, crl = run["figures"]["jobs"], run["figures"]["crl"]
    expected = run["population"]["expected"]
    assert jobs["sweep_s"] > 0
    assert min(jobs["sweep_revoked"], jobs["sweep_flagged"], jobs["sweep_held"]) >= 0
    # The window starts at the first expiry two months ahead or later: somebody is in it.
    assert jobs["expiry_rows"] >= 1 and jobs["expiry_export_s"] > 0
    assert jobs["mass_revoke_count"] == expected["mass_revoke_count"]
    assert jobs["mass_revoke_sql_rows"] + jobs["revoke_service_count"] == jobs["mass_revoke_count"]
    assert jobs["revoke_service_count"] >= 1 and jobs["revoke_service_per_s"] > 0
    assert jobs["mass_revoke_sql_rows"] > 0 and jobs["mass_revoke_sql_s"] > 0
    # Every certificate had a stored response (refreshed before the revocation); the revoked
    # ones (the delta CRL's too) lost theirs.
    assert jobs["presign_backlog_count"] == jobs["mass_revoke_count"] + crl["crl_delta_revoked"]
    assert jobs["presign_signed"] == jobs["presign_backlog_count"]
    assert jobs["presign_complete"] == 1
    assert jobs["presign_select_calls"] >= 1
    assert 0 < jobs["presign_select_s"] < jobs["presign_backlog_s"]
    assert jobs["presign_select_first_ms"] > 0 and jobs["presign_select_last_ms"] > 0
    assert jobs["presign_per_s"] > 0
