"""`jpki audit verify`: the hash-chained audit log, and the certificates replayed against it."""

from __future__ import annotations

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
from jpki.errors import InvalidInput

if TYPE_CHECKING:
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
        report = services.audit.verify(uow, expected)
        replayed = None
        if state:
            from jpki.lifecycle.audit_state import verify_state

            replayed = verify_state(uow)
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
