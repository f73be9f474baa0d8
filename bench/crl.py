"""One CRL shard with a million entries: jpki's streaming publisher against cryptography's CRL
builder and ``openssl ca -gencrl``, measured in the same run.

    .venv/bin/python -m bench.crl [--entries 1000000] [--delta-entries N]
                                  [--database sqlite|postgres|both] [--repeat 3] [--json]
                                  [--save FILE] [--no-der] [--seed S]

Setup (not timed), per database, after the real key ceremony on a fresh database (SoftHSM token
in a temporary data directory, as :mod:`bench.common` sets up): one resident of 清瀬市 (132217) is
registered and one card certificate pair is issued through the real pipeline; then N revoked
``card_sign`` rows of the sign CA generation 1, shard 132217, are bulk-inserted (secondary
indexes dropped and re-created around executemany on SQLite or binary COPY on PostgreSQL, then
``VACUUM ANALYZE`` as autovacuum would). Each row is a copy of the issued certificate's row (its
DER and TBS — ``--no-der`` leaves them out —, resident, card) with its own random 127-bit
serial ≥ 2^64, public-key hash, issuance and revocation times (within the last year, in random
order: rows are inserted at issuance, revoked later) and reason, and with ``crl_entry`` — the DER
that :func:`jpki.lifecycle.crl_entries.crl_entry` stores at revocation. The entries are encoded by a
fast
equivalent of that function (asn1crypto costs 125 µs an entry: 2 minutes for 10^6), checked
byte for byte against it on a sample of rows with every reason.

Measured, each in its own process, wall clock from the parent and peak RSS from outside by GNU
time (``/usr/bin/time -v``, "Maximum resident set size"), the contenders interleaved for
``--repeat`` rounds (medians reported):

1. jpki: a fresh process builds the services like ``jpki crl publish`` does (settings on the data
   directory, the database URL, the HSM PIN from the environment) and calls
   ``CrlService.publish(scope, "full")`` — one snapshot, entries streamed from the driver cursor,
   signed in SoftHSM, file fsynced, publication recorded. It also reports its peak RSS just
   before ``publish`` (imports, services, HSM login): the idle baseline of the same process.
2. builder: cryptography's ``CertificateRevocationListBuilder`` with every ``RevokedCertificate``
   passed to its constructor, built from the same rows read from the same database (serial,
   revocation time, reason), with the same issuer, times and extensions as jpki's CRL, signed by
   an in-process RSA-2048 key, DER written and fsynced.
3. openssl: ``openssl ca -gencrl`` over an ``index.txt`` holding the same entries, with the same
   CRL extensions (AKI, IDP, freshest CRL), signed by an RSA-2048 PEM key.

and, to show what process start-up costs: "jpki, CrlService only": the same publish in a process
that wires the CrlService by hand as ``build_services`` does and builds nothing else (no settings
model, API, or the other services). Since the CLI's start-up work (docs/performance.md, "CLI
start-up"), ``jpki crl publish`` itself builds the CRL service alone too
(``api.crl_publishing``); contender 1 does what it does.

Every output is checked: it parses with cryptography, holds exactly the N serials inserted
(count and an order-independent checksum), and its signature verifies (jpki's with the CA
certificate's public key). Then N/10 more certificates are revoked after the base CRL's
thisUpdate (the fixed clock moves on one hour) and ``publish(scope, "delta")`` is measured the
same way.

Targets (issue): jpki ≥ 5× faster than either reference, and jpki's peak RSS ≤ 1/3 of the
builder's. Ratios use each process's whole wall time (startup included: what a cron'd
``jpki crl publish`` costs); the in-process figures are shown too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from bench.common import (
    MUNICIPALITY,
    OPERATOR,
    BenchError,
    BenchHsm,
    bench_hsm,
    fresh_database,
    load_average,
    machine_info,
    open_services,
    postgres_server_version,
    subject_keys,
)
from jpki.access.authz import Operation, authorize
from jpki.issuance.service import KeyRequest
from jpki.lifecycle.crl_entries import crl_entry
from jpki.model import CaKind, CertKind, RevocationReason
from jpki.store.tables import certificates

ROOT = Path(__file__).resolve().parents[1]
GNU_TIME = "/usr/bin/time"
TARGET_SPEEDUP = 5.0
TARGET_MEMORY = 1 / 3
# Reasons of revoked card certificates (reference §3.2): renewals, changed basic 4
# information, no longer needed, lost cards (hold), destroyed before delivery, compromise.
REASONS = [(RevocationReason.SUPERSEDED, 35), (RevocationReason.AFFILIATION_CHANGED, 30),
           (RevocationReason.CESSATION_OF_OPERATION, 15), (RevocationReason.CERTIFICATE_HOLD, 10),
           (RevocationReason.UNSPECIFIED, 7), (RevocationReason.KEY_COMPROMISE, 3)]
OPENSSL_REASONS = {1: "keyCompromise", 3: "affiliationChanged", 4: "superseded",
                   5: "cessationOfOperation", 6: "certificateHold,holdInstructionReject"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the data set -----------------------------------------------------------------------------


@dataclass
class Revoked:
    serials: list[int]
    revoked_at: list[datetime]
    reasons: list[int]
    created_at: list[datetime]

    def __len__(self) -> int:
        return len(self.serials)

    def checksum(self) -> tuple[int, int]:
        return checksum(self.serials)


def checksum(serials: Iterable[int]) -> tuple[int, int]:
    """(count, sum mod 2^128): the same for the same set of serials in any order."""
    n = total = 0
    for s in serials:
        n += 1
        total += s
    return n, total % (1 << 128)


def make_revoked(rng: random.Random, count: int, start: datetime, end: datetime,
                 taken: set[int]) -> Revoked:
    """``count`` revocations with times uniform in [start, end), in random order."""
    population = [int(r) for r, _ in REASONS]
    weights = [w for _, w in REASONS]
    span = int((end - start).total_seconds())
    serials: list[int] = []
    times: list[datetime] = []
    created: list[datetime] = []
    while len(serials) < count:
        s = rng.getrandbits(127)
        if s < 1 << 64 or s in taken:
            continue
        taken.add(s)
        serials.append(s)
        at = start + timedelta(seconds=rng.randrange(span))
        times.append(at)
        created.append(at - timedelta(seconds=rng.randrange(4 * 365 * 86400)))
    reasons = rng.choices(population, weights, k=count)
    return Revoked(serials, times, reasons, created)


def _der_length(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else bytes([0x81, n])


_UTC_TIME_LIMIT = datetime(2050, 1, 1, tzinfo=UTC)
_REASON_EXTENSIONS = b"\x30\x0c\x30\x0a\x06\x03\x55\x1d\x15\x04\x03\x0a\x01"


def fast_crl_entry(serial: int, at: datetime, reason: int) -> bytes:
    """Byte for byte what :func:`jpki.lifecycle.crl_entries.crl_entry` returns, for serials below
    2^127,
    whole-second times before 2050 and the reasons a stored entry can carry."""
    if at >= _UTC_TIME_LIMIT or at.microsecond:
        raise ValueError("fast_crl_entry: whole-second UTCTime only")
    value = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    body = b"\x02" + _der_length(len(value)) + value + b"\x17\x0d" + \
        at.strftime("%y%m%d%H%M%SZ").encode()
    if reason not in (RevocationReason.UNSPECIFIED, RevocationReason.REMOVE_FROM_CRL):
        body += _REASON_EXTENSIONS + bytes([reason])
    return b"\x30" + _der_length(len(body)) + body


def check_fast_entries(data: Revoked, sample: int = 2000) -> int:
    """Compare fast_crl_entry with jpki's crl_entry on ``sample`` rows plus one per reason."""
    indexes = set(range(0, len(data), max(1, len(data) // sample)))
    for reason in {r for r, _ in REASONS}:
        indexes.add(data.reasons.index(int(reason)))
    for i in sorted(indexes):
        s, at, r = data.serials[i], data.revoked_at[i], data.reasons[i]
        if fast_crl_entry(s, at, r) != crl_entry(format(s, "x"), at, RevocationReason(r)):
            raise BenchError("fast_crl_entry disagrees with jpki.lifecycle.crl_entries.crl_entry"
                             f" at row {i}")
    return len(indexes)


# --- the database -----------------------------------------------------------------------------


@dataclass
class Template:
    """The issued certificate whose row every synthetic revoked row copies."""

    resident_id: str
    card_id: int
    ca_generation_id: int
    der: bytes | None
    tbs_der: bytes | None
    issuer_public_key: rsa.RSAPublicKey
    ca_certificate_der: bytes


COLUMNS = ["serial", "kind", "resident_id", "card_id", "ca_generation_id", "status", "not_before",
           "not_after", "shard", "registry_source", "public_key_sha256", "tbs_der", "der",
           "revoked_at", "revocation_reason", "revocation_recorded_at", "crl_entry",
           "created_at", "updated_at"]
PG_TYPES = ["varchar", "varchar", "varchar", "int8", "int8", "varchar", "timestamp", "timestamp",
            "varchar", "varchar", "varchar", "bytea", "bytea", "timestamp", "int2", "timestamp",
            "bytea", "timestamp", "timestamp"]
VALIDITY = timedelta(days=5 * 365)


def _rows(t: Template, data: Revoked, rng: random.Random, text_times: bool
          ) -> Iterator[tuple[Any, ...]]:
    """The rows to insert; times as SQLAlchemy stores them on SQLite (``text_times``: naive UTC
    text with microseconds) or as naive UTC datetimes (PostgreSQL's ``timestamp``)."""
    for serial, at, reason, created in zip(data.serials, data.revoked_at, data.reasons,
                                           data.created_at, strict=True):
        times: list[Any] = [_naive(at), _naive(created), _naive(created + VALIDITY)]
        if text_times:
            times = [x.isoformat(" ") + ".000000" for x in times]
        when, born, until = times
        yield (format(serial, "x"), CertKind.CARD_SIGN.value, t.resident_id, t.card_id,
               t.ca_generation_id, "issued", born, until, MUNICIPALITY, "juminhyo",
               format(rng.getrandbits(256), "064x"), t.tbs_der, t.der, when, reason, when,
               fast_crl_entry(serial, at, reason), born, when)


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


def bulk_insert(url: str, t: Template, data: Revoked, rng: random.Random,
                batch: int = 50_000) -> float:
    """Insert the rows as a bulk load does: the certificates table's secondary indexes are
    dropped, the rows inserted in one transaction, the indexes created again from their own
    definitions (unique constraints stay in place throughout); then PostgreSQL is vacuumed and
    analysed, as autovacuum would."""
    began = time.perf_counter()
    if url.startswith("sqlite:///"):
        import sqlite3

        from sqlalchemy.dialects import sqlite as sqlite_dialect

        # The stored text must be what SQLAlchemy writes (the store compares it as text).
        dialect = sqlite_dialect.dialect()
        to_db = certificates.c.revoked_at.type.dialect_impl(dialect).bind_processor(dialect)
        probe = _naive(data.revoked_at[0]).isoformat(" ") + ".000000"
        if to_db is not None and to_db(data.revoked_at[0]) != probe:
            raise BenchError(f"SQLite datetime format: {to_db(data.revoked_at[0])!r} != {probe!r}")
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("PRAGMA cache_size=-1000000")  # setup only: 1 GB of page cache
            conn.execute("PRAGMA synchronous=OFF")  # setup only; the store uses FULL
            indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                   "AND tbl_name = 'certificates' AND sql IS NOT NULL").fetchall()
            conn.execute("BEGIN")
            for name, _ in indexes:
                conn.execute(f'DROP INDEX "{name}"')
            # Fixed column names, nothing from input.
            sql = (f"INSERT INTO certificates ({', '.join(COLUMNS)}) "  # noqa: S608
                   f"VALUES ({', '.join('?' * len(COLUMNS))})")
            rows = _rows(t, data, rng, True)
            while chunk := [row for _, row in zip(range(batch), rows, strict=False)]:
                conn.executemany(sql, chunk)
            for _, create in indexes:
                conn.execute(create)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    else:
        import psycopg

        plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(plain) as pg:
            pg_indexes = pg.execute(
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid "
                "WHERE c.relname = 'certificates' AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.oid)").fetchall()
            for name, _ in pg_indexes:
                pg.execute(f'DROP INDEX "{name}"')
            with pg.cursor() as cur, cur.copy(
                    f"COPY certificates ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(PG_TYPES)
                for row in _rows(t, data, rng, False):
                    copy.write_row(row)
            pg.execute("SET maintenance_work_mem = '512MB'")
            for _, create in pg_indexes:
                pg.execute(create)
            pg.commit()
        with psycopg.connect(plain, autocommit=True) as pg:
            pg.execute("VACUUM (ANALYZE) certificates")
    return time.perf_counter() - began


def prepare_database(hsm: BenchHsm, url: str) -> Template:
    """Ceremony, one resident and one issued card certificate pair: the row the synthetic rows
    copy (and the resident and card their foreign keys point to)."""
    services = open_services(hsm, url)
    try:
        resident = services.residents.register(
            authorize(OPERATOR, Operation.RESIDENT_REGISTER), name="清瀬 花子",
            birth_date=datetime(1980, 4, 1).date(), sex=2, address="東京都清瀬市中里1丁目1番1号",
            municipality_code=MUNICIPALITY)
        auth, sign = subject_keys(2, log=log)
        # As the CA's own operator (no station, so no identity-proofing record is needed).
        issued = services.issuance.issue(
            authorize(OPERATOR, Operation.CERTIFICATE_ISSUE), resident.id,
            [KeyRequest(CertKind.CARD_AUTH, auth), KeyRequest(CertKind.CARD_SIGN, sign)])
        serial = next(c.serial for c in issued if c.kind is CertKind.CARD_SIGN)
        with services.uow.engine.connect() as conn:
            row = conn.execute(select(certificates).where(certificates.c.serial == serial)).one()
        with services.uow() as uow:
            gen = uow.cas.current(CaKind.SIGN)
        if gen is None:
            raise BenchError("the ceremony made no sign CA generation")
        ca_cert = x509.load_der_x509_certificate(gen.certificate_der)
        public_key = ca_cert.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        return Template(resident_id=row.resident_id, card_id=row.card_id,
                        ca_generation_id=row.ca_generation_id, der=row.der, tbs_der=row.tbs_der,
                        issuer_public_key=public_key, ca_certificate_der=gen.certificate_der)
    finally:
        services.uow.engine.dispose()
        services.read_engine.dispose()


# --- running a contender ----------------------------------------------------------------------


@dataclass
class Run:
    wall_s: float
    peak_kib: int
    user_s: float | None
    sys_s: float | None
    child: dict[str, Any] = field(default_factory=dict)


def _parse_gnu_time(text: str) -> tuple[int, float, float]:
    def grab(label: str) -> str:
        m = re.search(rf"^\s*{re.escape(label)}: (.+)$", text, re.M)
        if not m:
            raise BenchError(f"GNU time printed no {label!r}")
        return m.group(1).strip()

    return (int(grab("Maximum resident set size (kbytes)")), float(grab("User time (seconds)")),
            float(grab("System time (seconds)")))


def measure(command: list[str], env: dict[str, str], workdir: Path,
            result: Path | None = None) -> Run:
    """Run ``command`` in a child process: wall clock from here, peak RSS from outside."""
    timing = workdir / "time.txt"
    timing.unlink(missing_ok=True)
    if os.access(GNU_TIME, os.X_OK):
        full = [GNU_TIME, "-v", "-o", str(timing), *command]
    else:
        full = [sys.executable, "-m", "bench.crl_child", "rusage", "--", *command]
    began = time.perf_counter()
    proc = subprocess.run(full, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise BenchError(f"{command[0]} {command[1:4]} exited {proc.returncode}: "
                         f"{proc.stderr.strip()[-2000:]}")
    if timing.exists():
        peak, user, system = _parse_gnu_time(timing.read_text())
    else:
        m = re.search(r"bench-rusage-maxrss-kib (\d+)", proc.stderr)
        if not m:
            raise BenchError("no peak RSS from the rusage wrapper")
        return Run(wall_s=wall, peak_kib=int(m.group(1)), user_s=None, sys_s=None,
                   child=json.loads(result.read_text()) if result is not None else {})
    child = json.loads(result.read_text()) if result is not None else {}
    return Run(wall_s=wall, peak_kib=peak, user_s=user, sys_s=system, child=child)


def python_child(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.crl_child", *args]


# --- the references' inputs -------------------------------------------------------------------


def write_reference_inputs(work: Path, jpki_crl: x509.CertificateRevocationList,
                           data: Revoked, template: Template) -> rsa.RSAPrivateKey:
    """The RSA key and CA certificate of the references, the builder's template (jpki's CRL
    without entries), and openssl's configuration and index.txt."""
    key = rsa.generate_private_key(65537, 2048)
    (work / "ref-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    now = datetime.now(UTC)
    ca = (x509.CertificateBuilder().subject_name(jpki_crl.issuer).issuer_name(jpki_crl.issuer)
          .public_key(key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                         critical=False)
          .sign(key, hashes.SHA256()))
    (work / "ref-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    last, next_ = jpki_crl.last_update_utc, jpki_crl.next_update_utc
    if next_ is None:
        raise BenchError("jpki's CRL has no nextUpdate")
    builder = (x509.CertificateRevocationListBuilder().issuer_name(jpki_crl.issuer)
               .last_update(last).next_update(next_))
    for ext in jpki_crl.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    (work / "template.der").write_bytes(builder.sign(key, hashes.SHA256())
                                        .public_bytes(serialization.Encoding.DER))

    idp = jpki_crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    idp_uris = [n.value for n in idp.full_name or []
                if isinstance(n, x509.UniformResourceIdentifier)]
    freshest = jpki_crl.extensions.get_extension_for_class(x509.FreshestCRL).value
    assert freshest[0].full_name is not None
    freshest_uri = freshest[0].full_name[0].value
    number = jpki_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    hours = round((next_ - last).total_seconds() / 3600)
    (work / "crlnumber").write_text(f"{number:04X}\n")
    (work / "index.txt.attr").write_text("unique_subject = no\n")
    idp_lines = "fullname = " + ", ".join(f"URI:{u}" for u in idp_uris)
    (work / "ca.cnf").write_text(f"""\
[ca]
default_ca = bench

[bench]
dir = {work}
database = $dir/index.txt
certificate = $dir/ref-ca.pem
private_key = $dir/ref-key.pem
crlnumber = $dir/crlnumber
default_md = sha256
default_crl_hours = {hours}
crl_extensions = crl_ext

[crl_ext]
authorityKeyIdentifier = keyid:always
issuingDistributionPoint = critical, @idp
freshestCRL = URI:{freshest_uri}

[idp]
{idp_lines}
onlyuser = TRUE
""")
    with open(work / "index.txt", "w", encoding="ascii", buffering=1 << 20) as out:
        for serial, at, reason, created in zip(data.serials, data.revoked_at, data.reasons,
                                               data.created_at, strict=True):
            hexs = format(serial, "X")
            if len(hexs) % 2:
                hexs = "0" + hexs
            revoked = at.strftime("%y%m%d%H%M%SZ")
            if reason in OPENSSL_REASONS:
                revoked += "," + OPENSSL_REASONS[reason]
            expiry = (created + VALIDITY).strftime("%y%m%d%H%M%SZ")
            out.write(f"R\t{expiry}\t{revoked}\t{hexs}\tunknown\t/CN=x\n")
    return key


# --- checking outputs -------------------------------------------------------------------------


def check_crl(path: Path, public_key: rsa.RSAPublicKey, expected: tuple[int, int], *,
              pem: bool = False, full: bool = True) -> dict[str, Any]:
    """Parse with cryptography; the signature, the entry count and (``full``) the serials."""
    data = path.read_bytes()
    crl = x509.load_pem_x509_crl(data) if pem else x509.load_der_x509_crl(data)
    der_size = len(crl.public_bytes(serialization.Encoding.DER)) if pem else len(data)
    count = len(crl)
    if not crl.is_signature_valid(public_key):
        raise BenchError(f"{path.name}: the signature does not verify")
    if count != expected[0]:
        raise BenchError(f"{path.name}: {count} entries, expected {expected[0]}")
    if full and checksum(e.serial_number for e in crl) != expected:
        raise BenchError(f"{path.name}: the serials differ from the ones inserted")
    return {"entries": count, "der_bytes": der_size, "serials_checked": full}


# --- one database -----------------------------------------------------------------------------

JPKI = "jpki"
LEAN = "jpki, CrlService only"
BUILDER = "cryptography builder"
OPENSSL = "openssl ca -gencrl"
DELTA = "jpki delta"


def run_database(hsm: BenchHsm, database: str, base: Revoked, delta: Revoked, t0: datetime,
                 args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    log(f"{database}: fresh database, ceremony, one issued pair")
    work = Path(tempfile.mkdtemp(prefix=f"crl-{database}-", dir=hsm.data_dir))
    env = dict(os.environ)
    env["JPKI_HSM_USER_PIN"] = hsm.keys.config.user_pin
    env.pop("JPKI_DATABASE_URL", None)
    shutil.rmtree(hsm.data_dir / "crl", ignore_errors=True)
    runs: dict[str, list[Run]] = {JPKI: [], LEAN: [], BUILDER: [], OPENSSL: []}
    checks: dict[str, dict[str, Any]] = {}
    setup: dict[str, float] = {}
    with fresh_database(database, hsm.data_dir, "crl") as url:
        template = prepare_database(hsm, url)
        if not args.der:
            template = replace(template, der=None, tbs_der=None)
        log(f"{database}: inserting {len(base):,} revoked certificates into shard {MUNICIPALITY}"
            + ("" if args.der else " (without certificate DER)"))
        setup["insert_s"] = bulk_insert(url, template, base, rng)
        log(f"  {setup['insert_s']:.1f} s")
        floor = t0 - hsm.recipe.crl.expired_grace
        expected = base.checksum()

        def jpki_cmd(kind: str, at: datetime, *extra: str) -> list[str]:
            return python_child("jpki", "--data-dir", str(hsm.data_dir), "--database-url", url,
                                "--at", at.isoformat(), "--kind", kind,
                                "--result", str(work / "jpki.json"), *extra)

        builder_cmd = python_child(
            "builder", "--database-url", url, "--generation-id", str(template.ca_generation_id),
            "--shard", MUNICIPALITY, "--at", t0.isoformat(), "--floor", floor.isoformat(),
            "--template", str(work / "template.der"), "--key", str(work / "ref-key.pem"),
            "--out", str(work / "builder.der"), "--result", str(work / "builder.json"))
        openssl_cmd = ["openssl", "ca", "-gencrl", "-config", str(work / "ca.cnf"),
                       "-out", str(work / "openssl.pem")]
        ref_key: rsa.RSAPrivateKey | None = None

        def jpki_run(name: str, cmd: list[str], expect: tuple[int, int], full: bool) -> Run:
            nonlocal ref_key
            run = measure(cmd, env, work, work / "jpki.json")
            path = Path(run.child["path"])
            checks[name] = check_crl(path, template.issuer_public_key, expect, full=full)
            log(f"  {name:48s} {run.wall_s:6.2f} s {run.peak_kib / 1024:7.1f} MiB  (in process "
                f"{run.child['seconds']:.2f} s, idle {run.child['idle_peak_kib'] / 1024:.1f} MiB)")
            if ref_key is None:
                log("  writing the references' inputs (key, template, ca.cnf, index.txt)")
                ref_key = write_reference_inputs(work, x509.load_der_x509_crl(path.read_bytes()),
                                                 base, template)
            path.unlink(missing_ok=True)  # 50 MB each
            return run

        for round_ in range(args.repeat):
            log(f"{database}: round {round_ + 1}/{args.repeat}, load average {load_average()}")
            first = round_ == 0
            runs[JPKI].append(jpki_run(JPKI, jpki_cmd("full", t0), expected, first))
            runs[LEAN].append(jpki_run(LEAN, jpki_cmd("full", t0, "--lean"), expected, first))
            assert ref_key is not None
            run = measure(builder_cmd, env, work, work / "builder.json")
            runs[BUILDER].append(run)
            checks[BUILDER] = check_crl(work / "builder.der", ref_key.public_key(), expected,
                                        full=first)
            log(f"  {BUILDER:48s} {run.wall_s:6.2f} s {run.peak_kib / 1024:7.1f} MiB")
            run = measure(openssl_cmd, env, work)
            runs[OPENSSL].append(run)
            checks[OPENSSL] = check_crl(work / "openssl.pem", ref_key.public_key(), expected,
                                        pem=True, full=first)
            log(f"  {OPENSSL:48s} {run.wall_s:6.2f} s {run.peak_kib / 1024:7.1f} MiB")

        log(f"{database}: revoking {len(delta):,} more after the base CRL's thisUpdate")
        setup["delta_insert_s"] = bulk_insert(url, template, delta, rng)
        t1 = t0 + timedelta(hours=1)
        runs[DELTA] = []
        for _ in range(args.repeat):
            run = jpki_run(DELTA, jpki_cmd("delta", t1), delta.checksum(), True)
            if run.child["kind"] != "delta" or run.child["base_number"] is None:
                raise BenchError("the delta run did not publish a delta CRL")
            runs[DELTA].append(run)
    shutil.rmtree(work, ignore_errors=True)
    return summarise(database, runs, checks, setup, len(base), len(delta))


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _summary(name: str, runs: list[Run], check: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "contender": name, "runs": len(runs),
        "wall_s": _median([r.wall_s for r in runs]), "wall_s_all": [r.wall_s for r in runs],
        "peak_mib": _median([r.peak_kib / 1024 for r in runs]),
        "peak_mib_all": [r.peak_kib / 1024 for r in runs],
        # None without GNU time (the fallback reads only the peak RSS).
        "user_s": None if runs[0].user_s is None else _median([r.user_s or 0 for r in runs]),
        "sys_s": None if runs[0].sys_s is None else _median([r.sys_s or 0 for r in runs]),
        "entries": check["entries"], "crl_bytes": check["der_bytes"], "verified": True,
    }
    if runs[0].child:
        out["in_process_s"] = _median([r.child["seconds"] for r in runs])
        out["import_s"] = _median([r.child["import_seconds"] for r in runs])
        out["timers"] = {k: _median([r.child["timers"][k] for r in runs])
                         for k in runs[0].child["timers"]}
        if "idle_peak_kib" in runs[0].child:
            out["idle_peak_mib"] = _median([r.child["idle_peak_kib"] / 1024 for r in runs])
            out["services_s"] = _median([r.child["services_seconds"] for r in runs])
    return out


def summarise(database: str, runs: dict[str, list[Run]], checks: dict[str, dict[str, Any]],
              setup: dict[str, float], entries: int, delta_entries: int) -> dict[str, Any]:
    rows = {name: _summary(name, rs, checks[name]) for name, rs in runs.items() if name != DELTA}
    builder, openssl = rows[BUILDER], rows[OPENSSL]
    ratios = {}
    for name in (JPKI, LEAN):
        if name not in rows:
            continue
        j = rows[name]
        q = {"builder_time_over_jpki": builder["wall_s"] / j["wall_s"],
             "openssl_time_over_jpki": openssl["wall_s"] / j["wall_s"],
             "jpki_peak_over_builder": j["peak_mib"] / builder["peak_mib"],
             # In-process: the builder's read + build + sign + write against publish() alone
             # (openssl has no such split: its whole run).
             "builder_in_process_over_jpki_publish": builder["in_process_s"] / j["in_process_s"],
             "openssl_over_jpki_publish": openssl["wall_s"] / j["in_process_s"]}
        q["met"] = {"speed_vs_builder": q["builder_time_over_jpki"] >= TARGET_SPEEDUP,
                    "speed_vs_openssl": q["openssl_time_over_jpki"] >= TARGET_SPEEDUP,
                    "memory_vs_builder": q["jpki_peak_over_builder"] <= TARGET_MEMORY}
        ratios[name] = q
    return {"database": database, "entries": entries, "setup_s": setup,
            "contenders": list(rows.values()), "ratios": ratios,
            "delta": {**_summary(DELTA, runs[DELTA], checks[DELTA]),
                      "delta_entries": delta_entries}}


# --- output -----------------------------------------------------------------------------------


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    m = report["machine"]
    console.print(f"[bold]jpki CRL benchmark[/] — {report['date']}\n"
                  f"command: {report['command']}\n"
                  f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['platform']}, "
                  f"Python {m['python']}, cryptography {m['cryptography']}, {m['openssl']}, "
                  f"SoftHSM {m['softhsm']}, SQLite {m['sqlite']}"
                  + (f", PostgreSQL {m['postgres']}" if m.get("postgres") else "")
                  + f"; peak RSS by {m['peak_rss_by']}; load average "
                  f"{m['load_average_at_start']} at start, {m.get('load_average_at_end')} at end; "
                  f"revision {m['revision']}")

    def verdict(ok: bool) -> str:
        return "[green]met[/]" if ok else "[red]missed[/]"

    for r in report["results"]:
        rows = r["contenders"] + [r["delta"]]
        t = Table(title=f"{r['database']}: one shard, {r['entries']:,} revoked entries, delta "
                        f"{r['delta']['delta_entries']:,} (medians of {r['delta']['runs']} runs;"
                        f" setup insert {r['setup_s']['insert_s']:.0f} s, not timed)")
        for col in ("contender", "wall s", "in-process s", "user + sys s", "peak MiB",
                    "idle MiB", "CRL bytes", "entries", "verified"):
            t.add_column(col, justify="left" if col == "contender" else "right")
        for c in rows:
            t.add_row(c["contender"], f"{c['wall_s']:.2f}",
                      f"{c['in_process_s']:.2f}" if "in_process_s" in c else "—",
                      "—" if c["user_s"] is None else f"{c['user_s']:.2f} + {c['sys_s']:.2f}",
                      f"{c['peak_mib']:.1f}",
                      f"{c['idle_peak_mib']:.1f}" if "idle_peak_mib" in c else "—",
                      f"{c['crl_bytes']:,}", f"{c['entries']:,}", "yes")
        console.print(t)
        for name, q in r["ratios"].items():
            met = q["met"]
            console.print(
                f"  [bold]{name}[/]: builder/jpki time [bold]{q['builder_time_over_jpki']:.2f}×"
                f"[/] ({verdict(met['speed_vs_builder'])}), openssl/jpki time "
                f"[bold]{q['openssl_time_over_jpki']:.2f}×[/] ({verdict(met['speed_vs_openssl'])}"
                f"), jpki/builder peak [bold]{q['jpki_peak_over_builder']:.3f}[/] "
                f"({verdict(met['memory_vs_builder'])}); publish() alone: builder "
                f"{q['builder_in_process_over_jpki_publish']:.2f}×, openssl "
                f"{q['openssl_over_jpki_publish']:.2f}×")
        console.print(f"  targets: ≥ {TARGET_SPEEDUP:g}× faster than either reference (whole "
                      "processes), peak ≤ 1/3 of the builder's")
        for c in rows:
            if "services_s" not in c:
                continue
            tm = c["timers"]
            rest = c["in_process_s"] - tm["stats"] - tm["stream"] - tm["delta_query"] - \
                tm["hsm_sign"]
            console.print(
                f"  {c['contender']}: imports {c['import_s']:.2f} s, services + HSM login "
                f"{c['services_s']:.2f} s, publish {c['in_process_s']:.2f} s = count/sum query "
                f"{tm['stats']:.2f} + cursor stream {tm['stream']:.2f} + delta query "
                f"{tm['delta_query']:.2f} + HSM signature {tm['hsm_sign'] * 1000:.1f} ms + rest "
                f"(frame, hash, write, fsync, commits) {rest:.2f}")
        b = next(c for c in r["contenders"] if c["contender"] == BUILDER)["timers"]
        console.print(
            f"  {BUILDER}: read rows + RevokedCertificate objects "
            f"{b['read_and_build_entries']:.2f} s, build + sign {b['build_and_sign']:.2f} s, "
            f"encode + write {b['encode_and_write']:.2f} s\n")


# --- the command ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.crl", description=(
        "One CRL shard with N revoked entries: jpki's publisher against cryptography's builder "
        "and openssl ca -gencrl, same run; then an N/10 delta."))
    p.add_argument("--entries", type=int, default=1_000_000,
                   help="revoked certificates in the shard (default 1000000)")
    p.add_argument("--delta-entries", type=int, default=None,
                   help="certificates revoked after the base CRL (default entries/10)")
    p.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both",
                   help="database(s) (default both; PostgreSQL: a database created on the local "
                        "server and dropped afterwards)")
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds of the three contenders, interleaved; medians (default 3)")
    p.add_argument("--seed", type=int, default=20261127, help="of the synthetic serials etc.")
    p.add_argument("--no-der", dest="der", action="store_false",
                   help="leave the certificate and TBS DER out of the synthetic rows (narrow rows:"
                        " what the queries would cost if the table held nothing else)")
    p.add_argument("--json", action="store_true", help="print one JSON document, no tables")
    p.add_argument("--save", type=Path, metavar="FILE", help="also write the JSON to FILE")
    args = p.parse_args(argv)
    if args.entries < 1 or args.repeat < 1:
        p.error("--entries and --repeat must be positive")
    if args.delta_entries is None:
        args.delta_entries = max(1, args.entries // 10)
    return args


def _openssl_version() -> str:
    out = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "openssl (unknown version)"


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    if shutil.which("openssl") is None:
        raise BenchError("openssl is not on PATH")
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    rng = random.Random(args.seed)
    # The fixed clock of the base CRL: now, whole seconds. Revocations in the year before it;
    # the delta's in the half hour after it, published an hour after it.
    t0 = datetime.now(UTC).replace(microsecond=0)
    log(f"generating {args.entries:,} + {args.delta_entries:,} revocations (not measured)")
    began = time.perf_counter()
    taken: set[int] = set()
    base = make_revoked(rng, args.entries, t0 - timedelta(days=365), t0 - timedelta(minutes=1),
                        taken)
    delta = make_revoked(rng, args.delta_entries, t0 + timedelta(seconds=1),
                         t0 + timedelta(minutes=30), taken)
    del taken
    checked = check_fast_entries(base)
    log(f"  {time.perf_counter() - began:.1f} s; fast entry encoder ="
        f" jpki.lifecycle.crl_entries.crl_entry on {checked} sampled rows")
    report: dict[str, Any] = {"command": command, "date": datetime.now(UTC).isoformat(
        timespec="seconds"), "entries": args.entries, "delta_entries": args.delta_entries,
        "targets": {"speedup_at_least": TARGET_SPEEDUP, "peak_ratio_at_most": TARGET_MEMORY},
        "results": []}
    with bench_hsm() as hsm:
        report["machine"] = machine_info(hsm.data_dir)
        report["machine"]["openssl"] = _openssl_version()
        report["machine"]["peak_rss_by"] = (
            "GNU time -v (Maximum resident set size)" if os.access(GNU_TIME, os.X_OK)
            else "getrusage(RUSAGE_CHILDREN) of a wrapper process (GNU time missing)")
        if "postgres" in databases:
            report["machine"]["postgres"] = postgres_server_version()
        for database in databases:
            report["results"].append(run_database(hsm, database, base, delta, t0, args, rng))
        report["machine"]["load_average_at_end"] = load_average()
    return report


def main(argv: list[str] | None = None) -> int:
    raw_argv = sys.argv[1:] if argv is None else argv
    args = parse_args(raw_argv)
    command = " ".join([".venv/bin/python -m bench.crl", *raw_argv])
    try:
        report = run(args, command)
    except BenchError as exc:
        print(f"bench.crl: {exc}", file=sys.stderr)
        return 2
    if args.save:
        args.save.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    if args.json:
        json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        _print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
