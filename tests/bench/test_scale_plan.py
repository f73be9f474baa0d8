"""bench.scale_plan: figures carried to the national size by the growth they showed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scale_plan import carry, plan, resign_rate

REPO = Path(__file__).resolve().parents[2]


def test_a_linear_figure_is_carried_in_proportion_and_a_constant_one_as_measured():
    linear = carry([(1e5, 10.0), (1e6, 100.0), (1e7, 1000.0)], 2.5e8)
    assert linear.slope == pytest.approx(1.0)
    assert linear.value == pytest.approx(25_000.0)
    constant = carry([(1e5, 9_000.0), (1e6, 9_000.0), (1e7, 9_000.0)], 2.5e8)
    assert constant.value == pytest.approx(9_000.0)
    assert not linear.faster_than_linear


def test_a_slope_within_the_noise_carries_the_figure_as_measured():
    noisy = carry([(1e5, 100.0), (1e6, 110.0), (1e7, 112.0)], 2.5e8)
    assert 0 < noisy.slope < 0.1
    assert noisy.flat and noisy.value == 112.0


def test_a_figure_growing_faster_than_the_table_is_marked():
    quadratic = carry([(1e5, 1.0), (1e6, 100.0), (1e7, 10_000.0)], 1e8)
    assert quadratic.slope == pytest.approx(2.0)
    assert quadratic.value == pytest.approx(1_000_000.0)
    assert quadratic.faster_than_linear


def test_the_resign_rate_is_every_certificate_at_half_its_validity():
    assert resign_rate(2.5e8, 1 / 24) == pytest.approx(2.5e8 / 1800)
    assert resign_rate(2.5e8, 7) == pytest.approx(2.5e8 / (3.5 * 86400))


def _results() -> dict:
    """Two runs where every size figure is linear and every rate constant."""
    def run(n: int) -> dict:
        k = n / 1e6
        figures = {f"size_{t}_total_mb": 100.0 * k for t in (
            "certificates", "ocsp_responses", "residents", "cards", "mobile_devices")}
        figures |= {f"size_index_{i}_mb": 10.0 * k for i in (
            "uq_certificates_serial", "pk_certificates", "ix_certificates_crl_entries_pg",
            "ix_certificates_resident_kind")}
        figures |= {"size_ocsp_responses_indexes_mb": 20.0 * k,
                    "der_card_auth_bytes": 1400.0, "der_card_sign_bytes": 1600.0,
                    "ocsp_response_bytes": 1500.0,
                    "crl_largest_entries": 400 * k, "crl_largest_bytes": 20_000 * k,
                    "crl_all_entries": 70_000 * k, "crl_full_largest_s": 1.0,
                    "crl_full_all_s": 60.0, "crl_delta_all_s": 50.0,
                    "crl_full_all_rss_mb": 100.0,
                    "ocsp_hot_rps": 10_000.0, "ocsp_hot_server_cores": 1.0,
                    "ocsp_hot_p99_ms": 2.0, "ocsp_cold_rps": 120.0,
                    "ocsp_cold_server_cores": 1.0, "ocsp_cold_p99_ms": 150.0,
                    "status_lookups_per_s": 16_000.0, "status_server_cores": 1.0,
                    "presign_per_s": 200.0, "issuance_pairs_per_s": 40.0,
                    "issuance_batch_pairs_per_s": 140.0, "issuance_p99_ms": 38.0,
                    "sweep_s": 5.0 * k, "expiry_export_s": 0.5, "presign_count_s": 0.6 * k,
                    "probe_backlog_count_s": 0.4, "mass_revoke_sql_s": 4.0 * k,
                    "mass_revoke_sql_rows": 10_000 * k, "backup_mb": 1_500.0 * k,
                    "restore_s": 5.0 * k}
        kinds = {"card_auth": n // 2, "card_sign": n // 2}
        return {"certificates": n, "figures": figures, "population": {"kinds": kinds}}
    return {"runs": {"1000000": run(1_000_000), "10000000": run(10_000_000)}}


def test_the_plan_adds_the_real_der_and_responses_to_what_was_loaded():
    text = plan(_results(), 2.5e8)
    # 5 tables × 100 MB × 250 + 2.5e8 × 1,500 B of DER + 2.5e8 × 1,500 B of responses
    assert f"**{(5 * 100e6 * 250 + 2.5e8 * 1500 * 2) / 1e9:,.0f} GB**" in text
    assert "| a 1 % mass revocation | 16.7 min to record, 3.47 h to re-sign |" in text
    assert "faster than linear" not in text
    # A renewal adds a certificate row and its response row, each with its DER.
    assert f"two rows × {100 + 100 + 1500 + 1500:,} B" in text


def test_the_command_writes_the_plan(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results()))
    out = subprocess.run([sys.executable, "-m", "bench.scale_plan", str(results), "--out",
                          str(tmp_path / "plan.md")], cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=True)
    assert (tmp_path / "plan.md").read_text().strip() == out.stdout.strip()
    assert out.stdout.startswith("# The plan for 250,000,000 certificates")
