"""`jpki-kiosk`: a convenience-store multi-copy machine resetting a card's signing password with
an online password (reference §4.5; architecture §7.1). A device tool outside the CA: it talks
to the card over PC/SC and to the CA over REST with the kiosk's client credentials (role kiosk,
`jpki client add --role kiosk --scopes chain:<name>`), and holds no key of the issuer.

``jpki-kiosk app-password`` is the reference holder app's half (devices.holder_app), for
development: it obtains an online password with the card in the same reader.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devices.card.client import JpkiCard
from devices.card.errors import CardError
from devices.holder_app.app import HolderApp
from devices.kiosk.workflow import Kiosk
from devices.reset_ca import ResetCa
from jpki.errors import JpkiError

VPCD_READER = "Virtual PCD 00 00"

app = typer.Typer(help="A convenience-store kiosk: reset a card's signing password with an "
                  "online password.", no_args_is_help=True, pretty_exceptions_enable=False)

Api = Annotated[str, typer.Option("--api", envvar="JPKI_KIOSK_API", help="The CA's URL.")]
ClientId = Annotated[str, typer.Option("--client-id", envvar="JPKI_KIOSK_CLIENT_ID")]
Secret = Annotated[str, typer.Option("--client-secret", envvar="JPKI_KIOSK_CLIENT_SECRET")]
Reader = Annotated[str, typer.Option("--reader", help="PC/SC reader name.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(exc: JpkiError, as_json: bool) -> NoReturn:
    code = getattr(exc, "ca_code", None) or exc.code
    if as_json:
        sys.stdout.write(json.dumps({"error": code, "detail": exc.detail}) + "\n")
    sys.stderr.write(f"error: {code}: {exc.detail}\n")
    raise typer.Exit(1)


@app.command()
def reset(api: Api, client_id: ClientId, client_secret: Secret,
          reader: Reader = VPCD_READER,
          pin: Annotated[str | None, typer.Option(help="The 4-digit PIN (prompted).")] = None,
          online_password: Annotated[str | None, typer.Option(
              "--online-password", help="From the holder app (prompted).")] = None,
          new_password: Annotated[str | None, typer.Option(
              "--new-password", help="The new signing password (prompted twice).")] = None,
          as_json: AsJson = False) -> None:
    """Reset the signing password of the card in the reader."""
    from devices.card.pcsc import PcscTransport

    pin = pin if pin is not None else typer.prompt("PIN (4 digits)", hide_input=True)
    online_password = online_password if online_password is not None else typer.prompt(
        "online password")
    new_password = new_password if new_password is not None else typer.prompt(
        "new signing password", hide_input=True, confirmation_prompt=True)
    try:
        with ResetCa(api, client_id, client_secret) as ca, \
                PcscTransport.open(reader, exclusive=True) as transport:
            result = Kiosk(ca, JpkiCard(transport)).reset_signing_password(
                auth_pin=pin, online_password=online_password, new_password=new_password)
    except (CardError, JpkiError) as exc:
        _fail(exc, as_json)
    data = {"reset_id": result.reset_id,
            "steps_ms": {name: round(seconds * 1000, 1) for name, seconds in result.steps}}
    sys.stdout.write(json.dumps(data) + "\n" if as_json else
                     f"signing password reset ({result.reset_id})\n")


@app.command("app-password")
def app_password(api: Api, client_id: ClientId, client_secret: Secret,
                 app_key: Annotated[Path, typer.Option(
                     "--app-key", help="The app's registered private key (PEM, P-256).")],
                 code_b: Annotated[str, typer.Option(
                     "--code-b", help="照合番号B: birth date, expiry year and security code "
                     "as the card's surface shows them.")],
                 photo: Annotated[Path, typer.Option(
                     "--photo", help="The camera's photo (the reference app compares bytes).")],
                 reader: Reader = VPCD_READER,
                 pin: Annotated[str | None, typer.Option(help="4-digit PIN (prompted).")]
                 = None, as_json: AsJson = False) -> None:
    """The reference holder app: obtain an online password for the card in the reader."""
    from devices.card.pcsc import PcscTransport

    key = serialization.load_pem_private_key(app_key.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        sys.stderr.write("error: request.invalid: the app key is an EC private key\n")
        raise typer.Exit(1)
    pin = pin if pin is not None else typer.prompt("PIN (4 digits)", hide_input=True)
    try:
        with ResetCa(api, client_id, client_secret) as ca, \
                PcscTransport.open(reader, exclusive=True) as transport:
            online = HolderApp(ca, client_id, key).obtain_online_password(
                JpkiCard(transport), auth_pin=pin, code_b=code_b,
                camera_photo=photo.read_bytes())
    except (CardError, JpkiError) as exc:
        _fail(exc, as_json)
    data = {"online_password": online.value, "expires_at": online.expires_at}
    sys.stdout.write(json.dumps(data) + "\n" if as_json else
                     f"online password: {online.value} (until {online.expires_at})\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
