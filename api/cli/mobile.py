"""`jpki mobile`: the layered measures (重層的な措置) over mobile certificates — run the sweep
by hand, and read what each run did."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    fail,
    grant,
    group,
    open_services,
    out,
    print_json,
)
from jpki.access.authz import Operation
from jpki.model import MobileSweepReport

app = group("Smartphone certificates.")


def summary(report: MobileSweepReport) -> dict[str, object]:
    """A run without its items (a list of runs carries their counts)."""
    return {"id": report.id, "started_at": report.started_at,
            "finished_at": report.finished_at, "outcome": report.outcome,
            "flag_after_days": report.flag_after_days,
            "hold_after_days": report.hold_after_days, "actor": report.actor,
            "counts": report.counts}


@app.command("sweep")
def mobile_sweep(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """重層的な措置: revoke mobile certificates whose card certificate is no longer valid or
    whose resident record has ended; flag devices silent past JPKI_MOBILE_FLAG_SILENT_DAYS and
    put on hold the certificates of those silent past JPKI_MOBILE_HOLD_SILENT_DAYS. `jpki
    serve` runs it by itself; this runs it now, unless a server holds the maintenance lease."""
    from api.maintenance_lease import maintenance_lease
    from jpki.settings import Settings

    # The lease `jpki serve` runs its jobs under (a file lock on SQLite, an advisory lock on
    # PostgreSQL): never two sweeps at once.
    lease = maintenance_lease(Settings(data_dir=data_dir))
    try:
        if not lease.held():
            fail("jobs.locked", "another process (a running `jpki serve`) holds the maintenance "
                 "lease and runs the sweep itself", as_json)
        with open_services(data_dir, as_json) as services:
            report = services.mobile_sweep.run(grant(Operation.MOBILE_SWEEP))
    finally:
        lease.release()
    if as_json:
        print_json(report)
        return
    out.print(f"sweep {report.id}: revoked {len(report.revoked)} mobile certificate(s); "
              f"flagged {len(report.flagged)} silent device(s); held the certificates of "
              f"{len(report.held)} device(s)")
    for serial in report.revoked:
        out.print(f"  revoked {serial}")
    for device in report.flagged:
        out.print(f"  flagged device {device}")
    for device in report.held:
        out.print(f"  held device {device}")


@app.command("sweeps")
def mobile_sweeps(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False,
                  limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
                  sweep_id: Annotated[str | None, typer.Option(
                      "--id", help="One run, with what it did item by item.")] = None) -> None:
    """What the sweep's runs did: when, with which thresholds, how many certificates revoked
    and devices flagged and held (by id: no personal data)."""
    with open_services(data_dir, as_json) as services:
        if sweep_id is not None:
            report = services.mobile_sweep.report(grant(Operation.MOBILE_SWEEP_READ),
                                                  sweep_id)
            if as_json:
                print_json(report)
                return
            out.print(f"sweep {report.id} ({report.outcome}) started "
                      f"{report.started_at.isoformat()}")
            for action, items in (("revoked", report.revoked), ("flagged", report.flagged),
                                  ("held", report.held)):
                for item in items:
                    out.print(f"  {action} {item}")
            return
        reports = services.mobile_sweep.reports(grant(Operation.MOBILE_SWEEP_READ), limit)
    if as_json:
        print_json({"sweeps": [summary(r) for r in reports]})
        return
    if not reports:
        out.print("the sweep has not run yet")
        return
    for r in reports:
        out.print(f"{r.id} {r.started_at.isoformat()} {r.outcome}: revoked "
                  f"{r.counts['revoked']}, flagged {r.counts['flagged']}, held "
                  f"{r.counts['held']} (flag after {r.flag_after_days} d, hold after "
                  f"{r.hold_after_days or 'never'} d)")
