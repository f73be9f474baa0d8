"""The measured processes of :mod:`bench.crl`: one contender per process, so that its peak
memory can be read from outside (GNU time's "Maximum resident set size").

    python -m bench.crl_child jpki    --data-dir D --database-url U --at T --kind full|delta
                                      --result R.json [--lean]
    python -m bench.crl_child builder --database-url U --generation-id G --shard S --at T
                                      --floor F --template T.der --key K.pem --out O.der
                                      --result R.json
    python -m bench.crl_child rusage  -- COMMAND...    (only without GNU time)

Nothing heavy is imported at module level: each contender pays only for what it uses. The
``jpki`` child runs what ``jpki crl publish`` runs (``api.crl_publishing.build_crl_publishing`` on
the data directory — the CRL service alone, wired as ``build_services`` wires it —, the HSM PIN
from ``JPKI_HSM_USER_PIN``, ``SOFTHSM2_CONF`` inherited) with a fixed clock, and records the peak
RSS *before* publishing (``ru_maxrss`` so far: imports, services, HSM login), so that the cost of
publishing itself is visible. With ``--lean`` it wires the CrlService by hand, without the
settings model either. Timers around the store's
``full_stats``, ``full_entries`` (time spent inside the cursor's iterator), ``delta`` and the HSM
signature cost a few dozen ``perf_counter`` calls per CRL.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


# --- jpki -----------------------------------------------------------------------------------


def run_jpki(args: argparse.Namespace) -> dict[str, Any]:
    from hsm.rsa_key import HsmRsaPrivateKey
    from jpki.model import CaKind
    from jpki.store.crls import SqlCrlSnapshot

    if not args.lean:
        from api.crl_publishing import build_crl_publishing
        from jpki.settings import Settings

    timers: dict[str, float] = {"stats": 0.0, "stream": 0.0, "delta_query": 0.0, "hsm_sign": 0.0}
    chunks = 0
    orig_stats, orig_entries = SqlCrlSnapshot.full_stats, SqlCrlSnapshot.full_entries
    orig_delta, orig_sign = SqlCrlSnapshot.delta, HsmRsaPrivateKey.sign

    def full_stats(self: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return orig_stats(self, *a, **k)
        finally:
            timers["stats"] += time.perf_counter() - t

    def full_entries(self: Any, *a: Any, **k: Any) -> Any:
        nonlocal chunks
        inner = orig_entries(self, *a, **k)
        while True:
            t = time.perf_counter()
            try:
                chunk = next(inner)
            except StopIteration:
                return
            finally:
                timers["stream"] += time.perf_counter() - t
            chunks += 1
            yield chunk

    def delta(self: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return orig_delta(self, *a, **k)
        finally:
            timers["delta_query"] += time.perf_counter() - t

    def sign(self: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return orig_sign(self, *a, **k)
        finally:
            timers["hsm_sign"] += time.perf_counter() - t

    SqlCrlSnapshot.full_stats = full_stats  # type: ignore[method-assign]
    SqlCrlSnapshot.full_entries = full_entries  # type: ignore[method-assign]
    SqlCrlSnapshot.delta = delta  # type: ignore[method-assign]
    HsmRsaPrivateKey.sign = sign  # type: ignore[method-assign]

    clock = FixedClock(datetime.fromisoformat(args.at))
    imported = time.perf_counter()
    if args.lean:
        crls, close = _lean_crl_service(Path(args.data_dir), args.database_url, clock)
    else:
        settings = Settings(data_dir=Path(args.data_dir), database_url=args.database_url)
        publishing = build_crl_publishing(settings, clock=clock)
        crls, close = publishing.crls, publishing.close
    try:
        scope = crls.scope(CaKind.SIGN, args.generation, args.shard)
        ready = time.perf_counter()
        idle_kib = _peak_kib()
        began = time.perf_counter()
        publication = crls.publish(scope, args.kind)
        seconds = time.perf_counter() - began
    finally:
        close()
    return {
        "seconds": seconds, "idle_peak_kib": idle_kib, "peak_kib_in_process": _peak_kib(),
        "import_seconds": imported - STARTED, "services_seconds": ready - imported,
        "timers": timers, "chunks": chunks,
        "path": str(crls.directory / publication.path), "entries": publication.entries,
        "size": publication.size, "number": publication.number,
        "base_number": publication.base_number, "kind": publication.kind,
    }


def _lean_crl_service(data_dir: Path, url: str, clock: FixedClock) -> tuple[Any, Any]:
    """The CrlService wired as api.composition.build_services wires it, and nothing else: no
    settings model, migrations, API or other services (ClientService hashes a dummy Argon2
    secret when it is built: 64 MiB for a moment)."""
    from hsm.keystore import KeyStore, TokenConfig
    from hsm.softhsm import activate_softhsm_config, default_module_path
    from jpki.audit import AuditLog
    from jpki.authority.ca import CaService
    from jpki.authority.recipe import load_recipe
    from jpki.revocation.crls import CrlService
    from jpki.store import UnitOfWorkFactory, create_store_engine
    from jpki.store.crls import SqlCrlEntrySource
    from jpki.urls import ServiceUrls

    recipe = load_recipe()
    activate_softhsm_config(data_dir)
    keys = KeyStore(TokenConfig(module_path=default_module_path(), token_label=recipe.token_label,
                                user_pin=os.environ["JPKI_HSM_USER_PIN"], pool_size=4))
    engine = create_store_engine(url)
    read_engine = create_store_engine(url, read_only=True)
    uow = UnitOfWorkFactory(engine)
    cas = CaService(uow, keys, clock, recipe, AuditLog(keys, recipe.audit_key_label, clock))
    crls = CrlService(uow, SqlCrlEntrySource(read_engine), keys, clock, recipe,
                      ServiceUrls("http://127.0.0.1:8000"), cas, data_dir / "crl")

    def close() -> None:
        engine.dispose()
        read_engine.dispose()
        keys.close()

    return crls, close


# --- cryptography's builder -------------------------------------------------------------------


def _reason_flags() -> dict[int, Any]:
    from cryptography import x509

    f = x509.ReasonFlags
    return {1: f.key_compromise, 2: f.ca_compromise, 3: f.affiliation_changed, 4: f.superseded,
            5: f.cessation_of_operation, 6: f.certificate_hold, 9: f.privilege_withdrawn,
            10: f.aa_compromise}


_FULL_SQL = ("SELECT serial, revoked_at, revocation_reason FROM certificates "
             "WHERE ca_generation_id = ? AND shard = ? AND revoked_at IS NOT NULL "
             "AND revoked_at <= ? AND not_after >= ? AND crl_entry IS NOT NULL")


def _rows(url: str, generation: int, shard: str, at: datetime, floor: datetime) -> Any:
    """(serial hex, revoked_at aware UTC, reason) of the shard, the same filter as the store's
    full_entries, streamed from the driver (server-side cursor on PostgreSQL)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        fmt = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DATETIME storage format
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            cur = conn.execute(_FULL_SQL, (generation, shard, at.replace(tzinfo=None).strftime(fmt),
                                           floor.replace(tzinfo=None).strftime(fmt)))
            for serial, revoked, reason in cur:
                yield serial, datetime.fromisoformat(revoked).replace(tzinfo=UTC), reason
        finally:
            conn.close()
        return
    import psycopg

    pg = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1))
    try:
        with pg.transaction(), pg.cursor(name="bench_builder") as pcur:
            pcur.itersize = 20_000
            pcur.execute(_FULL_SQL.replace("?", "%s"), (generation, shard,
                                                         at.replace(tzinfo=None),
                                                         floor.replace(tzinfo=None)))
            for serial, revoked, reason in pcur:
                yield serial, revoked.replace(tzinfo=UTC), reason
    finally:
        pg.close()


def run_builder(args: argparse.Namespace) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    imported = time.perf_counter()
    template = x509.load_der_x509_crl(Path(args.template).read_bytes())
    key = serialization.load_pem_private_key(Path(args.key).read_bytes(), password=None)
    flags = _reason_flags()
    began = time.perf_counter()
    revoked = []
    for serial, revoked_at, reason in _rows(args.database_url, args.generation_id, args.shard,
                                            datetime.fromisoformat(args.at),
                                            datetime.fromisoformat(args.floor)):
        b = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)) \
            .revocation_date(revoked_at)
        if reason in flags:
            b = b.add_extension(x509.CRLReason(flags[reason]), critical=False)
        revoked.append(b.build())
    entries_done = time.perf_counter()
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=template.issuer, last_update=template.last_update_utc,
        next_update=template.next_update_utc, revoked_certificates=revoked)
    for ext in template.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    signed = time.perf_counter()
    der = crl.public_bytes(serialization.Encoding.DER)
    with open(args.out, "wb") as out:
        out.write(der)
        out.flush()
        os.fsync(out.fileno())
    done = time.perf_counter()
    return {"seconds": done - began, "import_seconds": imported - STARTED,
            "timers": {"read_and_build_entries": entries_done - began,
                       "build_and_sign": signed - entries_done, "encode_and_write": done - signed},
            "entries": len(revoked), "size": len(der), "path": args.out}


# --- without GNU time ---------------------------------------------------------------------------


def run_rusage(command: list[str]) -> int:
    """Run ``command`` as this process's only child; print its peak RSS (KiB) to stderr as
    ``bench-rusage-maxrss-kib N``. ru_maxrss of RUSAGE_CHILDREN is the largest of the waited-for
    children, and this process has exactly one."""
    import subprocess

    code = subprocess.call(command)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"bench-rusage-maxrss-kib {peak}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "rusage":
        rest = argv[1:]
        return run_rusage(rest[1:] if rest and rest[0] == "--" else rest)
    p = argparse.ArgumentParser(prog="python -m bench.crl_child")
    sub = p.add_subparsers(dest="contender", required=True)
    j = sub.add_parser("jpki")
    j.add_argument("--data-dir", required=True)
    j.add_argument("--database-url", required=True)
    j.add_argument("--at", required=True)
    j.add_argument("--kind", choices=("full", "delta"), default="full")
    j.add_argument("--generation", type=int, default=1)
    j.add_argument("--shard", default="132217")
    j.add_argument("--result", required=True)
    j.add_argument("--lean", action="store_true",
                   help="wire the CrlService by hand instead of build_crl_publishing")
    b = sub.add_parser("builder")
    b.add_argument("--database-url", required=True)
    b.add_argument("--generation-id", type=int, required=True)
    b.add_argument("--shard", required=True)
    b.add_argument("--at", required=True)
    b.add_argument("--floor", required=True)
    b.add_argument("--template", required=True)
    b.add_argument("--key", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--result", required=True)
    args = p.parse_args(argv)
    result = run_jpki(args) if args.contender == "jpki" else run_builder(args)
    result["peak_kib_in_process"] = _peak_kib()
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
