"""A tiny national population (bench.population) for the national-scale bench's measurements, and
a run of some of them on it, in a process of its own (SoftHSM reads its configuration once per
process, so the bench's own token cannot share the test session's).

    python -m tests.bench.scale_tiny [--certificates 2000] [--measure sizes,crl,jobs]

Prints one JSON document: ``population`` (what was loaded, and what the measurements should
find, counted here by SQL with the full CRL's filter) and ``figures`` (each measurement's). The
caller checks that PostgreSQL and SoftHSM are there first: here a missing one is an error like
any other.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.common import bench_hsm, fresh_database, open_services
from bench.population import load_population
from bench.scale_context import ScaleContext


def expectations(url: str, largest_shard: str, grace: Any) -> dict[str, int]:
    """The entries of the largest shard's largest scope and of every scope, as the full CRLs
    select them (revoked by now, not expired beyond the grace, with an entry)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    where = ("revoked_at IS NOT NULL AND revoked_at <= %(now)s AND not_after >= %(floor)s "
             "AND crl_entry IS NOT NULL")
    params = {"now": now, "floor": now - grace, "shard": largest_shard}
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain) as conn:
        largest = conn.execute(
            f"SELECT count(*) FROM certificates WHERE {where} AND shard = %(shard)s "  # noqa: S608
            "GROUP BY ca_generation_id ORDER BY 1 DESC LIMIT 1", params).fetchone()
        every = conn.execute(f"SELECT count(*) FROM certificates WHERE {where}",  # noqa: S608
                             params).fetchone()
    return {"largest_scope_entries": int(largest[0]) if largest else 0,
            "all_entries": int(every[0]) if every else 0}


def main(argv: list[str] | None = None) -> int:
    from bench import scale_revocation

    p = argparse.ArgumentParser(prog="python -m tests.bench.scale_tiny")
    p.add_argument("--certificates", type=int, default=2000)
    p.add_argument("--measure", default="sizes,crl,jobs")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    names = [n for n in args.measure.split(",") if n]
    with bench_hsm() as hsm, fresh_database("postgres", hsm.data_dir, "scale") as url, \
            tempfile.TemporaryDirectory(prefix="scale-work-") as work:
        services = open_services(hsm, url)  # migrations and the key ceremony
        services.uow.engine.dispose()
        services.read_engine.dispose()
        summary = load_population(url, args.certificates, seed=args.seed)
        expected = expectations(url, summary.largest_shard, hsm.recipe.crl.expired_grace)
        expected["mass_revoke_count"] = round(summary.certificates * 0.01)
        ctx = ScaleContext(hsm=hsm, url=url, work=Path(work), population=summary)
        figures: dict[str, dict[str, float | int]] = {}
        try:
            for name in names:
                figures[name] = scale_revocation.MEASUREMENTS[name](ctx)
        finally:
            ctx.close()
    population = {"certificates": summary.certificates, "revoked": summary.revoked,
                  "largest_shard": summary.largest_shard, "shards": len(summary.shards),
                  "expected": expected}
    json.dump({"population": population, "figures": figures}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
