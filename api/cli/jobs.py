"""`jpki jobs`: what the background jobs of `jpki serve` did."""

from __future__ import annotations

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    open_services,
    out,
    print_json,
)

# A top-level command of the root (api.cli.COMMANDS), not a group.
app = typer.Typer(add_completion=False)


@app.command()
def jobs(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """The background jobs of `jpki serve`: when each last ran, how long it took, what it did."""
    with open_services(data_dir, as_json) as services:
        runs = services.jobs.runs()
        if as_json:
            print_json({"jobs": runs})
            return
        if not runs:
            out.print("no job has run yet (they run in `jpki serve`)")
            return
        from rich.table import Table

        table = Table("job", "last run", "took", "outcome", "did", "runs", "failures",
                      "last success")
        for r in runs:
            did = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
            outcome = r.outcome if r.error is None else f"{r.outcome} ({r.error})"
            table.add_row(r.job, r.started_at.isoformat(), f"{r.duration_ms} ms", outcome, did,
                          str(r.runs), str(r.failures),
                          r.last_success_at.isoformat() if r.last_success_at else "never")
        out.print(table)
