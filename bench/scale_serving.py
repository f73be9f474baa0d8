"""What serving costs on a national-scale database: issuance, OCSP and the relying parties'
status lookups, measured on the database :mod:`bench.population` loaded (:mod:`bench.scale`
runs them at 10^5, 10^6 and 10^7 certificates).

Every measurement is ``measure(ctx: ScaleContext) -> dict[str, float | int]``
(:mod:`bench.scale_context`) and runs the same code at every size: nothing here counts or scans
the whole ``certificates`` table. Certificates are sampled at random points of the serials'
space (:func:`sample_certificates`: a probe of the serial index each), not with ``TABLESAMPLE
SYSTEM``, which draws whole pages: the rows of a page were loaded together, of one
municipality, so a page sample is clustered; nor by random ids, which the loader writes in
ranges with gaps between them.

Sampling reads the sampled rows and their serial index entries, so the measured lookups find
them in PostgreSQL's buffers or the page cache: a cold figure measures a lookup that misses the
service's own memory — the statements, the service's work and, for OCSP, the signature and the
write — not a disk read (at 10^7 certificates the database fits in the page cache of a machine
with 16 GB or more anyway). Dropping the caches would need root and would disturb everything
else on the machine.

- :func:`measure_issuance`: card certificate pairs issued in process, single path and batch path;
- :func:`measure_ocsp`: a real ``jpki serve`` answering OCSP for a hot set and for cold misses;
- :func:`measure_status`: the same server answering ``POST /v1/status`` batches;
- :func:`measure_serving`: both of the latter against one server, started once.

Before a server starts, the CRLs its maintenance would find due are published in this process
(:func:`publish_due`): otherwise the server's 60 s maintenance loop would sign some 3,600 CRLs
in the middle of a run.

A measurement changes the database a little — residents and certificates issued, the sampled
certificates' stored OCSP responses replaced by real ones, a relying party registered, audit
records — and never a certificate's status.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import random
import secrets
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509 import ocsp
from sqlalchemy import ARRAY, Engine, String, bindparam, delete, func, select, true

from api.in_process import free_port
from bench.common import (
    OPERATOR,
    BenchError,
    jpki_command,
    percentile,
    resident_fields,
    subject_keys,
)
from bench.issuance import _PROOFING, STATION, Job, issue_all, issue_batched
from bench.ocsp import (
    Cert,
    Issuer,
    Server,
    exchange,
    http_request,
    issuer_of,
    ocsp_request,
    run_wrk,
    signature_fault,
    started,
    write_requests,
)
from bench.scale_context import ScaleContext
from jpki.access.authz import Operation, authorize
from jpki.model import CaKind, CertStatus, RevocationReason
from jpki.relying_parties.status_lookup import MAX_BATCH
from jpki.store.tables import (
    ca_generations,
    certificates,
    municipalities,
    ocsp_responders,
    ocsp_responses,
)

# --- issuance -----------------------------------------------------------------------------

ISSUANCE_PAIRS = 200
ISSUANCE_WARMUP = 5
BATCH_CHUNK = 32  # IssuanceService.issue_batch's default: what POST .../certificate-batches uses

# --- OCSP ---------------------------------------------------------------------------------

OCSP_HOT = 1_000
OCSP_SECONDS = 15.0
OCSP_CONNECTIONS = 8  # the responder's in-flight cap on live signatures is 8 (tryLater beyond)
# Cold requests are each sent once: the run needs more distinct ones than it can send. On the
# signing path 2 cores cannot exceed this rate (one RSA-2048 signature in SoftHSM, a read and a
# commit per answer); should a run ever exceed it, the Lua script says so and the run fails.
OCSP_COLD_BOUND_PER_S = 1_500
CHECKED_SAMPLE = 200  # responses whose signature and responder chain are verified too

# --- status -------------------------------------------------------------------------------

STATUS_BATCH = MAX_BATCH  # the most serials one call takes
STATUS_BATCHES = 300  # distinct cold batches prepared at most (300,000 serials)
STATUS_SECONDS = 20.0
STATUS_HOT_SECONDS = 5.0
STATUS_CONNECTIONS = 8
STATUS_CHECKED_BATCHES = 5
PURPOSE = "account_opening"

ID_CHUNK = 10_000
START_TIMEOUT = 3_600.0


def log(message: str) -> None:
    sys.stderr.write(f"[scale_serving] {message}\n")
    sys.stderr.flush()


# --- sampling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampled:
    """A certificate drawn from the loaded table, with what its status must be."""

    id: int
    serial: str  # lower-case hex, as stored
    generation_id: int
    revoked_at: datetime | None
    reason: RevocationReason | None

    def revoked(self, now: datetime) -> bool:
        return self.revoked_at is not None and self.revoked_at <= now


def _responding_generations(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return {int(g) for g in conn.execute(select(ocsp_responders.c.ca_generation_id)
                                             .distinct()).scalars()}


def _fetch(engine: Engine, ids: Sequence[int], generations: set[int]) -> list[Sampled]:
    c = certificates.c
    out = []
    with engine.connect() as conn:
        for start in range(0, len(ids), ID_CHUNK):
            rows = conn.execute(select(c.id, c.serial, c.ca_generation_id, c.revoked_at,
                                       c.revocation_reason)
                                .where(c.id.in_(ids[start:start + ID_CHUNK]),
                                       c.status == CertStatus.ISSUED))
            out += [Sampled(int(r.id), r.serial, int(r.ca_generation_id), r.revoked_at,
                            r.revocation_reason)
                    for r in rows if int(r.ca_generation_id) in generations]
    return out


def _after_points(engine: Engine, points: Sequence[str],
                  generations: set[int]) -> list[Sampled]:
    """For each point, the issued certificate with the smallest serial at or after it: one
    index probe each (the serial index), a statement per :data:`ID_CHUNK` points."""
    c = certificates.c
    at = func.unnest(bindparam("points", type_=ARRAY(String))).table_valued("x") \
        .render_derived()
    after = (select(c.id, c.serial, c.ca_generation_id, c.revoked_at, c.revocation_reason)
             .where(c.serial >= at.c.x, c.status == CertStatus.ISSUED)
             .order_by(c.serial).limit(1).lateral())
    stmt = select(after).select_from(at).join(after, true())
    out = []
    with engine.connect() as conn:
        for start in range(0, len(points), ID_CHUNK):
            rows = conn.execute(stmt, {"points": list(points[start:start + ID_CHUNK])})
            out += [Sampled(int(r.id), r.serial, int(r.ca_generation_id), r.revoked_at,
                            r.revocation_reason)
                    for r in rows if int(r.ca_generation_id) in generations]
    return out


def sample_certificates(engine: Engine, count: int, rng: random.Random,
                        exclude: set[int] | frozenset[int] = frozenset()) -> list[Sampled]:
    """Up to ``count`` distinct issued certificates of CA generations with an OCSP responder,
    drawn at random, none of ``exclude`` (ids), in random order (PostgreSQL).

    Each draw is a random point in the serials' space, and the certificate whose serial comes
    next: one probe of the serial index, so the cost grows with ``count``, not with the table,
    and gaps in the ids (the loader writes id ranges, one per process) do not matter. Serials
    are random (RFC 5280 §4.1.2.2, jpki.serials), so which certificate follows a random point
    is independent of everything the measurements depend on — status, shard, kind, age —
    though not exactly uniform over rows (one after a wider gap is likelier). Draws are
    repeated for duplicates and for points past the last serial, until most land on rows
    already drawn: ask for at most half the table."""
    generations = _responding_generations(engine)
    found: dict[int, Sampled] = {}
    for _ in range(20):
        want = count - len(found)
        if want <= 0:
            break
        points = [format(rng.getrandbits(128), "032x") for _ in range(want * 9 // 8 + 16)]
        before = len(found)
        for s in _after_points(engine, points, generations):
            if s.id not in exclude:
                found.setdefault(s.id, s)
        if len(found) - before < want // 8:
            break  # most draws land on rows already drawn: ``count`` is most of the table
    picked = list(found.values())[:count]
    rng.shuffle(picked)
    return picked


def read_issuers(engine: Engine) -> dict[int, Issuer]:
    """Every CA generation's CertID hashes, by generation id (computed with `cryptography`,
    independently of jpki's own code)."""
    g = ca_generations.c
    with engine.connect() as conn:
        rows = conn.execute(select(g.id, g.ca, g.certificate_der)).all()
    return {int(gid): issuer_of(int(gid), str(getattr(ca, "value", ca)), bytes(der))
            for gid, ca, der in rows}


def _engine(ctx: ScaleContext) -> Engine:
    return ctx.services().uow.engine


# --- checking an OCSP answer ----------------------------------------------------------------


def check_ocsp(body: bytes, cert: Sampled, issuer: Issuer, now: datetime, *,
               verify: bool) -> str | None:
    """None when ``body`` is a successful OCSP response about ``cert`` saying what its row says
    (good, or revoked with the row's time and reason); with ``verify``, its signature by the
    responder certificate it carries, and that certificate issued by the CA, verify too."""
    try:
        resp = ocsp.load_der_ocsp_response(body)
    except ValueError:
        return "not a DER OCSPResponse"
    if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return f"responseStatus {resp.response_status.name}"
    if resp.serial_number != int(cert.serial, 16):
        return "wrong serial"
    if (resp.issuer_name_hash, resp.issuer_key_hash) != (issuer.name_hash, issuer.key_hash):
        return "wrong CertID"
    if resp.this_update_utc > now + timedelta(seconds=5) or \
            (resp.next_update_utc is not None and resp.next_update_utc <= now):
        return "not current"
    if not cert.revoked(now):
        if resp.certificate_status is not ocsp.OCSPCertStatus.GOOD:
            return f"{resp.certificate_status.name} instead of GOOD"
    else:
        assert cert.revoked_at is not None
        if resp.certificate_status is not ocsp.OCSPCertStatus.REVOKED:
            return f"{resp.certificate_status.name} instead of REVOKED"
        # GeneralizedTime in the response has no fraction of a second.
        said = resp.revocation_time_utc
        if said is None or abs((said - cert.revoked_at).total_seconds()) >= 1:
            return "wrong revocation time"
        wanted = None if cert.reason in (None, RevocationReason.UNSPECIFIED) else \
            x509.ReasonFlags(cert.reason.rfc_name)
        if resp.revocation_reason is not wanted:
            return f"wrong reason {resp.revocation_reason}"
    return signature_fault(resp, issuer, chain=True) if verify else None


def current(engine: Engine, certs: Sequence[Sampled]) -> list[Sampled]:
    """The same certificates as their rows are now: the server's maintenance may have changed a
    status since they were sampled (a smartphone's certificates held, a delivery sweep)."""
    now = {s.id: s for s in _fetch(engine, [c.id for c in certs], {c.generation_id
                                                                  for c in certs})}
    if len(now) != len(certs):
        raise BenchError("sampled certificates are gone from the table")
    return [now[c.id] for c in certs]


def check_answers(engine: Engine, port: int, requests: Sequence[bytes],
                  certs: Sequence[Sampled], issuers: dict[int, Issuer], *, verify: bool) -> int:
    """Send each request once and check each answer against the rows as they are then; raise
    on the first wrong one."""
    answers = exchange(port, list(requests))
    if len(answers) != len(requests):
        raise BenchError("OCSP responses missing")
    now = datetime.now(UTC)
    certs = current(engine, certs)
    for (status, body), cert in zip(answers, certs, strict=True):
        problem = f"HTTP {status}" if status != 200 else check_ocsp(
            body, cert, issuers[cert.generation_id], now, verify=verify)
        if problem is not None:
            raise BenchError(f"wrong OCSP response for serial {cert.serial}: {problem}")
    return len(answers)


# --- the server -----------------------------------------------------------------------------


def serve_env(ctx: ScaleContext) -> dict[str, str]:
    """``jpki serve``'s environment: the token of the bench (its PIN), the loaded database, and
    the relying parties' rate limit out of the way (the limiter still runs, it never refuses)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JPKI_") and k != "SOFTHSM2_CONF"}
    env.update({"JPKI_DATA_DIR": str(ctx.hsm.data_dir), "JPKI_DATABASE_URL": ctx.url,
                "JPKI_HSM_USER_PIN": ctx.hsm.keys.config.user_pin,
                "JPKI_RP_RATE_PER_SECOND": "1000000", "JPKI_RP_RATE_BURST": "1000000",
                # The loaded devices' last check-ins are spread over their whole life: at start
                # the sweep would flag most devices (a few ms each) and put their certificates
                # on hold — and the OCSP refresh re-sign them while we measure. A real
                # population checks in; the sweep still runs its revoking pass.
                "JPKI_MOBILE_HOLD_SILENT_DAYS": "0", "JPKI_MOBILE_FLAG_SILENT_DAYS": "3650",
                "PYTHONUNBUFFERED": "1"})
    return env


@dataclass
class Serving:
    server: Server
    start_seconds: float
    """From the command to the first healthy answer (its maintenance at start, the OCSP
    reconciliation)."""
    crl_seconds: float
    """Publishing the CRLs that were due, before the server started (see :func:`publish_due`)."""

    def figures(self) -> dict[str, float | int]:
        return {"serve_start_s": self.start_seconds, "serve_crls_due_s": self.crl_seconds}


def publish_due(ctx: ScaleContext) -> tuple[int, float]:
    """Publish, in this process, the CRLs the server's maintenance would find due — what it
    does at start and on any tick of its 60 s loop — the way it does (fulls, then the deltas
    due after them). Every shard has two scopes (sign and auth CAs): on a loaded database that
    is some 3,600 CRLs, a minute at 10^5 certificates on 2 cores; a full is due once a day, a
    delta every 15 minutes (jpki/data/recipe.toml), and the first delta right after the
    first full. Done here, none falls due while a run measures the server, for 15 minutes.
    How many were published, in how many seconds."""
    crls = ctx.services().crls
    began = time.perf_counter()
    published = 0
    for _ in range(2):  # after the first fulls, the first deltas are due at once
        due = crls.due()
        if not due:
            break
        for kind in ("full", "delta"):
            scopes = [scope for scope, k in due if k == kind]
            if scopes:
                published += len(crls.publish_many(scopes, kinds=(kind,)))
    return published, time.perf_counter() - began


@contextlib.contextmanager
def jpki_serving(ctx: ScaleContext) -> Iterator[Serving]:
    """``jpki serve`` (1 worker, as operators start it) on a loopback port, on the loaded
    database and the bench's token; stopped afterwards."""
    from bench.ocsp import _ready_jpki

    published, crl_seconds = publish_due(ctx)
    if published:
        log(f"{published:,} CRLs were due: published in {crl_seconds:.1f} s, before serving")
    port = free_port()
    command = [*jpki_command(), "serve", "--data-dir", str(ctx.hsm.data_dir), "--port",
               str(port)]
    ctx.work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with started("jpki serve", command, serve_env(ctx), ctx.work / "jpki-serve.log", port,
                 _ready_jpki(port), timeout=START_TIMEOUT) as server:
        seconds = time.perf_counter() - began
        log(f"jpki serve up in {seconds:.1f} s")
        yield Serving(server, seconds, crl_seconds)


# --- wrk ------------------------------------------------------------------------------------

LUA = r"""-- Written by bench/scale_serving.py: pre-built HTTP requests, cycled or each sent once.
local file = "@FILE@"
local once = @ONCE@

wrk.resolve = function(host, service)
   wrk.addrs = wrk.lookup(host, service)
end

local threads = 0
function setup(thread)
   thread:set("tid", threads)
   thread:set("nthreads", @THREADS@)
   threads = threads + 1
end

function init(args)
   local f = assert(io.open(file, "rb"))
   local data = f:read("*a")
   f:close()
   local all = {}
   local pos = 1
   while pos <= #data do
      local nl = string.find(data, "\n", pos, true)
      local len = tonumber(string.sub(data, pos, nl - 1))
      all[#all + 1] = string.sub(data, nl + 1, nl + len)
      pos = nl + len + 1
   end
   reqs = {}
   if once then
      -- each thread its own share: no request is sent twice
      for k = (tid or 0) + 1, #all, nthreads do reqs[#reqs + 1] = all[k] end
      i = 0
   else
      reqs = all
      i = ((tid or 0) * 7919) % #reqs
   end
   n = #reqs
   wrapped = 0
   short = 0
end

function request()
   i = i + 1
   if i > n then
      i = 1
      wrapped = wrapped + 1
   end
   return reqs[i]
end

function response(status, headers, body)
   -- tryLater, internalError and the other unsuccessful OCSP answers are 5 bytes
   if status ~= 200 or #body < 64 then short = short + 1 end
end

function done(summary, latency, requests)
   local e = summary.errors
   local w, s = 0, 0
   for _, t in ipairs(all_threads or {}) do
      w = w + (t:get("wrapped") or 0)
      s = s + (t:get("short") or 0)
   end
   io.write(string.format(
      'WRKJSON {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, "connect": %.0f, ' ..
      '"read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f, "p50_us": %.0f, ' ..
      '"p90_us": %.0f, "p99_us": %.0f, "max_us": %.0f, "mean_us": %.1f, "wrapped": %.0f, ' ..
      '"short": %.0f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean, w, s))
end
"""
# done() runs in the main script, whose globals are not the threads': setup() keeps the thread
# objects so done() can read their counters.
LUA = LUA.replace("function setup(thread)\n", "all_threads = {}\nfunction setup(thread)\n"
                  "   table.insert(all_threads, thread)\n")


def wrk_script(work: Path, name: str, requests: Sequence[bytes], *, once: bool,
               threads: int) -> Path:
    data = work / f"{name}.req"
    write_requests(data, list(requests))
    lua = work / f"{name}.lua"
    lua.write_text(LUA.replace("@FILE@", str(data)).replace("@ONCE@", "true" if once else "false")
                   .replace("@THREADS@", str(threads)))
    return lua


def wrk(server: Server, lua: Path, connections: int, seconds: float) -> dict[str, float]:
    """One wrk run (bench.ocsp.run_wrk: 2 threads beyond one connection); fails on socket
    errors, non-200 answers or answers too short to be a successful OCSP response."""
    result = run_wrk(server, lua, connections, seconds)
    errors = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    if errors or result.get("short", 0):
        raise BenchError(f"wrk saw {errors:.0f} errors and {result.get('short', 0):.0f} short "
                         f"answers: {result}")
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def _threads(connections: int) -> int:
    return 1 if connections == 1 else 2


# --- issuance -------------------------------------------------------------------------------


def _municipality(ctx: ScaleContext) -> str:
    """The active municipality with the most certificates in the loaded population (shards are
    named by municipality code), else any active one."""
    m = municipalities.c
    with _engine(ctx).connect() as conn:
        active = set(conn.execute(select(m.code).where(m.status == "active")).scalars())
    for shard in sorted(ctx.population.shards, key=lambda s: -ctx.population.shards[s]):
        if shard in active:
            return str(shard)
    if not active:
        raise BenchError("no active municipality in the loaded database")
    return str(min(active))


def _jobs(ctx: ScaleContext, code: str, keys: list[bytes], start: int) -> list[Job]:
    """Residents registered in ``code`` (basic 4 information from bench.common, the address
    kept as it is: registration does not check it against the municipality), each with a
    counter identity-proofing record, and their two subject keys. Not timed."""
    services = ctx.services()
    jobs = []
    for i in range(len(keys) // 2):
        fields = resident_fields(start + i) | {"municipality_code": code}
        rid = services.residents.register(
            authorize(OPERATOR, Operation.RESIDENT_REGISTER), **fields).id
        jobs.append((rid, keys[2 * i], keys[2 * i + 1],
                     services.counter.record_proofing(
                         authorize(STATION, Operation.PROOFING_RECORD), rid, _PROOFING).id))
    return jobs


def _issued(ctx: ScaleContext, jobs: Sequence[Job]) -> tuple[int, dict[str, float]]:
    """How many pairs the jobs' residents hold now, and the mean DER of their certificates by
    kind (what a real row carries where the loaded rows hold a placeholder: the storage plan
    of bench.scale_plan counts it)."""
    ids = [j[0] for j in jobs]
    t = certificates.c
    with _engine(ctx).connect() as conn:
        rows = conn.execute(select(t.kind, func.count(), func.avg(func.length(t.der)))
                            .where(t.resident_id.in_(ids), t.status == CertStatus.ISSUED)
                            .group_by(t.kind)).all()
    count = sum(int(n) for _, n, _ in rows)
    kinds = {getattr(k, "value", k): float(mean) for k, _, mean in rows}
    return count // 2, {f"der_{kind}_bytes": mean for kind, mean in kinds.items()}


def measure_issuance(ctx: ScaleContext, *, pairs: int = ISSUANCE_PAIRS,
                     warmup: int = ISSUANCE_WARMUP,
                     chunk: int = BATCH_CHUNK) -> dict[str, float | int]:
    """Card certificate pairs issued on the loaded database, in process, as bench.issuance
    issues them (the whole pipeline: validation, build, lint, intent commit, HSM signatures,
    TBS check, store commit, audit records).

    ``pairs`` new residents are registered in the municipality with the most certificates and
    proofed at the counter (not timed), ``warmup`` pairs issued untimed; then:

    - single path: one ``IssuanceService.issue`` call (auth + sign key) per resident, one thread
      (as one station issues): ``issuance_pairs_per_s``, ``issuance_p50_ms``/``_p99_ms`` per
      call;
    - batch path: ``pairs`` more residents through ``IssuanceService.issue_batch`` in chunks of
      ``chunk`` — what ``POST /v1/stations/certificate-batches`` calls — on the key store's bulk
      signing process: ``issuance_batch_pairs_per_s``.

    What grows with the table is in the store's statements (serial uniqueness, the resident's
    current certificates, the shard's indexes). Subject keys come from bench.common's key
    cache (generated once, not timed). About 10 s on 2 cores whatever the size."""
    keys = subject_keys(2 * (2 * pairs + warmup), log=log)
    code = _municipality(ctx)
    # Names and birth dates of residents no other run of this bench registered.
    start = 1_000_000 + secrets.randbelow(1_000_000) * 1_000
    began = time.perf_counter()
    jobs = _jobs(ctx, code, keys, start)
    log(f"issuance: {len(jobs)} residents of {code} registered and proofed in "
        f"{time.perf_counter() - began:.1f} s")
    warm, single, batch = jobs[:warmup], jobs[warmup:warmup + pairs], jobs[warmup + pairs:]
    services = ctx.services()
    if warm:
        issue_all(services, warm, 1)
    ctx.hsm.keys.sign_many(_sign_label(ctx), [b"warm-up"])  # the bulk signer starts untimed
    seconds, latencies = issue_all(services, single, 1)
    batch_seconds, _ = issue_batched(services, batch, chunk)
    issued, der = _issued(ctx, jobs)
    if issued != len(jobs):
        raise BenchError(f"{issued} pairs issued in the database, expected {len(jobs)}")
    ms = sorted(x * 1000 for x in latencies)
    return {"issuance_pairs_per_s": len(single) / seconds,
            "issuance_p50_ms": percentile(ms, 50), "issuance_p99_ms": percentile(ms, 99),
            "issuance_batch_pairs_per_s": len(batch) / batch_seconds, **der}


def _sign_label(ctx: ScaleContext) -> str:
    return ctx.hsm.recipe.ca(CaKind.SIGN).key_label(1)


# --- OCSP -----------------------------------------------------------------------------------


@dataclass
class OcspSet:
    certs: list[Sampled]
    requests: list[bytes]  # POST, SHA-1 CertID, no nonce (RFC 5019)


def _ocsp_set(certs: list[Sampled], issuers: dict[int, Issuer]) -> OcspSet:
    ders = [ocsp_request(Cert(int(c.serial, 16), c.generation_id, None, None),
                         issuers[c.generation_id]) for c in certs]
    return OcspSet(certs, [http_request("POST", d, "/ocsp/") for d in ders])


def forget_stored(engine: Engine, certs: Sequence[Sampled]) -> int:
    """Delete the stored OCSP responses of these certificates: the loaded ones may be
    placeholders (bench.population stores placeholder DER so that the presign backlog is as
    large as a real one), which the responder would serve as they are. Deleted, each is signed
    on its first request, as for a certificate nobody has pre-signed."""
    r = ocsp_responses.c
    deleted = 0
    with engine.begin() as conn:
        for start in range(0, len(certs), ID_CHUNK):
            deleted += conn.execute(delete(ocsp_responses).where(
                r.serial.in_([c.serial for c in certs[start:start + ID_CHUNK]]))).rowcount
    return deleted


@dataclass
class OcspPlan:
    hot: OcspSet
    cold: OcspSet
    issuers: dict[int, Issuer]


def prepare_ocsp(ctx: ScaleContext, *, hot: int, cold: int, seed: int) -> OcspPlan:
    """Sample the hot and cold sets (disjoint), delete their stored responses, build the
    requests. Not timed; before the server starts."""
    engine = _engine(ctx)
    rng = random.Random(seed)
    issuers = read_issuers(engine)
    began = time.perf_counter()
    hot_certs = sample_certificates(engine, hot, rng)
    cold_certs = sample_certificates(engine, cold, rng, exclude={c.id for c in hot_certs})
    log(f"ocsp: {len(hot_certs) + len(cold_certs):,} certificates sampled in "
        f"{time.perf_counter() - began:.1f} s")
    if not hot_certs or not cold_certs:
        raise BenchError("no certificate to ask about: is the database loaded?")
    forget_stored(engine, hot_certs + cold_certs)
    return OcspPlan(_ocsp_set(hot_certs, issuers), _ocsp_set(cold_certs, issuers), issuers)


def _sample_check(engine: Engine, server: Server, sets: Sequence[OcspSet],
                  issuers: dict[int, Issuer],
                  rng: random.Random, count: int) -> int:
    checked = 0
    for s in sets:
        picks = rng.sample(range(len(s.certs)), min(count, len(s.certs)))
        checked += check_answers(engine, server.port, [s.requests[i] for i in picks],
                                 [s.certs[i] for i in picks], issuers, verify=True)
    return checked


def ocsp_on(ctx: ScaleContext, server: Server, plan: OcspPlan, *,
            seconds: float = OCSP_SECONDS,
            connections: int = OCSP_CONNECTIONS) -> dict[str, float | int]:
    """The OCSP runs of :func:`measure_ocsp` against a running server."""
    rng = random.Random(6960)
    threads = _threads(connections)
    began = time.perf_counter()
    # The hot set's first pass: each signed live, stored and kept; every answer checked.
    engine = _engine(ctx)
    checked = check_answers(engine, server.port, plan.hot.requests, plan.hot.certs, plan.issuers,
                            verify=False)
    log(f"ocsp: hot set of {len(plan.hot.certs)} signed on first request in "
        f"{time.perf_counter() - began:.1f} s, every answer right")
    hot_lua = wrk_script(ctx.work, "ocsp-hot", plan.hot.requests, once=False, threads=threads)
    wrk(server, hot_lua, connections, min(2.0, seconds))  # warm-up: the HTTP request memo
    hot = wrk(server, hot_lua, connections, seconds)
    log(f"ocsp hot: {hot['rate']:,.0f}/s, p99 {hot['p99_us'] / 1000:.2f} ms")
    cold_lua = wrk_script(ctx.work, "ocsp-cold", plan.cold.requests, once=True, threads=threads)
    cold = wrk(server, cold_lua, connections, seconds)
    if cold["wrapped"]:
        raise BenchError(f"the cold set ran out ({len(plan.cold.certs)} requests in "
                         f"{seconds:g} s): raise OCSP_COLD_BOUND_PER_S")
    log(f"ocsp cold: {cold['rate']:,.0f}/s, p99 {cold['p99_us'] / 1000:.2f} ms "
        f"({cold['requests']:,.0f} distinct certificates)")
    # Both sets again, a sample: what was served (kept since) is right, signatures verify.
    asked = OcspSet(plan.cold.certs[:int(cold["requests"])],
                    plan.cold.requests[:int(cold["requests"])])
    checked += _sample_check(engine, server, [plan.hot, asked], plan.issuers, rng,
                             CHECKED_SAMPLE)
    restored = restore_placeholders(engine, plan.cold.certs)
    return {"ocsp_hot_rps": hot["rate"], "ocsp_hot_p99_ms": hot["p99_us"] / 1000,
            "ocsp_hot_server_cores": hot["server_cores"],
            "ocsp_cold_rps": cold["rate"], "ocsp_cold_p99_ms": cold["p99_us"] / 1000,
            "ocsp_cold_p50_ms": cold["p50_us"] / 1000,
            "ocsp_cold_server_cores": cold["server_cores"],
            "ocsp_cold_other_cores": cold["other_cores"],
            "ocsp_cold_requests": int(cold["requests"]), "ocsp_checked": checked,
            "ocsp_response_bytes": _mean_response(engine),
            "ocsp_cold_unasked_restored": restored}


def restore_placeholders(engine: Engine, certs: Sequence[Sampled]) -> int:
    """Put the population's placeholder response back for each of ``certs`` left without one
    (the cold set's certificates nobody asked about): otherwise a later pre-signing in the
    same run would count them in its backlog. Those that were answered keep the response
    signed for them. How many were put back."""
    from sqlalchemy.dialects.postgresql import insert

    from bench.population import PLACEHOLDER_NEXT_UPDATE, PLACEHOLDER_THIS_UPDATE

    rows = [{"ca_generation_id": c.generation_id, "hash_algorithm": "sha1", "serial": c.serial,
             "der": b"", "this_update": PLACEHOLDER_THIS_UPDATE.replace(tzinfo=UTC),
             "next_update": PLACEHOLDER_NEXT_UPDATE.replace(tzinfo=UTC)} for c in certs]
    r = ocsp_responses.c
    restored = 0
    with engine.begin() as conn:
        for start in range(0, len(rows), ID_CHUNK):
            chunk = rows[start:start + ID_CHUNK]
            conn.execute(insert(ocsp_responses).on_conflict_do_nothing(), chunk)
            # executemany reports no row count: count the placeholders now among them
            restored += int(conn.execute(select(func.count()).where(
                r.serial.in_([row["serial"] for row in chunk]),
                func.length(r.der) == 0)).scalar_one())
    return restored


def _mean_response(engine: Engine) -> float:
    """The mean DER of the responses signed in this run (the loaded placeholders are empty):
    what each pre-signed row weighs in the storage plan of bench.scale_plan."""
    with engine.connect() as conn:
        mean = conn.execute(select(func.avg(func.length(ocsp_responses.c.der)))
                            .where(func.length(ocsp_responses.c.der) > 0)).scalar_one()
    return float(mean or 0.0)


def measure_ocsp(ctx: ScaleContext, *, hot: int = OCSP_HOT, seconds: float = OCSP_SECONDS,
                 connections: int = OCSP_CONNECTIONS,
                 cold_bound: int = OCSP_COLD_BOUND_PER_S) -> dict[str, float | int]:
    """OCSP responses per second and p99 latency from a real ``jpki serve`` (1 worker) on the
    loaded database, driven by ``wrk`` (``connections`` keep-alive connections, POST, SHA-1
    CertIDs, no nonce: RFC 5019 clients), ``seconds`` per run.

    - **hot**: ``hot`` certificates, uniformly sampled, requested over and over. Their stored
      responses are deleted first (the loaded ones may be placeholders) and the first pass
      signs each live, every answer checked; the run then serves them from memory (the
      responder's cache and the HTTP layer's request memo): ``ocsp_hot_rps``,
      ``ocsp_hot_p99_ms``. It should not depend on the size.
    - **cold**: certificates uniformly sampled over the whole table, disjoint from the hot set,
      each requested **once** (wrk threads take disjoint shares): every request misses the
      memory cache. A miss costs, in the responder (jpki.revocation.ocsp.responder): a read of
      the stored response (``ocsp_responses`` by primary key), then — none being there — a read
      of the certificate's status row (``certificates`` by serial), an RSA-2048 signature in
      the HSM (under the cap of 8 live signatures) and a write of the new response (upsert,
      one commit). The stored responses of the sample are deleted before the server starts:
      the loaded ones may be placeholder DER, which the responder would serve as they are, and
      a deleted one is what a certificate nobody pre-signed looks like. So this is the live
      signing path against a table of that size: ``ocsp_cold_rps``, ``ocsp_cold_p99_ms``.
      ``seconds`` × ``cold_bound`` certificates are prepared (the run fails should it need
      more).

    Correctness: every answer of the hot set's first pass, and a sample of
    :data:`CHECKED_SAMPLE` of each set after the runs (status and revocation as the row says,
    CertID, serial, currency, the signature and the responder's certificate), are checked;
    every answer of the runs must be HTTP 200 and a full response (no tryLater)."""
    plan = prepare_ocsp(ctx, hot=hot, cold=int(seconds * cold_bound), seed=5019)
    with jpki_serving(ctx) as serving:
        return (ocsp_on(ctx, serving.server, plan, seconds=seconds, connections=connections)
                | serving.figures())


# --- status ---------------------------------------------------------------------------------


@dataclass
class StatusPlan:
    auth: str  # HTTP Basic credentials of the relying party
    batches: list[list[Sampled]]


def register_relying_party(ctx: ScaleContext) -> str:
    """A relying party with the ``status`` scope, registered as ``jpki rp add`` does; its HTTP
    Basic credentials."""
    new = ctx.services().relying_parties.register(
        authorize(OPERATOR, Operation.RP_REGISTER), name=f"Scale bench {secrets.token_hex(3)}",
        kind="platform_operator", purposes=[PURPOSE], scopes=["status"])
    token = f"{new.client_id}:{new.client_secret}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


def prepare_status(ctx: ScaleContext, *, batches: int = STATUS_BATCHES,
                   seed: int = 8954) -> StatusPlan:
    """Sample the batches (at most half the table: at 10^5 certificates, 50 batches) and
    register the relying party. Not timed; before the server starts."""
    engine = _engine(ctx)
    batches = max(1, min(batches, ctx.population.certificates // (2 * STATUS_BATCH)))
    began = time.perf_counter()
    sampled = sample_certificates(engine, batches * STATUS_BATCH, random.Random(seed))
    log(f"status: {len(sampled):,} certificates sampled in {time.perf_counter() - began:.1f} s")
    if not sampled:
        raise BenchError("no certificate to look up: is the database loaded?")
    # Full batches only; a table too small for one (tests) gives one smaller batch.
    cut = max(len(sampled) // STATUS_BATCH * STATUS_BATCH, min(len(sampled), STATUS_BATCH))
    return StatusPlan(register_relying_party(ctx),
                      [sampled[i:i + STATUS_BATCH] for i in range(0, cut, STATUS_BATCH)])


def _body(batch: Sequence[Sampled]) -> bytes:
    return json.dumps({"purpose": PURPOSE, "serials": [c.serial for c in batch]},
                      separators=(",", ":")).encode()


def check_status(answer: Any, batch: Sequence[Sampled], now: datetime) -> None:
    results = answer["results"]
    if [r["serial"] for r in results] != [c.serial for c in batch]:
        raise BenchError("status: the answer's serials are not the batch's")
    for r, c in zip(results, batch, strict=True):
        want = "revoked" if c.revoked(now) else "good"
        if r["status"] != want:
            raise BenchError(f"status of {c.serial}: {r['status']} instead of {want}")


def _post_batches(port: int, auth: str, bodies: Sequence[bytes], connections: int,
                  deadline: float) -> tuple[list[float], list[bytes | None]]:
    """Send each body at most once over ``connections`` keep-alive connections until the
    deadline; the latency of each sent (seconds), and each answer (None: not sent)."""
    latencies: list[float] = []
    answers: list[bytes | None] = [None] * len(bodies)
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))
    failures: list[BaseException] = []
    headers = {"Authorization": auth, "Content-Type": "application/json"}

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while not failures and time.perf_counter() < deadline:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                t0 = time.perf_counter()
                conn.request("POST", "/v1/status", bodies[index], headers)
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - t0
                if response.status != 200:
                    raise BenchError(f"/v1/status answered {response.status}: {body[:300]!r}")
                with lock:
                    latencies.append(elapsed)
                answers[index] = body
        except BaseException as exc:
            failures.append(exc)
        finally:
            conn.close()

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failures:
        raise BenchError(f"status client failed: {failures[0]!r}")
    return latencies, answers


def _ping(port: int, auth: str) -> None:
    """``GET /v1/rp/ping``, untimed: the first call of a client verifies its secret (a slow
    hash by design) and the process remembers it; no status is read or kept."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/v1/rp/ping", headers={"Authorization": auth})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise BenchError(f"/v1/rp/ping answered {response.status}: {body[:300]!r}")
    finally:
        conn.close()


def status_on(ctx: ScaleContext, server: Server, plan: StatusPlan, *,
              seconds: float = STATUS_SECONDS, hot_seconds: float = STATUS_HOT_SECONDS,
              connections: int = STATUS_CONNECTIONS) -> dict[str, float | int]:
    """The status runs of :func:`measure_status` against a running server."""
    from bench.ocsp import _tree_ticks

    bodies = [_body(b) for b in plan.batches]
    _ping(server.port, plan.auth)
    ticks = _tree_ticks(server.proc.pid)
    began = time.perf_counter()
    latencies, answers = _post_batches(server.port, plan.auth, bodies, connections,
                                       began + seconds)
    elapsed = time.perf_counter() - began
    server_cores = (_tree_ticks(server.proc.pid) - ticks) / os.sysconf("SC_CLK_TCK") / elapsed
    now = datetime.now(UTC)
    sent = [i for i, a in enumerate(answers) if a is not None]
    engine = _engine(ctx)
    for i in random.Random(5280).sample(sent, min(STATUS_CHECKED_BATCHES, len(sent))):
        check_status(json.loads(answers[i] or b""), current(engine, plan.batches[i]), now)
    ms = sorted(x * 1000 for x in latencies)
    lookups = sum(len(plan.batches[i]) for i in sent)
    log(f"status cold: {len(sent)} batches ({lookups:,} serials) in {elapsed:.1f} s, "
        f"{lookups / elapsed:,.0f} serials/s, p99 {percentile(ms, 99):.1f} ms")
    result: dict[str, float | int] = {
        "status_lookups_per_s": lookups / elapsed, "status_batch_p50_ms": percentile(ms, 50),
        "status_batch_p99_ms": percentile(ms, 99), "status_batches": len(sent),
        "status_server_cores": server_cores}
    if hot_seconds > 0:
        # One batch, over and over: every serial kept in memory after the first call.
        threads = _threads(connections)
        _, (answer,) = _post_batches(server.port, plan.auth, bodies[:1], 1, float("inf"))
        check_status(json.loads(answer or b""), current(engine, plan.batches[0]),
                     datetime.now(UTC))
        lua = _status_lua(ctx.work, plan.auth, bodies[0], threads)
        wrk(server, lua, connections, 1.0)
        hot = wrk(server, lua, connections, hot_seconds)
        result |= {"status_hot_lookups_per_s": hot["rate"] * len(plan.batches[0]),
                   "status_hot_batch_p99_ms": hot["p99_us"] / 1000,
                   "status_hot_server_cores": hot["server_cores"]}
        log(f"status hot: {result['status_hot_lookups_per_s']:,.0f} serials/s")
    return result


def _status_lua(work: Path, auth: str, body: bytes, threads: int) -> Path:
    raw = (f"POST /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
           ).encode("ascii") + body
    return wrk_script(work, "status-hot", [raw], once=False, threads=threads)


def measure_status(ctx: ScaleContext, *, seconds: float = STATUS_SECONDS,
                   hot_seconds: float = STATUS_HOT_SECONDS,
                   batches: int = STATUS_BATCHES,
                   connections: int = STATUS_CONNECTIONS) -> dict[str, float | int]:
    """``POST /v1/status`` from a real ``jpki serve`` (1 worker) on the loaded database, as a
    relying party calls it: HTTP Basic credentials of a client with the ``status`` scope (one
    registered for the run), batches of 1,000 serials (the most a call takes, MAX_BATCH).

    - **cold**: up to ``batches`` batches of distinct certificates, uniformly sampled over the
      whole table, each sent **once** by a Python client on ``connections`` keep-alive
      connections, until all are sent or ``seconds`` have passed. The service keeps the status
      rows it read in memory (jpki.relying_parties.status_lookup, 200,000 rows): a serial asked
      for the first time is read from the store with the other misses of its call, in one
      statement. So this is the store's lookup of 1,000 random serials per call:
      ``status_lookups_per_s`` (serials per second), ``status_batch_p50_ms``/``_p99_ms``
      (per call, client-side). The batches cover at most half the table (50 batches at 10^5
      certificates): a small table gives a shorter run, not a different one.
    - **hot**: the first batch, over and over with ``wrk`` for ``hot_seconds`` (0: skip):
      every serial kept in memory, the answer built in the event loop:
      ``status_hot_lookups_per_s``, ``status_hot_batch_p99_ms``. It should not depend on the
      size.

    Every call is audited (one record per call, a group commit). Correctness: every answer is
    HTTP 200; :data:`STATUS_CHECKED_BATCHES` of the cold answers are compared serial by serial
    with the rows (good or revoked), and the hot run's batch once before it."""
    plan = prepare_status(ctx, batches=batches)
    with jpki_serving(ctx) as serving:
        return status_on(ctx, serving.server, plan, seconds=seconds, hot_seconds=hot_seconds,
                         connections=connections) | serving.figures()


def measure_serving(ctx: ScaleContext) -> dict[str, float | int]:
    """:func:`measure_ocsp` and :func:`measure_status` against one ``jpki serve``, one after
    the other (OCSP first): the server starts once."""
    ocsp_plan = prepare_ocsp(ctx, hot=OCSP_HOT, cold=int(OCSP_SECONDS * OCSP_COLD_BOUND_PER_S),
                             seed=5019)
    status_plan = prepare_status(ctx)
    with jpki_serving(ctx) as serving:
        return (ocsp_on(ctx, serving.server, ocsp_plan)
                | status_on(ctx, serving.server, status_plan)
                | serving.figures())


# --- the command: every measurement on a small population -----------------------------------


def _load(hsm: Any, url: str, certificates: int) -> Any:
    """The population bench.scale loads, at ``certificates`` rows."""
    from bench.population import load_population

    return load_population(url, certificates, log=log)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.scale_serving [--certificates N] [--seconds S] [--json]``: load a
    population into a fresh PostgreSQL database and run every measurement of this module on it
    (what bench.scale does at one size; its tests run it at a tiny size)."""
    import argparse
    import shutil
    import tempfile

    from bench.common import bench_hsm, fresh_database, open_services

    parser = argparse.ArgumentParser(prog="python -m bench.scale_serving",
                                     description=main.__doc__)
    parser.add_argument("--certificates", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=OCSP_SECONDS,
                        help="seconds of each wrk run and of the cold status run")
    parser.add_argument("--pairs", type=int, default=ISSUANCE_PAIRS)
    parser.add_argument("--hot", type=int, default=OCSP_HOT)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures: dict[str, float | int] = {}
    with bench_hsm() as hsm, fresh_database("postgres", hsm.data_dir, "scale-serving") as url:
        open_services(hsm, url).uow.engine.dispose()
        population = _load(hsm, url, args.certificates)
        work = Path(tempfile.mkdtemp(prefix="scale-serving-", dir=hsm.data_dir))
        ctx = ScaleContext(hsm=hsm, url=url, work=work, population=population)
        try:
            figures |= measure_issuance(ctx, pairs=args.pairs)
            ocsp_plan = prepare_ocsp(ctx, hot=args.hot,
                                     cold=int(args.seconds * OCSP_COLD_BOUND_PER_S), seed=5019)
            status_plan = prepare_status(ctx)
            with jpki_serving(ctx) as serving:
                figures |= serving.figures()
                figures |= ocsp_on(ctx, serving.server, ocsp_plan, seconds=args.seconds)
                figures |= status_on(ctx, serving.server, status_plan, seconds=args.seconds,
                                     hot_seconds=min(args.seconds, STATUS_HOT_SECONDS))
        finally:
            ctx.close()
            shutil.rmtree(work, ignore_errors=True)
    figures["certificates"] = population.certificates
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:32s} {value:,.2f}" if isinstance(value, float) else
                  f"{key:32s} {value:,}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
