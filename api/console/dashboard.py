"""The supervisor's dashboard (統括管理者): the national figures of jpki.registry.statistics — the
certificates, the CRLs, the OCSP traffic, the relying parties' calls and the audit chain's last
verification — as plots drawn on the server (api.console.charts), each with the table it is
drawn from and that table as a CSV file — the same figures, from the same service and
authorisation, that GET /v1/operators/statistics gives."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.console import charts, japan_map
from api.console.i18n import translator
from api.console.pages import SECURITY_HEADERS, language_of, render, signed_in
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import SignIn
from jpki.errors import InvalidInput, NotFound
from jpki.model import CertKind
from jpki.municipalities import PREFECTURES
from jpki.registry.statistics import MAX_DAYS, Report

router = APIRouter(prefix="/console/dashboard", include_in_schema=False)
KINDS = tuple(CertKind)


def _days(request: Request) -> int:
    raw = request.query_params.get("days", "30")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise InvalidInput(f"days is 1 to {MAX_DAYS}", field="days")
    return int(raw)


async def _report(request: Request, session: SignIn) -> Report:
    grant = authorize(session.user.principal, Operation.STATISTICS_READ)
    report: Report = await run_in_threadpool(request.app.state.services.statistics.report,
                                             grant, _days(request))
    return report


def tables(report: Report, t: Mapping[str, str]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """Each plot's table: (header, rows), in the page's language."""
    kinds = [t[f"kind.{k.value}"] for k in KINDS]
    span = [report.since + timedelta(days=i)
            for i in range((report.until - report.since).days + 1)]

    def per_day(rows: tuple[Any, ...]) -> list[list[Any]]:
        counts = {(r.day, r.kind): r.count for r in rows}
        return [[d.isoformat(), *(counts.get((d, k), 0) for k in KINDS)] for d in span]

    months = sorted({m.month for m in report.expiring})
    expiring = {(m.month, m.kind): m.count for m in report.expiring}
    valid = {(p.prefecture, p.kind): p.count for p in report.valid_by_prefecture}
    audit = report.audit_verification
    return {
        "issued": ([t["dash.day"], *kinds], per_day(report.issued)),
        "renewed": ([t["dash.day"], *kinds], per_day(report.renewed)),
        "revoked": ([t["dash.day"], *kinds], per_day(report.revoked)),
        "reasons": ([t["dash.reason"], t["dash.count"]],
                    [[t.get(f"reason.{r.reason.rfc_name}", r.reason.rfc_name), r.count]
                     for r in report.reasons]),
        "expiring": ([t["dash.month"], *kinds],
                     [[m, *(expiring.get((m, k), 0) for k in KINDS)] for m in months]),
        "crls": ([t["dash.ca"], t["dash.shard"], t["dash.number"], t["dash.this_update"],
                  t["dash.next_update"], t["dash.entries"], t["dash.state"]],
                 [[f"{c.ca}/g{c.generation:02d}", c.scope, c.number,
                   c.this_update.isoformat(timespec="seconds"),
                   c.next_update.isoformat(timespec="seconds"), c.entries,
                   t["dash.overdue"] if c.overdue(report.at) else t["dash.current"]]
                  for c in report.crls]),
        "prefectures": ([t["dash.prefecture"], *kinds],
                        [[_prefecture(code, t), *(valid.get((code, k), 0) for k in KINDS)]
                         for code in PREFECTURES
                         if any(valid.get((code, k)) for k in KINDS)]),
        "ocsp": ([t["dash.day"], t["dash.requests"], t["dash.successful"], t["dash.per_second"],
                  t["dash.peak_per_second"], t["dash.mean_ms"], t["dash.p50_ms"],
                  t["dash.p99_ms"]],
                 [[d.day.isoformat(), d.requests, d.successful, figure(d.per_second),
                   figure(d.peak_per_second), figure(d.mean_ms), figure(d.p50_ms),
                   figure(d.p99_ms)] for d in report.ocsp]),
        "rp_usage": ([t["dash.relying_party"], t["dash.rp_name"], t["dash.scope"],
                      t["dash.calls"], t["dash.refused"], t["dash.items"]],
                     [[u.relying_party, u.name or "", u.scope, u.calls, u.refused, u.items]
                      for u in report.rp_usage]),
        "audit": ([t["dash.item"], t["dash.value"]], [
            [t["dash.audit_at"], instant(audit.at) or t["dash.never"]],
            [t["dash.audit_outcome"],
             t[f"dash.audit_{audit.outcome}"] if audit.outcome in ("ok", "failed") else ""],
            [t["dash.audit_records"], "" if audit.records is None else audit.records],
            [t["dash.audit_error"], audit.error or ""],
            [t["dash.audit_broken_at"], "" if audit.broken_at is None else audit.broken_at],
            [t["dash.audit_runs"], audit.runs],
            [t["dash.audit_failures"], audit.failures],
            [t["dash.audit_last_success"], instant(audit.last_success_at) or t["dash.never"]],
            [t["dash.audit_head"], audit.head]]),
    }


def figure(value: float | None) -> str:
    """A rate or a duration as the page and its CSV show it (the API gives it unrounded)."""
    return "" if value is None else f"{value:.3f}"


def instant(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(timespec="seconds")


def coverage(report: Report, t: Mapping[str, str]) -> str:
    """How far the relying-party figures go (jpki.store.rp_usage sums them by a job)."""
    c = report.rp_coverage
    return t["dash.rp_coverage"].format(through=c.through, head=c.head,
                                        at=instant(c.at) or t["dash.never"])


def _prefecture(code: str, t: Mapping[str, str]) -> str:
    prefecture = PREFECTURES[code]
    return prefecture.name_ja if t is translator("ja") else prefecture.name_romaji


def plots(named: dict[str, tuple[list[str], list[list[Any]]]], t: Mapping[str, str],
          report: Report) -> dict[str, Any]:
    def columns(name: str) -> Any:
        header, rows = named[name]
        return charts.stacked_columns(
            [str(r[0])[5:] if name != "expiring" else str(r[0]) for r in rows],
            [(header[i], [r[i] for r in rows]) for i in range(1, len(header))],
            title=t[f"dash.{name}"])

    def totals(name: str) -> Any:
        _, rows = named[name]
        return charts.bars([(str(r[0]), sum(r[1:])) for r in rows], title=t[f"dash.{name}"])

    def prefecture_map() -> Any:
        valid: dict[str, int] = {}
        for p in report.valid_by_prefecture:
            valid[p.prefecture] = valid.get(p.prefecture, 0) + p.count
        names = {code: _prefecture(code, t) for code in PREFECTURES}
        return japan_map.japan(valid, names, title=t["dash.map"])

    def states() -> Any:
        _, rows = named["crls"]
        return charts.bars([(state, sum(1 for r in rows if r[-1] == state))
                            for state in (t["dash.current"], t["dash.overdue"])],
                           title=t["dash.crls"])

    def ocsp() -> Any:
        _, rows = named["ocsp"]
        return charts.stacked_columns(
            [str(r[0])[5:] for r in rows],
            [(t["dash.successful"], [r[2] for r in rows]),
             (t["dash.other"], [r[1] - r[2] for r in rows])], title=t["dash.ocsp"])

    def latency() -> Any:
        _, rows = named["ocsp"]
        return charts.lines(
            [str(r[0])[5:] for r in rows],
            [(t["dash.p50_ms"], [float(r[6]) if r[6] else None for r in rows]),
             (t["dash.p99_ms"], [float(r[7]) if r[7] else None for r in rows])],
            title=t["dash.ocsp_latency"])

    def usage() -> Any:
        # The busiest twenty (party, scope) pairs; the table has them all.
        _, rows = named["rp_usage"]
        busiest = sorted(rows, key=lambda r: -(r[3] + r[4]))[:20]
        return charts.bars([(f"{r[1] or r[0]} · {r[2]}", r[3] + r[4]) for r in busiest],
                           title=t["dash.rp_usage"])

    def audit() -> Any:
        verification = report.audit_verification
        return charts.bars([(t["dash.audit_verified"], verification.records or 0),
                            (t["dash.audit_head"], verification.head)], title=t["dash.audit"])

    return {"issued": columns("issued"), "renewed": columns("renewed"),
            "revoked": columns("revoked"), "reasons": totals("reasons"),
            "expiring": columns("expiring"), "prefectures": totals("prefectures"),
            "crls": states(), "map": prefecture_map(), "ocsp": ocsp(),
            "ocsp_latency": latency(), "rp_usage": usage(), "audit": audit()}


@router.get("")
async def dashboard(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        report = await _report(request, session)
        t = translator(language_of(request))
        named = tables(report, t)
        return render(request, "dashboard.html", session=session, report=report,
                      tables=named, plots=plots(named, t, report), days=_days(request),
                      coverage=coverage(report, t))

    return await signed_in(request, page)


@router.get("/{name}.csv")
async def download(request: Request, name: str) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        report = await _report(request, session)
        named = tables(report, translator(language_of(request)))
        if name not in named:
            raise NotFound("no such table")
        header, rows = named[name]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 §2
        writer.writerow(header)
        writer.writerows(_cell(row) for row in rows)
        # UTF-8 with a byte-order mark, which spreadsheet software needs to read Japanese.
        body = "\ufeff" + buffer.getvalue()
        filename = f"jpki-{name}-{report.since.isoformat()}-{report.until.isoformat()}.csv"
        return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8",
                        headers={**SECURITY_HEADERS,
                                 "content-disposition": f'attachment; filename="{filename}"'})

    return await signed_in(request, page)


def _cell(row: list[Any]) -> list[Any]:
    # A cell starting with = + - @ would be a formula to a spreadsheet (CSV injection): none of
    # these tables holds free text, but the guard costs nothing.
    return [f"'{v}" if isinstance(v, str) and v[:1] in "=+-@" else v for v in row]
