"""`jpki-station`: the counter, driving a card in a PC/SC reader and the CA's REST API.

The station holds its own credentials (``JPKI_STATION_CLIENT_ID`` / ``JPKI_STATION_CLIENT_SECRET``
or the options), the URL of the CA (``JPKI_STATION_API``), and the issuer key that authenticates
it to cards (``--issuer-key``, PEM, or ``JPKI_STATION_ISSUER_KEY``): its whole configuration, on
the station's machine, none of it the CA's settings. PINs are asked for without echo unless
given; they never appear in output or errors.

A device tool with its own console script, outside the CA: it imports the devices and the core's
protocol and errors only (pyproject's import contracts) and reaches the CA over HTTP.
``python -m devices.station.cli`` is the same command without an installed script.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devices.card.client import JpkiCard
from devices.card.jpki_ap import Pin
from devices.station.ca_client import CaClient, CaRefused
from devices.station.workflow import EnrolmentStation
from jpki.errors import JpkiError

app = typer.Typer(help="The enrolment station: a card in a reader, the CA's API.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

Api = Annotated[str, typer.Option("--api", envvar="JPKI_STATION_API",
                                  help="The CA's base URL.")]
ClientId = Annotated[str, typer.Option("--client-id", envvar="JPKI_STATION_CLIENT_ID",
                                       help="The station's client id.")]
Secret = Annotated[str, typer.Option("--client-secret", envvar="JPKI_STATION_CLIENT_SECRET",
                                     help="The station's client secret.", show_default=False)]
Reader = Annotated[str, typer.Option("--reader", help="PC/SC reader name.")]
IssuerKey = Annotated[Path, typer.Option("--issuer-key", envvar="JPKI_STATION_ISSUER_KEY",
                                         help="The issuer key (PEM) cards trust.")]
Resident = Annotated[str, typer.Option("--resident", help="Resident id.")]
Documents = Annotated[list[str], typer.Option(
    "--document", help="An identity document shown (repeatable), e.g. drivers_license; "
                       "add :photo for a 乙 document with a photo, :YYYY-MM-DD for its date.")]
Measures = Annotated[list[str] | None, typer.Option(
    "--measure", help="pin_entry, ic_chip_check or registry_hearing (repeatable).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DEFAULT_READER = "Virtual PCD 00 00"


def _fail(code: str, detail: str, as_json: bool) -> NoReturn:
    if as_json:
        sys.stderr.write(json.dumps({"error": {"code": code, "detail": detail}},
                                    ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"error: {code}: {detail}\n")
    raise typer.Exit(1)


def _document(text: str) -> dict[str, Any]:
    kind, *extras = text.split(":")
    doc: dict[str, Any] = {"type": kind}
    for extra in extras:
        if extra == "photo":
            doc["has_photo"] = True
        else:
            doc["issued_on"] = extra
    return doc


def _proofing(documents: list[str], measures: list[str] | None) -> dict[str, Any]:
    return {"presence": "in_person", "applicant_documents": [_document(d) for d in documents],
            "measures": measures or []}


@contextmanager
def _station(api: str, client_id: str, secret: str, reader: str, issuer_key: Path,
             as_json: bool) -> Iterator[EnrolmentStation]:
    from devices.card.pcsc import PcscTransport

    try:
        key = serialization.load_pem_private_key(issuer_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        _fail("station.issuer_key", f"cannot read an RSA private key from {issuer_key}",
              as_json)
        raise AssertionError from exc  # unreachable
    if not isinstance(key, rsa.RSAPrivateKey):
        _fail("station.issuer_key", "the issuer key must be RSA", as_json)
    try:
        with CaClient(api, client_id, secret) as ca:
            transport = PcscTransport.open(reader)
            try:
                yield EnrolmentStation(ca, JpkiCard(transport), key)
            finally:
                transport.close()
    except CaRefused as exc:
        _fail(exc.ca_code or exc.code, exc.detail, as_json)
    except JpkiError as exc:
        _fail(exc.code, exc.detail, as_json)


def _pin(value: str | None, prompt: str) -> str:
    return value if value is not None else typer.prompt(prompt, hide_input=True)


@app.command("enroll")
def enroll(resident: Resident, documents: Documents, api: Api, client_id: ClientId,
           client_secret: Secret, issuer_key: IssuerKey,
           measures: Measures = None, reader: Reader = DEFAULT_READER,
           auth_pin: Annotated[str | None, typer.Option(help="4 digits.")] = None,
           sign_pin: Annotated[str | None, typer.Option(
               help="6–16 of A–Z0–9 (15 and over only).")] = None,
           no_sign: Annotated[bool, typer.Option("--no-sign",
                                                 help="Do not ask for a sign password.")] = False,
           as_json: JsonOut = False) -> None:
    """Proof identity, have the card generate its keys, issue, write, set PINs, verify."""
    auth = _pin(auth_pin, "auth PIN (4 digits)")
    sign = None if no_sign else _pin(sign_pin, "signing password")
    with _station(api, client_id, client_secret, reader, issuer_key, as_json) as station:
        result = station.enroll(resident, proofing=_proofing(documents, measures),
                                auth_pin=auth, sign_pin=sign)
    data = {"resident": result.resident_id, "card": result.card_number,
            "serials": result.serials, "pattern": result.proofing_pattern,
            "steps": {name: round(seconds, 4) for name, seconds in result.steps}}
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        for kind, serial in result.serials.items():
            sys.stdout.write(f"{kind} {serial}\n")


@app.command("renew")
def renew(resident: Resident, documents: Documents, api: Api, client_id: ClientId,
          client_secret: Secret, issuer_key: IssuerKey, measures: Measures = None,
          reader: Reader = DEFAULT_READER, as_json: JsonOut = False) -> None:
    """Renew both certificates on the card (new keys; the PINs stay)."""
    with _station(api, client_id, client_secret, reader, issuer_key, as_json) as station:
        result = station.renew(resident, proofing=_proofing(documents, measures))
    sys.stdout.write((json.dumps({"serials": result.serials}) if as_json
                      else "\n".join(f"{k} {v}" for k, v in result.serials.items())) + "\n")


@app.command("pin-reset")
def pin_reset(resident: Resident, documents: Documents, api: Api, client_id: ClientId,
              client_secret: Secret, issuer_key: IssuerKey,
              pin: Annotated[str, typer.Option(help="auth or sign.")],
              new_pin: Annotated[str | None, typer.Option(help="The new PIN.")] = None,
              measures: Measures = None, reader: Reader = DEFAULT_READER,
              as_json: JsonOut = False) -> None:
    """RESET RETRY COUNTER with a new PIN, after identity proofing."""
    if pin not in ("auth", "sign"):
        _fail("request.invalid", "--pin is auth or sign", as_json)
    value = _pin(new_pin, "new PIN")
    with _station(api, client_id, client_secret, reader, issuer_key, as_json) as station:
        station.pin_reset(resident, pin=Pin.SIGN if pin == "sign" else Pin.AUTH,
                          new_value=value, proofing=_proofing(documents, measures))
    sys.stdout.write((json.dumps({"reset": pin}) if as_json else f"{pin} PIN reset") + "\n")


@app.command("work")
def work(api: Api, client_id: ClientId, client_secret: Secret, issuer_key: IssuerKey,
         reader: Reader = DEFAULT_READER,
         auth_pin: Annotated[str | None, typer.Option(
             help="4 digits (else the holder types it at the station).")] = None,
         sign_pin: Annotated[str | None, typer.Option(
             help="6–16 of A–Z0–9 (else the holder types it).")] = None,
         new_pin: Annotated[str | None, typer.Option(
             help="A PIN reset's new value (else the holder types it).")] = None,
         wait: Annotated[float, typer.Option(
             help="Seconds to wait for a task before giving up.")] = 0.0,
         as_json: JsonOut = False) -> None:
    """Take the oldest task a counter queued for this station (jpki console or the API), run
    it with the card in the reader, reporting each step; the PINs are typed here."""
    from devices.station.tasks import TaskRunner

    def pins(signing: bool) -> tuple[str, str | None]:
        auth = _pin(auth_pin, "auth PIN (4 digits)")
        return auth, (_pin(sign_pin, "signing password") if signing else None)

    deadline = time.monotonic() + wait
    with _station(api, client_id, client_secret, reader, issuer_key, as_json) as station:
        runner = TaskRunner(station.ca, station, pins,
                            lambda which: _pin(new_pin, f"new {which} PIN"))
        task = runner.claim()
        while task is None and time.monotonic() < deadline:
            time.sleep(0.5)
            task = runner.claim()
        if task is None:
            _fail("station_task.none", "no task is waiting for this station", as_json)
        outcome = runner.run(task)
    data = {"task": outcome.task_id, "status": outcome.status, "code": outcome.code,
            "serials": outcome.serials}
    sys.stdout.write((json.dumps(data) if as_json else
                      f"task {outcome.task_id}: {outcome.status}"
                      + (f" ({outcome.code})" if outcome.code else "")) + "\n")
    if outcome.status != "done":
        raise typer.Exit(1)


@app.command("status")
def status(api: Api, client_id: ClientId, client_secret: Secret, issuer_key: IssuerKey,
           reader: Reader = DEFAULT_READER,
           sign_pin: Annotated[str | None, typer.Option(
               help="To read the signing certificate too.")] = None,
           as_json: JsonOut = False) -> None:
    """The card's certificates and their status at the CA, and both PIN retry counters."""
    with _station(api, client_id, client_secret, reader, issuer_key, as_json) as station:
        report = station.status(sign_pin=sign_pin)
    sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=None if as_json else 2)
                     + "\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
