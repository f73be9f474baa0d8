"""End-to-end issuance throughput, against the raw SoftHSM signing rate measured in the same run.

    .venv/bin/python -m bench.issuance [--pairs N] [--threads T [T ...]]
                                       [--database sqlite|postgres|both] [--json]

For each database and thread count, on a fresh database after the real key ceremony:

1. N residents of 清瀬市 (132217) are registered and 2N RSA-2048 subject keys are ready (generated
   before anything is timed, on every core, and cached in a temporary file);
2. a few warm-up pairs are issued (not timed: they load the CA keys into the HSM sessions and fill
   the caches);
3. the raw SoftHSM rate is measured with :func:`hsm.bench.raw_sign_rate` on the sign CA key with
   T threads;
4. T threads issue the N card certificate pairs, one ``IssuanceService.issue`` call (auth + sign
   key) per resident, as a station — the whole pipeline: validation, build, lint, intent commit,
   HSM signatures, TBS check, store commit and the audit records with their HMACs in the HSM;
5. the raw rate is measured again; the baseline is the mean of 3 and 5 (SoftHSM drifts ±25 %
   between runs, so only ratios measured together mean anything).

ratio = end-to-end certificates/s ÷ raw signatures/s. The target is ≥ 0.5 on SQLite
(docs/performance.md): the pipeline around a signature may cost at most one more signature.

Then, on another fresh database, a single-threaded pass with timers around the phases says where
the time goes (exclusive time: a phase's time excludes the timed phases inside it), and
``--profile K`` adds a cProfile pass listing the K functions with the most time of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import itertools
import json
import os
import pstats
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select

from api.composition import Services
from bench.common import (
    KEY_CACHE,
    BenchError,
    BenchHsm,
    PhaseTimer,
    bench_hsm,
    child_cpu_seconds,
    fresh_database,
    load_average,
    machine_info,
    open_services,
    percentile,
    postgres_server_version,
    raw_commit_rate,
    register_residents,
    subject_keys,
)
from hsm.bench import raw_sign_rate
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, CertStatus
from jpki.registry.proofing import Document, DocumentType, Evidence, Measure, Presence
from jpki.store.tables import certificates

STATION = Principal(actor="client:bench", kind=PrincipalKind.STATION)
# The commonest counter visit (pattern A): the applicant in person with their My Number card,
# entering its PIN.
_PROOFING = Evidence(presence=Presence.IN_PERSON,
                     applicant_documents=(Document(DocumentType.MY_NUMBER_CARD),),
                     measures=frozenset({Measure.PIN_ENTRY}))
TARGET_RATIO = 0.5
PARALLEL_SIGNING = True  # --serial-signing turns it off
TARGET_DATABASE = "sqlite"

Job = tuple[str, bytes, bytes, str]  # resident id, auth key, sign key, proofing record id


@dataclass
class RunResult:
    database: str
    threads: int
    mode: str  # "single" (one issue() per pair) or "batch(N)" (issue_batch, chunks of N)
    pairs: int
    certificates: int
    seconds: float
    certificates_per_s: float
    raw_signatures_per_s: float
    raw_before: float
    raw_after: float
    ratio: float
    raw_commits_per_s: float
    target: float
    meets_target: bool
    latency_ms: dict[str, float]
    # The process's CPU time (every thread, SoftHSM's signatures included: it runs in-process)
    # per certificate: steadier than the rates on a shared machine, where waits for the CPU
    # and the disk swing.
    cpu_ms_per_certificate: float = 0.0
    # The same for one raw signature (the first raw measurement): their quotient is the ratio
    # the CPU alone allows, one thread, no waits — comparable across loads.
    raw_cpu_ms_per_signature: float = 0.0

    @property
    def cpu_ratio(self) -> float:
        return self.raw_cpu_ms_per_signature / self.cpu_ms_per_certificate \
            if self.cpu_ms_per_certificate else 0.0


@dataclass
class Breakdown:
    database: str
    pairs: int
    ms_per_pair: float
    uninstrumented_ms_per_pair: float | None
    phases: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, float] = field(default_factory=dict)
    # The HSM's own work per certificate (one RSA signature, two audit HMACs) and the ratio the
    # pipeline would reach if everything else cost nothing (against the 1-thread raw rate).
    hsm_ms_per_certificate: float = 0.0
    ratio_ceiling_hsm_only: float | None = None
    # Work that load does not change: SQL statements sent (an executemany counts once) and
    # Python function calls made, per pair (the calls counted by a separate cProfile pass,
    # with --profile).
    statements_per_pair: float = 0.0


# --- issuing ------------------------------------------------------------------------------


def _issue_one(services: Services, job: Job) -> None:
    resident_id, auth, sign, proofing_id = job
    issued = services.issuance.issue(
        authorize(STATION, Operation.CERTIFICATE_ISSUE), resident_id,
        [KeyRequest(CertKind.CARD_AUTH, auth), KeyRequest(CertKind.CARD_SIGN, sign)],
        proofing_id=proofing_id)
    if len(issued) != 2:  # pragma: no cover - the pipeline returns what it was asked for
        raise BenchError(f"issue returned {len(issued)} certificates, not 2")


def issue_batched(services: Services, jobs: list[Job],
                  chunk: int) -> tuple[float, list[float]]:
    """Issue every job through ``IssuanceService.issue_batch`` (one caller; the service signs on
    its own single signer thread, overlapped with preparing the next chunk). The latency of a
    pair is its chunk's share of the wall time."""
    from jpki.issuance.service import IssuanceOrder

    orders = [IssuanceOrder(rid, (KeyRequest(CertKind.CARD_AUTH, auth),
                                  KeyRequest(CertKind.CARD_SIGN, sign)), proofing_id=proofing)
              for rid, auth, sign, proofing in jobs]
    began = time.perf_counter()
    results = services.issuance.issue_batch(
        authorize(STATION, Operation.CERTIFICATE_ISSUE_BATCH), orders, chunk=chunk)
    elapsed = time.perf_counter() - began
    failed = [r for r in results if not isinstance(r, list)]
    if failed:
        raise BenchError(f"{len(failed)} orders refused, e.g. {failed[0]!r}")
    return elapsed, [elapsed / len(jobs)] * len(jobs)


def issue_all(services: Services, jobs: list[Job], threads: int) -> tuple[float, list[float]]:
    """Issue every job with ``threads`` threads (one: in the calling thread); return the wall
    time and each call's latency, in seconds."""
    latencies = [0.0] * len(jobs)
    if threads == 1:
        began = time.perf_counter()
        for i, job in enumerate(jobs):
            t0 = time.perf_counter()
            _issue_one(services, job)
            latencies[i] = time.perf_counter() - t0
        return time.perf_counter() - began, latencies

    counter = itertools.count()
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def worker() -> None:
        start.wait()
        while not errors:
            with lock:
                i = next(counter)
            if i >= len(jobs):
                return
            t0 = time.perf_counter()
            try:
                _issue_one(services, jobs[i])
            except BaseException as exc:
                errors.append(exc)
                return
            latencies[i] = time.perf_counter() - t0

    workers = [threading.Thread(target=worker, name=f"issuer-{n}") for n in range(threads)]
    for w in workers:
        w.start()
    began = time.perf_counter()
    start.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return elapsed, latencies


def _issued_count(services: Services) -> int:
    with services.uow.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(certificates).where(
            certificates.c.status == CertStatus.ISSUED)).scalar_one())


@dataclass
class Prepared:
    services: Services
    jobs: list[Job]


def _prepare(hsm: BenchHsm, url: str, keys: list[bytes], pairs: int, warmup: int,
             log: Callable[[str], None]) -> Prepared:
    services = open_services(hsm, url)
    # --serial-signing: a pair's two signatures one after the other, as before they overlapped
    services.issuance._parallel = PARALLEL_SIGNING
    residents = register_residents(services, pairs + warmup)
    # A station issues only against an identity-proofing record it made (jpki.registry.counter); the
    # counter visit is not part of issuance, so it happens here, untimed.
    jobs = [(rid, keys[2 * i], keys[2 * i + 1],
             services.counter.record_proofing(
                 authorize(STATION, Operation.PROOFING_RECORD), rid, _PROOFING).id)
            for i, rid in enumerate(residents)]
    if warmup:
        issue_all(services, jobs[:warmup], 1)
    log(f"  ready: ceremony, {pairs + warmup} residents, {warmup} warm-up pairs")
    return Prepared(services=services, jobs=jobs[warmup:])


def measure(hsm: BenchHsm, database: str, threads: int, keys: list[bytes], *, pairs: int,
            warmup: int, raw_seconds: float, log: Callable[[str], None],
            batch: int = 0, bulk_signer: str = "process") -> RunResult:
    """One run. ``batch`` > 0: bulk issuance in chunks of that size, against the raw rate of
    one signing stream (the batch path signs on exactly one thread at a time). ``bulk_signer``
    "pool": the batch path's signatures on the key store's in-process sessions instead of its
    bulk signing process (hsm.bulk_signer), for comparison."""
    mode = f"batch({batch})" if batch else "single"
    if batch and bulk_signer == "pool":
        mode += " pool"
    if batch:
        threads = 1
    log(f"{database}, {mode}, {threads} thread(s): {pairs} pairs")
    label = hsm.recipe.ca(CaKind.SIGN).key_label(1)
    with fresh_database(database, hsm.data_dir, f"run-t{threads}") as url:
        prep = _prepare(hsm, url, keys, pairs, warmup, log)
        if bulk_signer == "pool":
            prep.services.issuance._keys = hsm.pool_keys
        elif batch:
            hsm.keys.sign_many(label, [b"warm-up"])  # the bulk signing process starts untimed
        try:
            raw_cpu = time.process_time()
            raw_before = raw_sign_rate(hsm.keys, label, seconds=raw_seconds, threads=threads)
            raw_cpu = time.process_time() - raw_cpu
            cpu_began = time.process_time() + child_cpu_seconds(hsm.keys.bulk_signer_pid)
            seconds, latencies = (issue_batched(prep.services, prep.jobs, batch) if batch
                                  else issue_all(prep.services, prep.jobs, threads))
            # The bulk signing process's CPU counts too (it started, if at all, in the warm-up
            # or the first chunk: a process started during the run counts from zero).
            cpu = (time.process_time() + child_cpu_seconds(hsm.keys.bulk_signer_pid)
                   - cpu_began)
            raw_after = raw_sign_rate(hsm.keys, label, seconds=raw_seconds, threads=threads)
            issued = _issued_count(prep.services)
        finally:
            prep.services.uow.engine.dispose()
        commits = raw_commit_rate(url, seconds=min(raw_seconds, 2.0))
    expected = 2 * (pairs + warmup)
    if issued != expected:
        raise BenchError(f"{issued} certificates issued in the database, expected {expected}")
    certs = 2 * pairs
    rate = certs / seconds
    raw = (raw_before + raw_after) / 2
    ms = sorted(x * 1000 for x in latencies)
    result = RunResult(
        database=database, threads=threads, mode=mode, pairs=pairs, certificates=certs,
        seconds=seconds,
        certificates_per_s=rate, raw_signatures_per_s=raw, raw_before=raw_before,
        raw_after=raw_after, ratio=rate / raw, raw_commits_per_s=commits, target=TARGET_RATIO,
        meets_target=rate / raw >= TARGET_RATIO,
        latency_ms={"p50": percentile(ms, 50), "p95": percentile(ms, 95), "max": ms[-1]},
        cpu_ms_per_certificate=cpu * 1000 / certs,
        raw_cpu_ms_per_signature=raw_cpu * 1000 / (raw_before * raw_seconds))
    log(f"  {rate:,.0f} certificates/s, raw {raw:,.0f} signatures/s "
        f"({raw_before:,.0f} before, {raw_after:,.0f} after), ratio {result.ratio:.3f}; "
        f"{commits:,.0f} durable commits/s; CPU {result.cpu_ms_per_certificate:.2f} ms per "
        f"certificate, {result.raw_cpu_ms_per_signature:.2f} ms per raw signature (CPU ratio "
        f"{result.cpu_ratio:.3f})")
    return result


# --- where the time goes ------------------------------------------------------------------

GROUPS = {
    "HSM": ("HSM:",),
    "database": ("DB:",),
    "build + lint": ("build:", "lint"),
    "check + audit + pipeline Python": ("check:", "validate:", "audit:", "pipeline:"),
}


def _instrument(timer: PhaseTimer, services: Services) -> None:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    import jpki.issuance.service as issuance
    from jpki.store import repositories
    from jpki.store.uow import SqlUnitOfWork

    # The same breakdown of a revision before the planners and the Core write path (to record
    # a "before" with this harness): what it lacks is simply not timed apart.
    try:
        import jpki.issuance.card as card_planner
    except ImportError:
        card_planner = issuance
    records: tuple[type, ...] = ()
    with contextlib.suppress(ImportError):
        from jpki.store.issuance import SqlIssuanceRecords

        records = (SqlIssuanceRecords,)

    local = threading.local()

    def commit_label() -> str:
        n = local.commits = getattr(local, "commits", 0) + 1
        return {1: "DB: commit of the intent (step 4)",
                2: "DB: commit of the certificates (step 7)"}.get(n, "DB: other commits")

    timer.patch(card_planner, "load_subject_key", "validate: parse and check subject keys")
    timer.patch(issuance, "build_end_entity", "build: certificate builder (profiles)")
    timer.patch(issuance, "to_be_signed", "build: TBS + lint certificate (recording signer)")
    timer.patch(issuance, "lint_end_entity", "lint: profile checks")
    timer.patch(issuance, "sign_tbs", "check: assemble, re-parse, verify signature (step 6)")
    timer.patch(services.keys, "sign_with_mechanism", "HSM: RSA-2048 signature (step 5)")
    timer.patch(services.keys, "hmac_sha256", "HSM: audit HMAC-SHA-256")
    timer.patch(services.audit, "record", "audit: canonical JSON, record objects")
    timer.patch(Session, "execute", "DB: statements (SELECT/INSERT/UPDATE, pool checkout)")
    # Core statements run on the session's connection directly (jpki.store.issuance).
    timer.patch(Connection, "execute", "DB: statements (SELECT/INSERT/UPDATE, pool checkout)")
    timer.patch(Session, "get", "DB: statements (SELECT/INSERT/UPDATE, pool checkout)")
    timer.patch(Session, "flush", "DB: ORM flush (INSERT/UPDATE of entities)")
    # Statement building and row mapping in the repositories, outside Session.execute itself.
    for repository in (repositories.SqlMunicipalities, repositories.SqlResidents,
                       repositories.SqlCards, repositories.SqlCertificates, repositories.SqlCas,
                       repositories.SqlAudit, repositories.SqlProofings, *records):
        for name, member in list(vars(repository).items()):
            if callable(member) and not name.startswith("_"):
                timer.patch(repository, name, "DB: repositories (build statements, map rows)")
    timer.patch(SqlUnitOfWork, "commit", commit_label)
    timer.patch(SqlUnitOfWork, "__enter__", "DB: open/close unit of work")
    timer.patch(SqlUnitOfWork, "__exit__", "DB: open/close unit of work")
    dialect = services.uow.engine.dialect
    if getattr(services.uow.engine.pool, "_pre_ping", False):
        timer.patch(dialect, "do_ping", "DB: pool pre-ping")
    timed_issue = timer.wrap("pipeline: rest (rules, ORM objects, serials, Python)",
                             services.issuance.issue)

    def issue(*args: Any, **kwargs: Any) -> Any:
        local.commits = 0
        return timed_issue(*args, **kwargs)

    services.issuance.issue = issue  # type: ignore[method-assign]
    timer.on_restore(lambda: delattr(services.issuance, "issue"))


def breakdown(hsm: BenchHsm, database: str, keys: list[bytes], *, pairs: int, warmup: int,
              uninstrumented: RunResult | None, log: Callable[[str], None]) -> Breakdown:
    log(f"{database}: breakdown, {pairs} pairs, 1 thread, phases timed")
    with fresh_database(database, hsm.data_dir, "breakdown") as url:
        prep = _prepare(hsm, url, keys, pairs, warmup, log)
        timer = PhaseTimer()
        statements = 0

        def counted(*_args: Any) -> None:
            nonlocal statements
            statements += 1

        engine = prep.services.uow.engine
        event.listen(engine, "before_cursor_execute", counted)
        try:
            _instrument(timer, prep.services)
            seconds, _ = issue_all(prep.services, prep.jobs, 1)
        finally:
            timer.restore()
            event.remove(engine, "before_cursor_execute", counted)
            prep.services.uow.engine.dispose()
    total = sum(timer.seconds.values())
    phases = sorted(({"phase": name, "ms_per_pair": s * 1000 / pairs,
                      "calls_per_pair": timer.calls[name] / pairs, "share": s / total}
                     for name, s in timer.seconds.items()),
                    key=lambda p: -p["ms_per_pair"])
    groups = {g: sum(p["ms_per_pair"] for p in phases if p["phase"].startswith(prefixes))
              for g, prefixes in GROUPS.items()}
    hsm_ms = groups["HSM"] / 2
    return Breakdown(database=database, pairs=pairs, ms_per_pair=seconds * 1000 / pairs,
                     uninstrumented_ms_per_pair=(
                         uninstrumented.seconds * 1000 / uninstrumented.pairs
                         if uninstrumented else None),
                     phases=phases, groups=groups, hsm_ms_per_certificate=hsm_ms,
                     ratio_ceiling_hsm_only=(1000 / hsm_ms / uninstrumented.raw_signatures_per_s
                                             if uninstrumented and hsm_ms else None),
                     statements_per_pair=statements / pairs)


def profile(hsm: BenchHsm, database: str, keys: list[bytes], *, pairs: int, warmup: int,
            top: int, log: Callable[[str], None]) -> dict[str, Any]:
    log(f"{database}: cProfile, {pairs} pairs, 1 thread")
    with fresh_database(database, hsm.data_dir, "profile") as url:
        prep = _prepare(hsm, url, keys, pairs, warmup, log)
        profiler = cProfile.Profile()
        try:
            profiler.enable()
            issue_all(prep.services, prep.jobs, 1)
            profiler.disable()
        finally:
            prep.services.uow.engine.dispose()
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in \
            stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(filename)}:{line}({name})", "calls_per_pair":
                     calls / pairs, "own_ms_per_pair": own * 1000 / pairs,
                     "cumulative_ms_per_pair": cumulative * 1000 / pairs})
    rows.sort(key=lambda r: -r["own_ms_per_pair"])
    return {"python_calls_per_pair": stats.total_calls / pairs,  # type: ignore[attr-defined]
            "functions": rows[:top]}


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    cwd = os.getcwd() + "/"
    return filename.removeprefix(cwd)


# --- output -------------------------------------------------------------------------------


def _print_tables(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 150)
    m = report["machine"]
    console.print(f"[bold]jpki issuance benchmark[/] — {report['date']}\n"
                  f"command: {report['command']}\n"
                  f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['platform']}, "
                  f"Python {m['python']}, SoftHSM {m['softhsm']}, SQLite {m['sqlite']}"
                  + (f", PostgreSQL {m['postgres']}" if m.get("postgres") else "")
                  + f", data dir on {m['data_dir_filesystem']}; load average "
                  f"{m['load_average_at_start']} at start, {m.get('load_average_at_end')} at end; "
                  f"revision {m['revision']}")
    table = Table(title=f"End-to-end issuance vs raw SoftHSM RSA-2048 signing (target ratio ≥ "
                        f"{TARGET_RATIO} on SQLite)")
    for col in ("database", "mode", "threads", "pairs", "certificates/s", "raw signatures/s",
                "(before / after)", "ratio", "target", "p50 ms/pair", "p95 ms/pair",
                "durable commits/s", "CPU ms/cert"):
        table.add_column(col, justify="left" if col == "database" else "right")
    for r in report["results"]:
        if r["database"] == TARGET_DATABASE:
            verdict = "[green]met[/]" if r["meets_target"] else "[red]missed[/]"
        else:
            verdict = "(report)"
        table.add_row(r["database"], r["mode"], str(r["threads"]), str(r["pairs"]),
                      f"{r['certificates_per_s']:,.1f}", f"{r['raw_signatures_per_s']:,.0f}",
                      f"{r['raw_before']:,.0f} / {r['raw_after']:,.0f}", f"{r['ratio']:.3f}",
                      verdict, f"{r['latency_ms']['p50']:.2f}", f"{r['latency_ms']['p95']:.2f}",
                      f"{r['raw_commits_per_s']:,.0f}", f"{r['cpu_ms_per_certificate']:.2f}")
    console.print(table)
    for b in report["breakdowns"]:
        extra = ""
        if b["uninstrumented_ms_per_pair"]:
            extra = f"; uninstrumented 1-thread run: {b['uninstrumented_ms_per_pair']:.2f} ms"
        t = Table(title=f"Where a pair's time goes — {b['database']}, 1 thread, {b['pairs']} pairs"
                        f" (instrumented: {b['ms_per_pair']:.2f} ms/pair{extra})")
        t.add_column("phase (exclusive time)")
        t.add_column("ms/pair", justify="right")
        t.add_column("calls/pair", justify="right")
        t.add_column("share", justify="right")
        for p in b["phases"]:
            t.add_row(p["phase"], f"{p['ms_per_pair']:.3f}", f"{p['calls_per_pair']:.1f}",
                      f"{p['share']:.1%}")
        t.add_section()
        for g, ms in b["groups"].items():
            t.add_row(f"[bold]{g}[/]", f"{ms:.3f}", "", f"{ms / b['ms_per_pair']:.1%}")
        console.print(t)
        console.print(f"SQL statements per pair: {b['statements_per_pair']:.1f}")
        if b["ratio_ceiling_hsm_only"]:
            console.print(f"HSM work per certificate (1 RSA signature + 2 audit HMACs): "
                          f"{b['hsm_ms_per_certificate']:.3f} ms; ratio if nothing else cost "
                          f"anything: {b['ratio_ceiling_hsm_only']:.2f}\n")
    for database, found in report["profiles"].items():
        rows = found["functions"]
        t = Table(title=f"cProfile — {database}, 1 thread: most own time "
                        f"({found['python_calls_per_pair']:,.0f} Python calls per pair)")
        t.add_column("function")
        for col in ("calls/pair", "own ms/pair", "cum ms/pair"):
            t.add_column(col, justify="right")
        for r in rows:
            t.add_row(r["function"], f"{r['calls_per_pair']:.1f}", f"{r['own_ms_per_pair']:.3f}",
                      f"{r['cumulative_ms_per_pair']:.3f}")
        console.print(t)


# --- the command --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.issuance",
                                description="End-to-end card certificate issuance throughput "
                                            "against the raw SoftHSM signing rate, same run.")
    p.add_argument("--pairs", type=int, default=300,
                   help="certificate pairs (residents) per measured run (default 300)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="T",
                   help="issuing threads; several values run several times (default: 1 2)")
    p.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both",
                   help="database(s) to measure (default both; PostgreSQL on the local server, "
                        "a database created and dropped by the run)")
    p.add_argument("--batch", type=int, nargs="*", default=[32], metavar="N",
                   help="also measure bulk issuance (issue_batch) in chunks of N; several values "
                        "run several times; none: skip (default: 32)")
    p.add_argument("--bulk-signer", choices=("process", "pool", "both"), default="process",
                   help="where the batch path signs: the key store's bulk signing process, as "
                        "`jpki serve` on SoftHSM does (default), its in-process session pool, or "
                        "both, one run each")
    p.add_argument("--serial-signing", action="store_true",
                   help="sign a pair's two certificates one after the other, not at once on "
                        "two HSM sessions (for comparison)")
    p.add_argument("--json", action="store_true", help="print one JSON document, no tables")
    p.add_argument("--save", type=Path, metavar="FILE",
                   help="also write the JSON document to FILE")
    p.add_argument("--warmup", type=int, default=5, help="untimed pairs first (default 5)")
    p.add_argument("--raw-seconds", type=float, default=3.0,
                   help="seconds of each raw signing measurement (default 3)")
    p.add_argument("--breakdown-pairs", type=int, default=100,
                   help="pairs of the timed-phases pass per database; 0: none (default 100)")
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="also run a cProfile pass and list its K top functions (default: off)")
    p.add_argument("--pool-size", type=int, default=4,
                   help="HSM session pool size (default 4, as JPKI_HSM_POOL_SIZE)")
    p.add_argument("--key-cache", type=Path, default=KEY_CACHE,
                   help=f"file caching the subject public keys (default {KEY_CACHE})")
    p.add_argument("--no-key-cache", action="store_true", help="generate keys afresh, keep none")
    p.add_argument("--switch-interval", type=float, default=None, metavar="MS",
                   help="the interpreter's thread switch interval for the whole run, in ms "
                        "(sys.setswitchinterval; default: Python's, 5 ms). The batch path's "
                        "signer thread needs the GIL after each HSM signature, while the main "
                        "thread builds and lints without releasing it")
    args = p.parse_args(argv)
    if args.pairs < 1 or args.warmup < 0 or args.breakdown_pairs < 0 or args.profile < 0:
        p.error("--pairs must be positive; --warmup, --breakdown-pairs, --profile not negative")
    if any(t < 1 for t in args.threads):
        p.error("--threads must be positive")
    if args.switch_interval is not None and args.switch_interval <= 0:
        p.error("--switch-interval must be positive")
    return args


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    global PARALLEL_SIGNING
    PARALLEL_SIGNING = not args.serial_signing
    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval / 1000)
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    profile_pairs = (args.breakdown_pairs or args.pairs) if args.profile else 0
    needed = 2 * (max(args.pairs, args.breakdown_pairs, profile_pairs) + args.warmup)
    keys = subject_keys(needed, None if args.no_key_cache else args.key_cache, log)
    report: dict[str, Any] = {"command": command, "date": datetime.now(UTC).isoformat(
        timespec="seconds"), "results": [], "breakdowns": [], "profiles": {}}
    with bench_hsm(pool_size=args.pool_size) as hsm:
        report["machine"] = machine_info(hsm.data_dir)
        report["machine"]["switch_interval_ms"] = sys.getswitchinterval() * 1000
        if "postgres" in databases:
            report["machine"]["postgres"] = postgres_server_version()
            if report["machine"]["postgres"] is None:
                raise BenchError("PostgreSQL is not reachable (set JPKI_BENCH_POSTGRES_URL, or "
                                 "run with --database sqlite)")
        for database in databases:
            results = [measure(hsm, database, t, keys, pairs=args.pairs, warmup=args.warmup,
                               raw_seconds=args.raw_seconds, log=log) for t in args.threads]
            signers = ["process", "pool"] if args.bulk_signer == "both" else [args.bulk_signer]
            results += [measure(hsm, database, 1, keys, pairs=args.pairs, warmup=args.warmup,
                                raw_seconds=args.raw_seconds, log=log, batch=n, bulk_signer=b)
                        for n in args.batch for b in signers]
            report["results"].extend({**asdict(r), "cpu_ratio": r.cpu_ratio} for r in results)
            single = next((r for r in results if r.threads == 1 and r.mode == "single"), None)
            if args.breakdown_pairs:
                b = breakdown(hsm, database, keys, pairs=args.breakdown_pairs,
                              warmup=args.warmup, uninstrumented=single, log=log)
                report["breakdowns"].append(asdict(b))
            if args.profile:
                report["profiles"][database] = profile(
                    hsm, database, keys, pairs=profile_pairs,
                    warmup=args.warmup, top=args.profile, log=log)
        report["machine"]["load_average_at_end"] = load_average()
    return report


def main(argv: list[str] | None = None) -> int:
    raw_argv = sys.argv[1:] if argv is None else argv
    args = parse_args(raw_argv)
    command = " ".join([".venv/bin/python -m bench.issuance", *raw_argv])
    try:
        report = run(args, command)
    except BenchError as exc:
        print(f"bench.issuance: {exc}", file=sys.stderr)
        return 2
    if args.save:
        args.save.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    if args.json:
        json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        _print_tables(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
