"""The supervisor's dashboard (統括管理者): the national figures of jpki.registry.statistics as
plots drawn on the server (api.console.charts), each with the table it is drawn from and that
table as a CSV file — the same figures, from the same service and authorisation, that
GET /v1/operators/statistics gives."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import timedelta
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
    }


def _prefecture(code: str, t: Mapping[str, str]) -> str:
    prefecture = PREFECTURES[code]
    return prefecture.name_ja if t is translator("ja") else prefecture.name_romaji


def plots(named: dict[str, tuple[list[str], list[list[Any]]]], t: Mapping[str, str],
          report_rows: tuple[Any, ...] = ()) -> dict[str, Any]:
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
        for p in report_rows:
            valid[p.prefecture] = valid.get(p.prefecture, 0) + p.count
        names = {code: _prefecture(code, t) for code in PREFECTURES}
        return japan_map.japan(valid, names, title=t["dash.map"])

    def states() -> Any:
        _, rows = named["crls"]
        return charts.bars([(state, sum(1 for r in rows if r[-1] == state))
                            for state in (t["dash.current"], t["dash.overdue"])],
                           title=t["dash.crls"])

    return {"issued": columns("issued"), "renewed": columns("renewed"),
            "revoked": columns("revoked"), "reasons": totals("reasons"),
            "expiring": columns("expiring"), "prefectures": totals("prefectures"),
            "crls": states(), "map": prefecture_map()}


@router.get("")
async def dashboard(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        report = await _report(request, session)
        t = translator(language_of(request))
        named = tables(report, t)
        return render(request, "dashboard.html", session=session, report=report,
                      tables=named, plots=plots(named, t, report.valid_by_prefecture),
                      days=_days(request))

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
