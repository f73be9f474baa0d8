"""A tiny population for the national-scale bench's measurements, and a run of some of them on it,
in a process of its own (SoftHSM reads its configuration once per process, so the bench's own
token cannot share the test session's).

    python -m tests.bench.scale_tiny [--certificates 2000] [--measure sizes,crl,jobs]

Prints one JSON document: ``population`` (what was loaded, and the figures a measurement should
find) and ``figures`` (each measurement's). The caller checks that PostgreSQL and SoftHSM are
there first: here a missing one is an error like any other.

The population: the key ceremony and one issued card pair on a fresh PostgreSQL database (real
pipeline), ten residents in each of three municipalities, then N certificate rows copied in
(binary COPY) — card sign/auth alternating under their CA generations, shards weighted 6:3:1,
validity five years ending uniformly within the next five, 10 % revoked in the past with the
``crl_entry`` jpki stores (bench.crl.fast_crl_entry), no DER — and, as the population loader
does, a fresh SHA-1 OCSP response placeholder for every certificate.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg

from bench.common import (
    OPERATOR,
    BenchHsm,
    bench_hsm,
    fresh_database,
    open_services,
    resident_fields,
    subject_keys,
)
from bench.crl import fast_crl_entry
from bench.scale_context import PopulationSummary, ScaleContext
from jpki.access.authz import Grant, Operation, authorize
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, RevocationReason

SHARDS = {"132217": 6, "011002": 3, "022012": 1}
RESIDENTS_PER_SHARD = 10
COLUMNS = ["serial", "kind", "resident_id", "ca_generation_id", "status", "not_before",
           "not_after", "shard", "registry_source", "public_key_sha256", "revoked_at",
           "revocation_reason", "revocation_recorded_at", "crl_entry", "created_at",
           "updated_at"]
TYPES = ["varchar", "varchar", "varchar", "int8", "varchar", "timestamp", "timestamp",
         "varchar", "varchar", "varchar", "timestamp", "int2", "timestamp", "bytea",
         "timestamp", "timestamp"]


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


def load(hsm: BenchHsm, url: str, certificates: int, seed: int = 7) -> tuple[
        PopulationSummary, dict[str, Any]]:
    """Load the tiny population (module docstring); its summary and the expected figures."""
    services = open_services(hsm, url)
    try:
        register: Grant[Literal[Operation.RESIDENT_REGISTER]] = authorize(
            OPERATOR, Operation.RESIDENT_REGISTER)
        residents: dict[str, list[str]] = {}
        for n, shard in enumerate(SHARDS):
            residents[shard] = [
                services.residents.register(register, **{
                    **resident_fields(n * RESIDENTS_PER_SHARD + i), "municipality_code": shard}).id
                for i in range(RESIDENTS_PER_SHARD)]
        auth, sign = subject_keys(2)
        first = next(iter(SHARDS))
        services.issuance.issue(authorize(OPERATOR, Operation.CERTIFICATE_ISSUE),
                                residents[first][0],
                                [KeyRequest(CertKind.CARD_AUTH, auth),
                                 KeyRequest(CertKind.CARD_SIGN, sign)])
        with services.uow() as uow:
            gens = {kind: uow.cas.current(kind) for kind in (CaKind.SIGN, CaKind.AUTH)}
        gen_ids = {k: g.id for k, g in gens.items() if g is not None}
    finally:
        services.uow.engine.dispose()
        services.read_engine.dispose()

    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    shard_names, weights = list(SHARDS), list(SHARDS.values())
    per_shard: Counter[str] = Counter({first: 2})
    revoked_by_shard: Counter[str] = Counter()
    revoked_by_scope: Counter[tuple[str, str]] = Counter()
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain) as pg:
        with pg.cursor() as cur, cur.copy(
                f"COPY certificates ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(TYPES)
            for i in range(certificates):
                shard = rng.choices(shard_names, weights)[0]
                kind = CertKind.CARD_SIGN if i % 2 else CertKind.CARD_AUTH
                ca = CaKind.SIGN if kind is CertKind.CARD_SIGN else CaKind.AUTH
                serial = rng.getrandbits(127) | (1 << 64)
                not_after = now + timedelta(seconds=rng.randrange(86400, 5 * 365 * 86400))
                not_before = not_after - timedelta(days=5 * 365)
                revoked_at = reason = entry = None
                if rng.random() < 0.1:
                    revoked_at = now - timedelta(seconds=rng.randrange(60, 86400 * 300))
                    reason = RevocationReason.SUPERSEDED
                    entry = fast_crl_entry(serial, revoked_at, reason)
                    revoked_by_shard[shard] += 1
                    revoked_by_scope[(ca.value, shard)] += 1
                per_shard[shard] += 1
                resident = residents[shard][i % RESIDENTS_PER_SHARD]
                copy.write_row((
                    format(serial, "x"), kind.value, resident, gen_ids[ca], "issued",
                    _naive(not_before), _naive(not_after), shard, "juminhyo",
                    format(rng.getrandbits(256), "064x"),
                    None if revoked_at is None else _naive(revoked_at),
                    None if reason is None else int(reason),
                    None if revoked_at is None else _naive(revoked_at), entry,
                    _naive(not_before), _naive(revoked_at or not_before)))
        # A fresh stored response for every certificate (placeholder DER: only the pre-signer's
        # selection reads these rows here).
        pg.execute(
            "INSERT INTO ocsp_responses (ca_generation_id, hash_algorithm, serial, der, "
            "this_update, next_update) SELECT ca_generation_id, 'sha1', serial, '\\x00'::bytea, "
            "%(now)s, %(next)s FROM certificates ON CONFLICT DO NOTHING",
            {"now": _naive(now), "next": _naive(now + timedelta(days=7))})
        pg.commit()
    with psycopg.connect(plain, autocommit=True) as pg:
        pg.execute("VACUUM (ANALYZE)")
    largest = max(revoked_by_shard, key=lambda s: revoked_by_shard[s])
    summary = PopulationSummary(
        certificates=certificates + 2, residents=len(SHARDS) * RESIDENTS_PER_SHARD, cards=1,
        mobile_devices=0, revoked=sum(revoked_by_shard.values()), shards=dict(per_shard),
        revoked_by_shard=dict(revoked_by_shard), now=now)
    expected = {
        "largest_scope_entries": max(n for (_, s), n in revoked_by_scope.items() if s == largest),
        "all_entries": summary.revoked,
        "mass_revoke_count": round(summary.certificates * 0.01),
    }
    return summary, expected


def main(argv: list[str] | None = None) -> int:
    from bench import scale_revocation

    p = argparse.ArgumentParser(prog="python -m tests.bench.scale_tiny")
    p.add_argument("--certificates", type=int, default=2000)
    p.add_argument("--measure", default="sizes,crl,jobs")
    args = p.parse_args(argv)
    names = [n for n in args.measure.split(",") if n]
    with bench_hsm() as hsm, fresh_database("postgres", hsm.data_dir, "scale") as url, \
            tempfile.TemporaryDirectory(prefix="scale-work-") as work:
        summary, expected = load(hsm, url, args.certificates)
        ctx = ScaleContext(hsm=hsm, url=url, work=Path(work), population=summary)
        figures: dict[str, dict[str, float | int]] = {}
        try:
            for name in names:
                figures[name] = scale_revocation.MEASUREMENTS[name](ctx)
        finally:
            ctx.close()
    population = {"certificates": summary.certificates, "revoked": summary.revoked,
                  "largest_shard": summary.largest_shard, "shards": summary.shards,
                  "expected": expected, "today": date.today().isoformat()}
    json.dump({"population": population, "figures": figures}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
