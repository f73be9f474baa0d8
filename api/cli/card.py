"""`jpki card …`: registering cards and recording their loss, finding and return.

The development card itself (emulator, issuer key) is the device tool `jpki-card`
(devices/card/cli.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    grant,
    group,
    open_services,
    out,
    parse,
    parse_date,
    print_json,
)
from jpki.access.authz import Operation
from jpki.lifecycle.cards import CardSpec
from jpki.registry.cards import CardEvent

app = group("Cards: register, lost / found / returned.")


@app.command("add")
def card_add(resident: Annotated[str, typer.Option(help="Resident id.")],
             expiry: Annotated[str | None, typer.Option(help="Expiry, YYYY-MM-DD.")] = None,
             number: Annotated[str | None, typer.Option(help="Card number.")] = None,
             data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Register a new card; an active previous card is replaced and its certificates revoked."""
    spec = CardSpec(number=number,
                    expires_on=parse(parse_date, expiry, "date", as_json) if expiry else None)
    with open_services(data_dir, as_json) as services:
        outcome = services.cards.register(grant(Operation.CARD_REGISTER), resident, spec)
        data = {"number": outcome.card.number, "expires_on": outcome.card.expires_on,
                "revoked": [r.serial for r in outcome.revocations]}
        print_json(data) if as_json else out.print(f"card {outcome.card.number}")


@app.command("event")
def card_event(number: Annotated[str, typer.Option(help="Card number.")],
               kind: Annotated[CardEvent, typer.Option(help="lost, found or returned.")],
               data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Record a card's loss (hold), finding (revoke) or return (revoke)."""
    with open_services(data_dir, as_json) as services:
        outcome = services.cards.record_event(grant(Operation.CARD_EVENT), number, kind)
        data = {"number": outcome.card.number, "status": outcome.card.status,
                "revoked": [{"serial": r.serial, "reason": r.reason.rfc_name}
                            for r in outcome.revocations]}
        if as_json:
            print_json(data)
        else:
            out.print(f"card {outcome.card.number}: {outcome.card.status.value}; "
                      f"{len(outcome.revocations)} certificate(s) changed")
