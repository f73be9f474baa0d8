"""The national-scale bench's revocation-side measurements (:mod:`bench.scale_context`): CRL
publication, the batch jobs (mobile sweep, expiry notices, a mass revocation and the OCSP
pre-signing backlog it leaves), the database's size, and a base backup and its restore.

Each is ``measure(ctx: ScaleContext) -> dict[str, float | int]`` on the PostgreSQL database
:mod:`bench.population` loaded. :func:`measure_crl` and :func:`measure_jobs` revoke
certificates (0.1 % of the largest shard, then 1 % of all): the runner orders them after the
measurements that read. :func:`measure_sizes` and :func:`measure_restore` only read.

Revocations written by SQL take the shape jpki writes (:func:`jpki.lifecycle.revocation.
set_revocation`): ``revoked_at``, ``revocation_reason``, ``revocation_recorded_at`` (which the
status-change feed and delta CRLs read) and ``crl_entry`` — the DER of
:func:`jpki.lifecycle.crl_entries.crl_entry`, built in SQL by a temporary function
(:data:`CRL_ENTRY_FUNCTION`) and checked byte for byte against jpki's on a sample after each
bulk update. Everything is sized to stay bounded at 10^7 rows: no list of certificates is ever
held in this process; the rows picked for revocation live in a temporary table.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
from sqlalchemy.engine import make_url

from bench.common import OPERATOR, BenchError, PhaseTimer
from bench.crl import Run, measure
from bench.scale_context import ScaleContext
from jpki.access.authz import Grant, Operation, authorize
from jpki.lifecycle.crl_entries import crl_entry
from jpki.model import RevocationReason

MB = 1_000_000
DELTA_FRACTION = 0.001
"""Revoked before the delta CRLs: this share of the largest shard's certificates."""
MASS_FRACTION = 0.01
"""The mass revocation: this share of all certificates."""
SERVICE_REVOCATIONS = 200
"""Of the mass revocation, revoked one by one through the revocation service (at most a tenth
of it, so that a small population still has most of it revoked by SQL)."""
MASS_REASON = RevocationReason.KEY_COMPROMISE
"""A defective batch of cards: every affected certificate revoked for key compromise."""
ALL_SCOPES_WORKERS = 1
"""Threads of the all-shard publication: 1, the scopes in turn (``jpki crl publish`` defaults to
4; on a shared 2-CPU machine one thread gives the steadier figure)."""
PRESIGN_CAP = 500_000
"""At most this many responses are signed for the backlog (a loader that left every certificate
without a fresh response would otherwise make this sign the whole population)."""
PRESIGN_BUDGET_S = float(os.environ.get("JPKI_SCALE_PRESIGN_BUDGET_S", "1800.0"))
"""The backlog is worked through in slices of :data:`PRESIGN_SLICE` until this many seconds
have passed: each chunk's selection reads the certificates in id order from the first, so the
whole backlog costs more than linearly (``presign_complete`` says whether it was done)."""
PRESIGN_SLICE = int(os.environ.get("JPKI_SCALE_PRESIGN_SLICE", "5000"))
ENTRY_SAMPLE = 64
"""Rows of each bulk revocation whose ``crl_entry`` is compared with jpki's encoder."""

# RFC 5280 §5.1.2.6 revokedCertificates entry, as jpki.lifecycle.crl_entries.crl_entry encodes
# it: SEQUENCE { INTEGER serial, UTCTime revocationDate, [extensions: reasonCode unless
# unspecified] }. Every part is shorter than 128 bytes (serials have at most 20 octets), so each
# length is one byte. UTCTime only: the revocation instants here are now, long before 2050.
CRL_ENTRY_FUNCTION = r"""
CREATE FUNCTION pg_temp.bench_crl_entry(serial text, at timestamp, reason int) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
  WITH hex AS (SELECT ltrim(serial, '0') AS h),
  raw AS (SELECT decode(CASE WHEN length(h) % 2 = 1 THEN '0' ELSE '' END || h, 'hex') AS v
          FROM hex),
  val AS (SELECT CASE WHEN get_byte(v, 0) >= 128 THEN '\x00'::bytea || v ELSE v END AS v
          FROM raw),
  body AS (
    SELECT '\x02'::bytea || set_byte('\x00'::bytea, 0, length(v)) || v
        || '\x170d'::bytea || convert_to(to_char(at, 'YYMMDDHH24MISS') || 'Z', 'SQL_ASCII')
        || CASE WHEN reason IN (0, 8) THEN ''::bytea
                ELSE '\x300c300a0603551d1504030a01'::bytea || set_byte('\x00'::bytea, 0, reason)
           END AS b
    FROM val)
  SELECT '\x30'::bytea || set_byte('\x00'::bytea, 0, length(b)) || b FROM body
$$
"""


# --- database helpers ---------------------------------------------------------------------


def _plain(url: str) -> str:
    """A libpq URL from the SQLAlchemy one."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _now() -> datetime:
    """Now, naive UTC and whole seconds: how ``UtcDateTime`` columns hold instants on
    PostgreSQL, and what a UTCTime in a CRL entry can say."""
    return datetime.now(UTC).replace(microsecond=0, tzinfo=None)


@contextlib.contextmanager
def _connect(url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(_plain(url)) as conn:
        conn.execute(CRL_ENTRY_FUNCTION)
        yield conn


def _pick(conn: psycopg.Connection[Any], count: int, now: datetime, shard: str | None = None,
          generation_id: int | None = None) -> int:
    """Fill the temporary table ``bench_picked`` with ``count`` certificates that a revocation
    would change (issued, unexpired, not revoked), spread over the table (ordered by a hash of
    the serial: the same picks for the same population); how many were found. Not timed."""
    conn.execute("DROP TABLE IF EXISTS bench_picked")
    conn.execute("SET LOCAL work_mem = '256MB'")  # the top-N sort stays in memory
    where = "revoked_at IS NULL AND status = 'issued' AND not_after > %(now)s"
    if shard is not None:
        where += " AND shard = %(shard)s"
    if generation_id is not None:
        where += " AND ca_generation_id = %(gid)s"
    conn.execute(
        "CREATE TEMP TABLE bench_picked AS SELECT id, serial, ca_generation_id "  # noqa: S608
        f"FROM certificates WHERE {where} ORDER BY md5(serial) LIMIT %(n)s",
        {"now": now, "shard": shard, "gid": generation_id, "n": count})
    conn.execute("ALTER TABLE bench_picked ADD PRIMARY KEY (id)")
    conn.execute("ANALYZE bench_picked")
    row = conn.execute("SELECT count(*) FROM bench_picked").fetchone()
    return int(row[0]) if row else 0


def _revoke_picked(conn: psycopg.Connection[Any], at: datetime, reason: RevocationReason,
                   skip: int = 0) -> int:
    """Revoke the picked certificates (all but the first ``skip`` by id) in one UPDATE, in the
    shape jpki writes; how many rows changed. The caller commits."""
    cur = conn.execute(
        "UPDATE certificates c SET revoked_at = %(at)s, revocation_reason = %(reason)s, "
        "revocation_recorded_at = %(at)s, updated_at = %(at)s, "
        "crl_entry = pg_temp.bench_crl_entry(c.serial, %(at)s, %(reason)s) "
        "FROM (SELECT id FROM bench_picked ORDER BY id OFFSET %(skip)s) p "
        "WHERE c.id = p.id AND c.revoked_at IS NULL",
        {"at": at, "reason": int(reason), "skip": skip})
    return cur.rowcount


def _check_entries(conn: psycopg.Connection[Any]) -> int:
    """Compare the stored ``crl_entry`` of a sample of the picked, revoked rows with jpki's
    encoder; BenchError on the first difference. How many were compared."""
    rows = conn.execute(
        "SELECT c.serial, c.revoked_at, c.revocation_reason, c.crl_entry FROM certificates c "
        "JOIN bench_picked p ON p.id = c.id WHERE c.crl_entry IS NOT NULL "
        "ORDER BY p.id LIMIT %(n)s", {"n": ENTRY_SAMPLE}).fetchall()
    for serial, at, reason, stored in rows:
        expected = crl_entry(serial, at.replace(tzinfo=UTC), RevocationReason(reason))
        if bytes(stored) != expected:
            raise BenchError(f"the SQL CRL entry of {serial} differs from jpki's crl_entry")
    return len(rows)


def _forget_ocsp_responses(conn: psycopg.Connection[Any]) -> int:
    """Delete the stored OCSP responses of the picked certificates, as the OCSP refresh does to
    a response the status-change feed contradicts (jpki.revocation.ocsp.jobs.StatusRefresh:
    deleted, then signed again). Without this the pre-revocation responses would still count as
    fresh and the pre-signer would see no backlog."""
    cur = conn.execute(
        "DELETE FROM ocsp_responses o USING bench_picked p "
        "WHERE o.ca_generation_id = p.ca_generation_id AND o.serial = p.serial")
    return cur.rowcount


# --- 1. CRLs ------------------------------------------------------------------------------


def _largest_scope(ctx: ScaleContext) -> tuple[str, int, int, str]:
    """(CA kind, generation, generation id, shard) of the largest shard's scope with the most
    entries (a card pair's two certificates are under two CAs: a shard has one scope per CA),
    counted with the full CRL's own filter (jpki.store.crls: revoked by now, not expired
    beyond the grace, with an entry)."""
    shard = ctx.population.largest_shard
    now = _now()
    with psycopg.connect(_plain(ctx.url)) as conn:
        row = conn.execute(
            "SELECT g.ca, g.generation, g.id, count(*) FROM certificates c "
            "JOIN ca_generations g ON g.id = c.ca_generation_id "
            "WHERE c.shard = %(s)s AND c.revoked_at IS NOT NULL AND c.revoked_at <= %(now)s "
            "AND c.not_after >= %(floor)s AND c.crl_entry IS NOT NULL "
            "GROUP BY g.ca, g.generation, g.id ORDER BY count(*) DESC, g.id LIMIT 1",
            {"s": shard, "now": now,
             "floor": now - ctx.hsm.recipe.crl.expired_grace}).fetchone()
    if row is None:
        raise BenchError(f"shard {shard} has no revoked certificate")
    return str(row[0]), int(row[1]), int(row[2]), shard


def _publish(ctx: ScaleContext, kind: str, scope: str | None) -> Run:
    """One publication run in a child process (:mod:`bench.scale_crl_child`): wall clock from
    here, peak RSS by GNU time."""
    work = ctx.work / "crl-run"
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["JPKI_HSM_USER_PIN"] = ctx.hsm.keys.config.user_pin
    env.pop("JPKI_DATABASE_URL", None)
    result = work / "result.json"
    command = [sys.executable, "-m", "bench.scale_crl_child",
               "--data-dir", str(ctx.hsm.data_dir), "--database-url", ctx.url,
               "--kind", kind, "--result", str(result),
               "--workers", str(ALL_SCOPES_WORKERS)]
    if scope is not None:
        command += ["--scope", scope]
    return measure(command, env, work, result)


def _revoke_for_delta(ctx: ScaleContext, generation_id: int, shard: str) -> int:
    """Revoke :data:`DELTA_FRACTION` of the largest shard's certificates by SQL (not timed),
    under the largest scope's CA generation (so that its delta CRL lists them all); how
    many."""
    want = max(1, round(ctx.population.shards.get(shard, 0) * DELTA_FRACTION))
    with _connect(ctx.url) as conn:
        # One second after the full CRLs' thisUpdate at least: a delta lists what was recorded
        # since its base.
        time.sleep(1.1)
        at = _now()
        _pick(conn, want, at, shard, generation_id)
        revoked = _revoke_picked(conn, at, RevocationReason.SUPERSEDED)
        _check_entries(conn)
        _forget_ocsp_responses(conn)
        conn.commit()
    time.sleep(1.1)  # the deltas' thisUpdate after the revocations' instant
    return revoked


def measure_crl(ctx: ScaleContext) -> dict[str, float | int]:
    """Full and delta CRL generation, for the largest shard and for every shard.

    Each publication run is a fresh child process doing what ``jpki crl publish`` does
    (:mod:`bench.scale_crl_child`: the CRL service alone, ``CrlService.publish`` per scope,
    entries streamed from a server-side cursor, signed in SoftHSM, file fsynced, publication
    recorded), on the system clock. Timed: the child's whole wall time seen from here (start-up,
    imports and HSM login included, as a cron'd run pays them); peak RSS from ``/usr/bin/time
    -v``. Also reported: ``*_publish_s``, the publications alone in the child, and
    ``crl_all_scopes_list_s``, its listing of the live scopes (``CrlService.scopes``: one
    statement over every (CA generation, shard) pair of the registry, ~3,800 for a nation).

    1. full CRL of the largest scope: the largest shard (``ctx.population.largest_shard``)
       under the CA whose scope there lists the most entries;
    2. full CRLs of every live scope (every shard under which anything was issued, per CA kind
       and generation, plus the ARLs), one process, :data:`ALL_SCOPES_WORKERS` thread(s);
    3. then :data:`DELTA_FRACTION` of the largest shard's certificates, under the largest
       scope's CA, are revoked by SQL (not timed; see the module docstring), and the delta CRL
       of the largest scope and ``--delta`` of every live scope are published the same way.

    Assumes ``ctx.hsm`` holds the CA keys the population was signed with, the shards are in
    the CRL shard registry, and the revoked rows carry ``crl_entry``. Changes the database: it
    revokes (about 0.1 % of one shard) and records publications. CRL files are written under
    the token's data directory (``<data>/crl``).
    """
    ca, generation, generation_id, shard = _largest_scope(ctx)
    scope = f"{ca}:{generation}:{shard}"
    full_largest = _publish(ctx, "full", scope)
    full_all = _publish(ctx, "full", None)
    delta_revoked = _revoke_for_delta(ctx, generation_id, shard)
    delta_largest = _publish(ctx, "delta", scope)
    delta_all = _publish(ctx, "delta", None)
    if delta_largest.child["kinds"] != ["delta"]:
        raise BenchError(f"the delta run published {delta_largest.child['kinds']}")
    return {
        "crl_full_largest_s": full_largest.wall_s,
        "crl_full_largest_rss_mb": full_largest.peak_kib * 1024 / MB,
        "crl_full_largest_publish_s": full_largest.child["seconds"],
        "crl_full_all_s": full_all.wall_s,
        "crl_full_all_rss_mb": full_all.peak_kib * 1024 / MB,
        "crl_full_all_publish_s": full_all.child["seconds"],
        "crl_all_scopes": full_all.child["scopes"],
        # Listing the live scopes (CrlService.scopes), before the first publication.
        "crl_all_scopes_list_s": full_all.child["scopes_seconds"],
        "crl_delta_largest_s": delta_largest.wall_s,
        "crl_delta_largest_rss_mb": delta_largest.peak_kib * 1024 / MB,
        "crl_delta_all_s": delta_all.wall_s,
        "crl_delta_all_rss_mb": delta_all.peak_kib * 1024 / MB,
        "crl_delta_revoked": delta_revoked,
        "crl_delta_largest_entries": delta_largest.child["entries"],
        "crl_largest_entries": full_largest.child["entries"],
        "crl_largest_bytes": full_largest.child["bytes"],
        "crl_all_entries": full_all.child["entries"],
        "crl_all_bytes": full_all.child["bytes"],
    }


# --- 2. batch jobs ------------------------------------------------------------------------


def _notice_window(ctx: ScaleContext, municipality: str) -> tuple[date, date]:
    """One month of JST dates: from the first expiry, two months ahead or later, of a card
    certificate still valid in ``municipality`` (reference §1.4: notices go out 2-3 months
    before expiry). Found rather than fixed: a population renews what expires within its
    renewal window, so the months just ahead may hold nobody. Not timed."""
    from jpki.validity import jst_date

    now = datetime.now(UTC)
    ahead = now + timedelta(days=61)
    with psycopg.connect(_plain(ctx.url)) as conn:
        row = conn.execute(
            "SELECT min(c.not_after) FROM certificates c JOIN residents r "
            "ON r.id = c.resident_id WHERE r.municipality_code = %(m)s "
            "AND c.kind IN ('card_sign', 'card_auth') AND c.status = 'issued' "
            "AND c.revoked_at IS NULL AND c.not_after >= %(ahead)s",
            {"m": municipality, "ahead": ahead.replace(tzinfo=None)}).fetchone()
    first = row[0].replace(tzinfo=UTC) if row and row[0] is not None else ahead
    start = jst_date(first)
    month = start.month + 1
    end = date(start.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)
    end = end.replace(day=min(start.day, 28))
    return start, end


def _largest_municipality(ctx: ScaleContext) -> str:
    shards = ctx.population.shards
    if not shards:
        raise BenchError("the population lists no shard")
    return max(shards, key=lambda s: shards[s])


def _sweep(ctx: ScaleContext) -> dict[str, float | int]:
    services = ctx.services()
    began = time.perf_counter()
    report = services.mobile_sweep.run(authorize(OPERATOR, Operation.MOBILE_SWEEP))
    seconds = time.perf_counter() - began
    if report.outcome != "ok":
        raise BenchError(f"the mobile sweep ended {report.outcome!r}")
    return {"sweep_s": seconds, "sweep_revoked": len(report.revoked),
            "sweep_flagged": len(report.flagged), "sweep_held": len(report.held)}


def _expiry_export(ctx: ScaleContext) -> dict[str, float | int]:
    from jpki.registry.expiry_notices import as_csv

    services = ctx.services()
    municipality = _largest_municipality(ctx)
    start, end = _notice_window(ctx, municipality)
    began = time.perf_counter()
    export = services.expiry_notices.export(authorize(OPERATOR, Operation.EXPIRY_NOTICES),
                                            municipality, start, end, "csv")
    size = 0
    try:
        for chunk in as_csv(export.notices):
            size += len(chunk.encode())
    finally:
        export.close()
    seconds = time.perf_counter() - began
    return {"expiry_export_s": seconds, "expiry_rows": export.count,
            "expiry_csv_mb": size / MB}


def _refresh_stored_responses(ctx: ScaleContext) -> dict[str, float | int]:
    """Bring every stored SHA-1 response the pre-signer would take as stale (produced more
    than half its validity ago: jpki.revocation.ocsp.cache) to now, as a running responder
    keeps them by re-signing at half-life — so that the backlog measured after the mass
    revocation is what the revocation made, however long ago the population was loaded (its
    responses are placeholders with load-time times). One UPDATE; not timed as a figure of the
    jobs, reported as setup."""
    validity = ctx.hsm.recipe.ocsp.validity
    now = _now()
    began = time.perf_counter()
    with psycopg.connect(_plain(ctx.url)) as conn:
        cur = conn.execute(
            "UPDATE ocsp_responses SET this_update = %(now)s, next_update = %(next)s "
            "WHERE hash_algorithm = 'sha1' AND this_update < %(stale)s",
            {"now": now, "next": now + validity, "stale": now - validity / 4})
        refreshed = cur.rowcount
    return {"setup_ocsp_refreshed": refreshed,
            "setup_ocsp_refresh_s": time.perf_counter() - began}


def _mass_revocation(ctx: ScaleContext) -> dict[str, float | int]:
    services = ctx.services()
    want = max(1, round(ctx.population.certificates * MASS_FRACTION))
    with _connect(ctx.url) as conn:
        picked = _pick(conn, want, _now(), None)
        conn.commit()
        if picked == 0:
            raise BenchError("no certificate left to revoke")
        by_service = [str(r[0]) for r in conn.execute(
            "SELECT serial FROM bench_picked ORDER BY id LIMIT %(n)s",
            {"n": min(SERVICE_REVOCATIONS, max(1, picked // 10))})]
        conn.commit()  # no transaction left open while the service revokes
        grant: Grant[Literal[Operation.CERTIFICATE_REVOKE]] = authorize(
            OPERATOR, Operation.CERTIFICATE_REVOKE)
        began = time.perf_counter()
        for serial in by_service:
            services.revocation.revoke(grant, serial, MASS_REASON)
        service_s = time.perf_counter() - began
        began = time.perf_counter()
        revoked = _revoke_picked(conn, _now(), MASS_REASON, skip=len(by_service))
        forgotten = _forget_ocsp_responses(conn)
        conn.commit()
        sql_s = time.perf_counter() - began
        _check_entries(conn)
    return {"mass_revoke_count": revoked + len(by_service), "mass_revoke_sql_s": sql_s,
            "mass_revoke_sql_rows": revoked, "mass_revoke_ocsp_deleted": forgotten,
            "revoke_service_count": len(by_service),
            "revoke_service_per_s": len(by_service) / service_s if service_s else 0.0}


class _SelectionTimes:
    """Each call of the store's selection of missing certificates, timed (one per chunk of
    500): the first and the last show whether a chunk costs more the further the backlog has
    been worked through. It did, before each selection started after the last certificate of
    the chunk before; it read the table from its first row. Each slice of the loop below is a
    new run, which starts from the first row again: give a backlog one slice
    (JPKI_SCALE_PRESIGN_SLICE) to measure one run."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def wrap(self, original: Any) -> Any:
        def missing(store: Any, *args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(store, *args, **kwargs)
            finally:
                self.seconds.append(time.perf_counter() - began)

        return missing


def _presign(ctx: ScaleContext) -> dict[str, float | int]:
    from jpki.store.ocsp import SqlOcspStore

    services = ctx.services()
    began = time.perf_counter()
    backlog = services.ocsp.presign_backlog("sha1", limit=10 * PRESIGN_CAP)
    count_s = time.perf_counter() - began
    target = min(backlog, PRESIGN_CAP)
    selections = _SelectionTimes()
    original = SqlOcspStore.missing
    timer = PhaseTimer()
    timer.patch(SqlOcspStore, "status_rows", "status")
    timer.patch(SqlOcspStore, "store", "store")
    SqlOcspStore.missing = selections.wrap(original)  # type: ignore[method-assign]
    signed = 0
    try:
        began = time.perf_counter()
        # In slices, so that a backlog the budget cannot cover stops between two of them.
        while signed < target and time.perf_counter() - began < PRESIGN_BUDGET_S:
            done = services.ocsp.presign_missing(
                "sha1", limit=min(PRESIGN_SLICE, target - signed))
            signed += done
            if done == 0:
                break
        seconds = time.perf_counter() - began
    finally:
        SqlOcspStore.missing = original  # type: ignore[method-assign]
        timer.restore()
    select = selections.seconds
    return {"presign_backlog_count": backlog, "presign_count_s": count_s,
            "presign_signed": signed, "presign_complete": int(signed >= backlog),
            "presign_backlog_s": seconds,
            "presign_select_s": sum(select), "presign_select_calls": len(select),
            "presign_select_first_ms": 1000 * select[0] if select else 0.0,
            "presign_select_last_ms": 1000 * select[-1] if select else 0.0,
            "presign_status_s": timer.seconds["status"],
            "presign_store_s": timer.seconds["store"],
            "presign_per_s": signed / seconds if seconds else 0.0}


def measure_jobs(ctx: ScaleContext) -> dict[str, float | int]:
    """The batch jobs, in process on ``ctx.services()``, each timed by wall clock around the
    service call.

    (a) the mobile sweep (``services.mobile_sweep.run``, as ``jpki mobile sweep``): duration
        and what it revoked, flagged and held;
    (b) the expiry notices of the largest municipality (the shard with the most certificates;
        shard = municipality code) for one month of JST dates from its first expiry two months
        ahead or later (:func:`_notice_window`), as
        ``jpki notices expiry``: ``export`` then every CSV chunk of ``as_csv`` consumed
        (counted, not written): duration, rows (holders) and CSV size;
    (c) a mass revocation of :data:`MASS_FRACTION` of all certificates (issued, unexpired, not
        yet revoked; picked by a hash of the serial, not timed): the first
        :data:`SERVICE_REVOCATIONS` one by one through the revocation service
        (``services.revocation.revoke``: row lock, audit record, linked mobile certificates,
        commit) for a per-revocation rate; the rest by one SQL UPDATE in the shape jpki writes,
        plus the deletion of their stored OCSP responses (what the OCSP refresh does to a
        contradicted response) — timed together as ``mass_revoke_sql_s``. The UPDATE
        **bypasses the revocation service**: no audit record, no cascade to linked mobile
        certificates, no row locks one by one;
    (d) then the OCSP pre-signing backlog: ``presign_backlog`` (the count, timed as
        ``presign_count_s``) and ``services.ocsp.presign_missing("sha1")`` (as ``jpki ocsp
        presign``), at most :data:`PRESIGN_CAP` responses and :data:`PRESIGN_BUDGET_S`
        seconds (``presign_complete`` = 0 when stopped by either); the time spent in the
        store's selection of missing certificates (one query per chunk of 500: total, first
        and last call), status reads and stores is split out by timers around the store's
        methods.

    Before (c), every stored SHA-1 response older than a quarter of the response validity has
    its times brought to now (:func:`_refresh_stored_responses`, one UPDATE, reported as
    ``setup_ocsp_*``): a running responder keeps them fresh, and the population's placeholders
    are as old as the load. Assumes the population stored a response for every certificate,
    so that the backlog is the revoked certificates (``presign_backlog_count`` ≈
    ``mass_revoke_count`` says so; the OCSP measurement puts back the placeholders of the
    cold-set certificates it did not ask about: ``bench.scale_serving.restore_placeholders``).
    Changes the database (sweep, revocations, responses).
    """
    out: dict[str, float | int] = {}
    out.update(_sweep(ctx))
    out.update(measure_expiry(ctx))
    out.update(measure_wave(ctx))
    return out


def measure_expiry(ctx: ScaleContext) -> dict[str, float | int]:
    """(b) of :func:`measure_jobs` alone: reads only, so it can be measured again on a kept
    database after a change (an index, a planner setting)."""
    return _expiry_export(ctx)


def measure_wave(ctx: ScaleContext) -> dict[str, float | int]:
    """(c) and (d) of :func:`measure_jobs` alone: a revocation wave of 1 % and the pre-signing
    of its backlog. Measured again on a kept database, it revokes another 1 % (the picking
    skips what is revoked already), and the backlog is then that wave's alone."""
    out = _refresh_stored_responses(ctx)
    out.update(_mass_revocation(ctx))
    out.update(_presign(ctx))
    return out


# --- 3. sizes -----------------------------------------------------------------------------

SIZE_TABLES = ("certificates", "residents", "cards", "mobile_devices", "ocsp_responses",
               "crl_publications")


def measure_sizes(ctx: ScaleContext) -> dict[str, float | int]:
    """Table and index sizes, in MB (10^6 bytes), from PostgreSQL's own functions — nothing is
    timed. Per table of :data:`SIZE_TABLES`: ``size_<table>_total_mb``
    (``pg_total_relation_size``: heap, TOAST and indexes), ``size_<table>_heap_mb``
    (``pg_relation_size``: the main fork) and ``size_<table>_indexes_mb``
    (``pg_indexes_size``); per index of ``certificates``: ``size_index_<name>_mb``; and
    ``size_database_mb`` (``pg_database_size``). Sizes are as left by the measurements run
    before (the runner may VACUUM first for a steady figure). Reads only."""
    out: dict[str, float | int] = {}
    with psycopg.connect(_plain(ctx.url)) as conn:
        for table in SIZE_TABLES:
            row = conn.execute(
                "SELECT pg_total_relation_size(c.oid), pg_relation_size(c.oid), "
                "pg_indexes_size(c.oid) FROM pg_class c WHERE c.relname = %(t)s "
                "AND c.relkind = 'r' AND pg_table_is_visible(c.oid)", {"t": table}).fetchone()
            if row is None:
                raise BenchError(f"no table {table}")
            total, heap, indexes = row
            out[f"size_{table}_total_mb"] = total / MB
            out[f"size_{table}_heap_mb"] = heap / MB
            out[f"size_{table}_indexes_mb"] = indexes / MB
        for name, size in conn.execute(
                "SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                "WHERE t.relname = 'certificates' AND pg_table_is_visible(t.oid) "
                "ORDER BY i.relname"):
            out[f"size_index_{name}_mb"] = size / MB
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        out["size_database_mb"] = (row[0] if row else 0) / MB
    return out


# --- 4. base backup and restore -----------------------------------------------------------

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# What a base backup leaves out (PostgreSQL docs, "Making a Base Backup Using the Low Level
# API", and what pg_basebackup skips): per-run files and directories emptied at start.
_SKIP_FILES = {"postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map"}
_EMPTY_DIRS = {"pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots",
               "pg_stat_tmp", "pg_subtrans"}


def _pg_bin(name: str) -> str:
    """The server's own binary: the newest /usr/lib/postgresql/N/bin, else PATH."""
    for directory in sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")),
                            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                            reverse=True):
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} is not installed")
    return found


def _as_server_user(command: list[str]) -> list[str]:
    """Run as the postgres user when we are root (the server refuses to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scratch(ctx: ScaleContext) -> Path:
    """A directory the server user can reach: under ``ctx.work`` when every ancestor lets it
    through, else a new one in the system's temporary directory."""
    base = ctx.work / "backup"
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return base
    probe = subprocess.run(_as_server_user(["test", "-x", str(base)]), check=False)
    if probe.returncode == 0:
        return base
    # Search only (no listing) for others: the server user must reach the copy it runs on.
    os.chmod(base, 0o711)  # noqa: S103
    probe = subprocess.run(_as_server_user(["test", "-x", str(base)]), check=False)
    if probe.returncode == 0:
        return base
    shutil.rmtree(base, ignore_errors=True)
    other = Path(tempfile.mkdtemp(prefix="jpki-scale-backup-"))
    os.chmod(other, 0o711)  # noqa: S103
    return other


def _copy_tree(source: Path, target: Path) -> int:
    """Copy a live data directory file by file (files vanish while others' databases are
    dropped: skipped); bytes copied."""
    copied = 0
    for root, dirs, files in os.walk(source):
        rel = Path(root).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        if rel.parts and rel.parts[0] in _EMPTY_DIRS and len(rel.parts) == 1:
            dirs[:] = []
            continue
        for name in files:
            if not rel.parts and name in _SKIP_FILES:
                continue
            with contextlib.suppress(FileNotFoundError):
                shutil.copy2(Path(root) / name, target / rel / name)
                copied += (target / rel / name).stat().st_size
    return copied


def _low_level_backup(conn: psycopg.Connection[Any], data_dir: Path, target: Path) -> int:
    """A base backup by the low-level API over an ordinary connection (for a server whose
    pg_hba.conf admits no replication connection): a physical replication slot keeps the WAL
    from the backup's start, ``pg_backup_start``, a copy of the data directory,
    ``pg_backup_stop`` (its backup_label written beside the copy), then the WAL written
    meanwhile. Bytes copied."""
    slot = f"jpki_bench_{os.getpid()}"
    conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
    try:
        started = conn.execute(
            "SELECT pg_walfile_name(pg_backup_start('jpki-scale-bench', true))").fetchone()
        try:
            copied = _copy_tree(data_dir, target)
        finally:
            row = conn.execute(
                "SELECT labelfile, spcmapfile, pg_walfile_name(lsn) "
                "FROM pg_backup_stop(false)").fetchone()
        assert row is not None and started is not None
        (target / "backup_label").write_text(row[0])
        if row[1]:
            (target / "tablespace_map").write_text(row[1])
        copied += _copy_wal(data_dir / "pg_wal", target / "pg_wal", started[0], row[2])
    finally:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    return copied


def _copy_wal(source: Path, target: Path, first: str, last: str) -> int:
    """The WAL segments ``first`` to ``last`` (file names: same timeline, so ordered as text)
    and the timeline history files — not the recycled segments pg_wal also holds; bytes."""
    target.mkdir(exist_ok=True)
    (target / "archive_status").mkdir(exist_ok=True)
    copied = 0
    for item in sorted(source.iterdir()):
        wanted = item.name.endswith(".history") or (
            len(item.name) == 24 and first[:8] == item.name[:8] and first <= item.name <= last)
        if wanted and item.is_file():
            shutil.copy2(item, target / item.name)
            copied += (target / item.name).stat().st_size
    return copied


def _base_backup(ctx: ScaleContext, target: Path) -> tuple[float, int, int]:
    """(seconds, bytes, 1 when by the low-level API) of a base backup of the whole server into
    ``target``: pg_basebackup (plain format, WAL streamed, fast checkpoint) when the server
    admits a replication connection, else the low-level API (:func:`_low_level_backup`)."""
    url = make_url(ctx.url)
    command = [_pg_bin("pg_basebackup"), "-h", url.host or "127.0.0.1",
               "-p", str(url.port or 5432), "-U", url.username or "postgres",
               "-D", str(target), "-Fp", "-X", "stream", "-c", "fast", "--no-sync"]
    began = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        seconds = time.perf_counter() - began
        return seconds, _tree_bytes(target), 0
    if "replication" not in proc.stderr:
        raise BenchError(f"pg_basebackup failed: {proc.stderr.strip()[-500:]}")
    shutil.rmtree(target, ignore_errors=True)
    with psycopg.connect(_plain(ctx.url), autocommit=True) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
        assert row is not None
        data_dir = Path(row[0])
        if not os.access(data_dir, os.R_OK | os.X_OK):
            raise BenchError(f"pg_basebackup is refused (pg_hba.conf: no replication entry) and "
                             f"{data_dir} is not readable for a low-level backup")
        began = time.perf_counter()
        copied = _low_level_backup(conn, data_dir, target)
        return time.perf_counter() - began, copied, 1


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _restore(ctx: ScaleContext, backup: Path, restored: Path, expected: int) -> float:
    """Seconds from a base backup to a server answering: copy the backup into a new data
    directory, start a server on it (its WAL replayed to the backup's end) on a free port,
    wait until it accepts connections and count the certificates of the loaded database."""
    began = time.perf_counter()
    shutil.copytree(backup, restored, symlinks=True)
    # The packaged server keeps its configuration outside the data directory: the restored one
    # gets its own, local connections only.
    (restored / "postgresql.conf").write_text("")
    (restored / "pg_hba.conf").write_text("local all all trust\n")
    (restored / "pg_ident.conf").write_text("")
    if os.geteuid() == 0:
        shutil.chown(restored, "postgres", "postgres")
        for root, dirs, files in os.walk(restored):
            for name in dirs + files:
                shutil.chown(Path(root) / name, "postgres", "postgres")
    os.chmod(restored, 0o700)
    port = _free_port()
    # A short path: a Unix socket's path is limited to 107 bytes.
    sockets = Path(tempfile.mkdtemp(prefix="jpki-pg-"))
    if os.geteuid() == 0:
        shutil.chown(sockets, "postgres", "postgres")
    options = (f"-p {port} -c listen_addresses='' -c unix_socket_directories='{sockets}' "
               "-c shared_buffers=128MB -c max_connections=20 -c archive_mode=off")
    log = restored / "restore.log"
    start = subprocess.run(_as_server_user([_pg_bin("pg_ctl"), "-D", str(restored), "-l",
                                            str(log), "-o", options, "-w", "-t", "3600",
                                            "start"]),
                           capture_output=True, text=True, check=False)
    try:
        if start.returncode != 0:
            tail = log.read_text()[-1000:] if log.exists() else start.stderr
            raise BenchError(f"the restored server did not start: {tail}")
        database = make_url(ctx.url).database
        with psycopg.connect(host=str(sockets), port=port, user="postgres",
                             dbname=database) as conn:
            row = conn.execute("SELECT count(*) FROM certificates").fetchone()
        seconds = time.perf_counter() - began
        count = int(row[0]) if row else -1
        if count != expected:
            raise BenchError(f"the restored database holds {count} certificates, not {expected}")
        return seconds
    finally:
        subprocess.run(_as_server_user([_pg_bin("pg_ctl"), "-D", str(restored), "-m", "fast",
                                        "-w", "stop"]), capture_output=True, check=False)
        shutil.rmtree(sockets, ignore_errors=True)


def measure_restore(ctx: ScaleContext) -> dict[str, float | int]:
    """A base backup of the PostgreSQL server holding the population, and a restore from it.

    Timed: (1) ``basebackup_s``: ``pg_basebackup`` of the server (plain format, WAL streamed,
    fast checkpoint, no fsync) into a scratch directory under ``ctx.work`` — or, when the
    server's pg_hba.conf admits no replication connection (the packaged default), the low-level
    API over an ordinary connection (``pg_backup_start``, a file copy of the data directory,
    ``pg_backup_stop``, the WAL; ``basebackup_low_level`` = 1), which needs read access to the
    data directory (run as root or the server's user); (2) ``restore_s``: copying the backup
    into a new data directory, starting a second server on it (``pg_ctl`` from
    /usr/lib/postgresql/N/bin, as the postgres user when run as root, on a free port, a Unix
    socket only), WAL replay, until it accepts connections and ``SELECT count(*) FROM
    certificates`` in the loaded database returns the count read just before the backup.

    A base backup copies the whole server — every database on it, others' included — so
    ``server_mb`` (the sum of ``pg_database_size``) is reported beside ``backup_mb`` and
    ``database_mb``. Reads only (the backup's checkpoint aside); the scratch directories are
    removed afterwards.
    """
    with psycopg.connect(_plain(ctx.url)) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM certificates), pg_database_size(current_database()), "
            "(SELECT sum(pg_database_size(datname)) FROM pg_database)").fetchone()
    assert row is not None
    expected, database_bytes, server_bytes = int(row[0]), int(row[1]), int(row[2])
    scratch = _scratch(ctx)
    backup, restored = scratch / "base", scratch / "restored"
    try:
        backup_s, backup_bytes, low_level = _base_backup(ctx, backup)
        restore_s = _restore(ctx, backup, restored, expected)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"basebackup_s": backup_s, "restore_s": restore_s, "backup_mb": backup_bytes / MB,
            "basebackup_low_level": low_level, "database_mb": database_bytes / MB,
            "server_mb": server_bytes / MB, "restore_certificates": expected}


# By name; measure_crl and measure_jobs change the database (their docstrings say how).
MEASUREMENTS = {"crl": measure_crl, "jobs": measure_jobs, "sizes": measure_sizes,
                "restore": measure_restore, "expiry": measure_expiry, "wave": measure_wave}
