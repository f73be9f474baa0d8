"""`jpki-phone`: the reference phone app (devices.phone) on the command line.

The phone's secure element is a JPKI-AP token state file (``--state``); the holder's card is in a
PC/SC reader (``--card-reader``). Passwords are asked for without echo unless given.

A device tool with its own console script, outside the CA: it reaches the CA over HTTP.
``python -m devices.phone.cli`` is the same command without an installed script.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devices.card.client import JpkiCard
from devices.card.emulator.card import JpkiCardEmulator
from devices.card.transport import InProcessTransport
from devices.phone.app import PhoneApp, create_phone, issuer_key_path
from jpki.errors import JpkiError

app = typer.Typer(help="The reference phone app for mobile certificates.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

State = Annotated[Path, typer.Option("--state", help="The phone's secure-element state file.")]
Api = Annotated[str, typer.Option("--api", envvar="JPKI_PHONE_API", help="The CA's URL.")]
Device = Annotated[str, typer.Option("--device", help="This phone's identifier.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(code: str, detail: str) -> NoReturn:
    sys.stderr.write(f"error: {code}: {detail}\n")
    raise typer.Exit(1)


def _secret(value: str | None, prompt: str) -> str:
    return value if value is not None else typer.prompt(prompt, hide_input=True)


def _print(data: Any, as_json: bool) -> None:
    sys.stdout.write((json.dumps(data) if as_json else
                      "\n".join(f"{k} {v}" for k, v in dict(data).items())) + "\n")


@contextmanager
def _phone(state: Path, api: str, device: str) -> Iterator[PhoneApp]:
    if not state.exists():
        _fail("phone.not_initialised", f"{state} does not exist: run `jpki-phone init` first")
    key = serialization.load_pem_private_key(issuer_key_path(state).read_bytes(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        _fail("phone.state", "the phone's provisioning key is not RSA")
    se = JpkiCard(InProcessTransport(JpkiCardEmulator.open(state)))
    try:
        yield PhoneApp(api=api, se=se, issuer_key=key, device_ref=device)
    except JpkiError as exc:
        _fail(getattr(exc, "ca_code", "") or exc.code, exc.detail)


@app.command("init")
def init(state: State, platform: Annotated[str, typer.Option(help="android or ios.")
                                           ] = "android") -> None:
    """A new phone: a blank secure element with the platform's token label."""
    try:
        create_phone(state, platform)
    except (FileExistsError, JpkiError) as exc:
        _fail("phone.init", str(exc))
    sys.stdout.write(f"{state}\n")


@app.command("apply")
def apply(state: State, api: Api, device: Device,
          card_reader: Annotated[str, typer.Option(help="The reader holding the card.")
                                 ] = "Virtual PCD 00 00",
          card_password: Annotated[str | None, typer.Option(help="The card's signing "
                                                                 "password.")] = None,
          auth_pin: Annotated[str | None, typer.Option(help="The phone's auth PIN.")] = None,
          sign_password: Annotated[str | None, typer.Option(
              help="The phone's signing password.")] = None,
          as_json: JsonOut = False) -> None:
    """Apply for the mobile certificates with the card in the reader."""
    from devices.card.pcsc import PcscTransport

    card_pw = _secret(card_password, "card signing password")
    pin = _secret(auth_pin, "phone auth PIN (4 digits)")
    pw = _secret(sign_password, "phone signing password")
    with _phone(state, api, device) as phone:
        transport = PcscTransport.open(card_reader)
        try:
            serials = phone.apply(JpkiCard(transport), card_password=card_pw, auth_pin=pin,
                                  sign_password=pw)
        finally:
            transport.close()
        _print({"device_id": phone.device_id, **serials}, as_json)


@app.command("status")
def status(state: State, api: Api, device: Device,
           auth_pin: Annotated[str | None, typer.Option(
               help="The phone's auth PIN (reads the auth certificate).")] = None,
           sign_password: Annotated[str | None, typer.Option(
               help="To check the signing certificate too.")] = None,
           as_json: JsonOut = False) -> None:
    """What the CA's OCSP responder says of each certificate in the phone."""
    pin = _secret(auth_pin, "phone auth PIN")
    with _phone(state, api, device) as phone:
        _print(phone.status(auth_pin=pin, sign_password=sign_password), as_json)


@app.command("revoke")
def revoke(state: State, api: Api, device: Device,
           device_id: Annotated[str, typer.Option(help="The CA's id of the device.")],
           reason: Annotated[str, typer.Option(help="device_change, sale or disposal.")],
           auth_pin: Annotated[str | None, typer.Option(help="The phone's auth PIN.")] = None,
           as_json: JsonOut = False) -> None:
    """Revoke this phone's certificates (device change, sale, disposal)."""
    pin = _secret(auth_pin, "phone auth PIN")
    with _phone(state, api, device) as phone:
        revoked = phone.revoke(device_id, auth_pin=pin, reason=reason)
        _print({r["serial"]: r["reason"] for r in revoked}, as_json)


@app.command("lift-suspension")
def lift(state: State, api: Api, device: Device,
         device_id: Annotated[str, typer.Option(help="The CA's id of the device.")],
         auth_pin: Annotated[str | None, typer.Option(help="The phone's auth PIN.")] = None,
         sign_password: Annotated[str | None, typer.Option(
             help="A new signing password.")] = None,
         as_json: JsonOut = False) -> None:
    """The phone was found: release the hold; a new signing certificate is issued."""
    pin = _secret(auth_pin, "phone auth PIN")
    pw = _secret(sign_password, "new signing password")
    with _phone(state, api, device) as phone:
        _print(phone.lift_suspension(device_id, auth_pin=pin, sign_password=pw), as_json)


@app.command("check-in")
def check_in(state: State, api: Api, device: Device,
             device_id: Annotated[str, typer.Option(help="The CA's id of the device.")],
             auth_pin: Annotated[str | None, typer.Option(help="The phone's auth PIN.")] = None,
             as_json: JsonOut = False) -> None:
    """Tell the CA the phone is alive (silent devices are flagged by the sweep)."""
    pin = _secret(auth_pin, "phone auth PIN")
    with _phone(state, api, device) as phone:
        _print(phone.check_in(device_id, auth_pin=pin), as_json)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
