"""`jpki audit verify`: the hash-chained audit log, and the certificates replayed against it."""

from __future__ import annotations

import contextlib
from time import perf_counter
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    escape,
    group,
    open_services,
    out,
    parse,
    print_json,
)
from jpki.errors import AuditChainBroken, InvalidInput

if TYPE_CHECKING:
    from api.composition import Services
    from jpki.lifecycle.audit_state import StateReport

app = group("The hash-chained audit log.")


def _head(text: str) -> tuple[int, str]:
    seq, sep, mac = text.strip().partition(":")
    # A negative or non-hex head would be accepted and then check nothing.
    if (not sep or not (seq.isascii() and seq.isdigit()) or len(mac) != 64
            or any(c not in "0123456789abcdef" for c in mac.lower())):
        raise InvalidInput("--expect-head is SEQ:MAC as printed by `jpki audit verify`")
    return int(seq), mac.lower()


@app.command("verify")
def audit_verify(
    expect_head: Annotated[str | None, typer.Option(
        help="A head (SEQ:MAC) recorded earlier; detects a rollback of the whole log.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
    state: Annotated[bool, typer.Option(
        "--state", help="Also replay the log against the certificates: each one's status, "
        "revocation and hold release must be what its last audited transition says.")] = False,
) -> None:
    """Verify the audit chain: any changed, inserted or deleted record fails; with --state,
    also every certificate against what the log says of it."""
    expected = parse(_head, expect_head, "head", as_json) if expect_head else None
    # One snapshot for the chain and the state, so both describe the same moment.
    with open_services(data_dir, as_json) as services, services.snapshots() as uow:
        run = _Run(services)
        try:
            report = services.audit.verify(uow, expected)
            replayed = None
            if state:
                from jpki.lifecycle.audit_state import verify_state

                replayed = verify_state(uow)
        except Exception as exc:
            run.failed(exc)
            raise
        run.done(report.records, replayed)
        data: dict[str, Any] = {"ok": True, "records": report.records,
                                "head": f"{report.head_seq}:{report.head_mac}"}
        if replayed is not None:
            data.update(ok=replayed.ok, state=replayed.as_dict())
        if as_json:
            print_json(data)
        else:
            out.print(f"audit chain OK: {report.records} records; head "
                      f"{report.head_seq}:{report.head_mac}")
            if replayed is not None:
                _print_state(replayed)
        if replayed is not None:
            replayed.raise_if_mismatched()  # reported as audit.state_mismatch, exit 1


class _Run:
    """This verification in the jobs' ledger (jpki.jobs.AUDIT_VERIFY), where the dashboard
    reads when the chain was last verified, the result and over how many records."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._started_at = services.clock.now()
        self._started = perf_counter()

    def done(self, records: int, replayed: StateReport | None) -> None:
        counts = {"records": records}
        if replayed is not None:
            counts["state_mismatches"] = (replayed.mismatch_count + replayed.unrecorded_count
                                         + replayed.without_row_count)
        self._record(None if replayed is None or replayed.ok else "AuditStateMismatch", counts)

    def failed(self, exc: BaseException) -> None:
        counts: dict[str, int] = {}
        seq = exc.context.get("seq") if isinstance(exc, AuditChainBroken) else None
        if isinstance(seq, int):
            # The records before the first one that did not verify did.
            counts = {"records": max(0, seq - 1), "broken_at": seq}
        # The type only: an exception's text may quote data (jpki.jobs).
        self._record(type(exc).__name__, counts)

    def _record(self, error: str | None, counts: dict[str, int]) -> None:
        from jpki.jobs import AUDIT_VERIFY, FAILED, OK
        from jpki.model import JobRun

        ok = error is None
        run = JobRun(job=AUDIT_VERIFY, started_at=self._started_at,
                     duration_ms=round((perf_counter() - self._started) * 1000),
                     outcome=OK if ok else FAILED, error=error, counts=counts, runs=1,
                     failures=0 if ok else 1, last_success_at=self._started_at if ok else None)
        # The verification's answer stands even if the ledger cannot take it (a read-only
        # replica, a database gone since): the dashboard then shows the run before.
        with contextlib.suppress(Exception):
            self._services.jobs.record(run)


def _print_state(report: StateReport) -> None:
    out.print(("certificate state OK: " if report.ok else "certificate state differs: ")
              + report.summary())
    for field, count in sorted(report.not_checkable.items()):
        out.print(f"  {field} of {count} certificates: not checkable from the log (older "
                  "records)")
    for m in report.mismatches:
        out.print(escape(f"  {m.serial} {m.field}: expected {m.expected}, found {m.found}"))
    for u in report.unrecorded:
        out.print(escape(f"  {u.serial} ({u.status}): no {', '.join(u.missing)} record"))
    for w in report.without_row:
        out.print(escape(f"  {w.serial}: no row (last recorded: {w.last_action}, "
                         f"record {w.seq})"))
