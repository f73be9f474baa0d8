"""`jpki-card`: a virtual JPKI card behind pcscd, the issuer key development cards trust, the
card issuance of its 券面 applications and the PIN status of a card in a reader, for development
and tests (architecture §7; how to start pcscd with vpcd: docs/components.md).

A device tool with its own console script, outside the CA: it imports the devices and the core's
protocol and errors only (pyproject's import contracts), never the CA's services.
``python -m devices.card.cli`` is the same command without an installed script.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devices.card.client import JpkiCard
from devices.card.emulator import JpkiCardEmulator
from devices.card.emulator.vpcd import DEFAULT_HOST, DEFAULT_PORT, VpcdLink
from devices.card.errors import CardError
from devices.card.face_client import issue_face_aps, pin_status
from devices.card.face_data import CardSurface, synthetic_my_number, synthetic_security_code
from devices.card.jpki_ap import TOKEN_LABEL_CARD, TOKEN_LABEL_LENGTH

VPCD_READER = "Virtual PCD 00 00"  # devices.card.pcsc.VPCD_READER, without importing pyscard

ISSUER_KEY_BITS = 2048


app = typer.Typer(help="Development cards: a virtual JPKI card in pcscd's vpcd reader, and the "
                  "issuer key it trusts.", no_args_is_help=True, pretty_exceptions_enable=False)


def _fail(code: str, detail: str) -> NoReturn:
    # The same shape as the jpki CLI's errors: "error: <code>: <detail>" on stderr, exit status 1.
    sys.stderr.write(f"error: {code}: {detail}\n")
    raise typer.Exit(1)


def _open_card(state: Path, issuer_public_key: Path | None,
               token_label: str | None) -> JpkiCardEmulator:
    if not state.exists():
        if issuer_public_key is None:
            _fail("request.invalid", f"{state} does not exist: a new card needs "
                  "--issuer-public-key")
        label = token_label or TOKEN_LABEL_CARD
        if not label.isascii() or len(label) > TOKEN_LABEL_LENGTH:
            _fail("request.invalid", f"--token-label: at most {TOKEN_LABEL_LENGTH} ASCII "
                  "characters")
        try:
            pem = issuer_public_key.read_bytes()
            return JpkiCardEmulator.create(state, pem, label)
        except OSError as exc:
            _fail("request.invalid", f"{exc.filename}: {exc.strerror}")
        except ValueError as exc:  # not a PEM RSA-2048+ public key
            _fail("request.invalid", f"--issuer-public-key: {exc}")
    try:
        card = JpkiCardEmulator.open(state)
    except CardError as exc:
        _fail(exc.code, exc.detail)
    # An existing card keeps what it was made with; a different value is a mistake, not a wish.
    if token_label is not None and token_label != card.state.token_label:
        _fail("request.invalid", f"{state} is a {card.state.token_label} token, not "
              f"{token_label}")
    if issuer_public_key is not None:
        try:
            given = issuer_public_key.read_bytes()
        except OSError as exc:
            _fail("request.invalid", f"{exc.filename}: {exc.strerror}")
        if _spki(given) != _spki(card.state.issuer_public_key_pem):
            _fail("request.invalid", f"{state} trusts a different issuer key")
    return card


def _spki(pem: bytes) -> bytes | None:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        return None
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


@app.command()
def emulate(
    state: Annotated[Path, typer.Option("--state", help="The card's JSON state file; created "
                                        "blank when missing.")],
    port: Annotated[int, typer.Option(help="vpcd's TCP port (35963: 'Virtual PCD 00 00').")]
    = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="vpcd's address.")] = DEFAULT_HOST,
    issuer_public_key: Annotated[Path | None, typer.Option(
        "--issuer-public-key", help="PEM RSA public key the card trusts for EXTERNAL "
        "AUTHENTICATE; required for a new card.")] = None,
    token_label: Annotated[str | None, typer.Option(
        "--token-label", help="EF 0006 label of a new card: JPKIAPICCTOKEN2 (card), "
        "JPKIAPGPSETOKEN (Android).")] = None,
) -> None:
    """Run a virtual JPKI card in pcscd's vpcd reader until killed (SIGTERM / Ctrl-C)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    card = _open_card(state, issuer_public_key, token_label)
    link = VpcdLink(card, host, port)

    def _stop(signum: int, frame: FrameType | None) -> None:
        link.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logging.getLogger("devices.card.emulator").info(
        "card %s (%s) for vpcd at %s:%d", state, card.state.token_label, host, port)
    link.serve_forever()


@app.command("issuer-key")
def issuer_key(
    out: Annotated[Path, typer.Option("--out", help="Private key PEM to write (mode 0600); the "
                                      "public key goes next to it as <name>.pub.pem.")],
) -> None:
    """Write a new RSA-2048 issuer key pair for development cards (never for production)."""
    public_path = out.with_suffix(".pub.pem")
    key = rsa.generate_private_key(65537, ISSUER_KEY_BITS)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        _write_new(out, private_pem, 0o600)
        try:
            _write_new(public_path, public_pem, 0o644)
        except OSError:
            out.unlink()
            raise
    except FileExistsError as exc:
        _fail("request.invalid", f"{exc.filename} exists; refusing to overwrite a key")
    except OSError as exc:
        _fail("request.invalid", f"{exc.filename}: {exc.strerror}")
    sys.stdout.write(f"private key: {out}\npublic key:  {public_path}\n")


@app.command("pin-status")
def pin_status_command(
    reader: Annotated[str, typer.Option("--reader", help="PC/SC reader name.")] = VPCD_READER,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Tries left on every PIN and 照合番号 of the card, spending none (reference §4.6).

    What an open-source reader's "PIN status" shows: 券面事項入力補助AP 0011 / 0014 / 0015,
    券面事項確認AP 0013 / 0012 / 0011, then JPKI-AP 0018 / 001B; "not set" on a card not yet
    issued.
    """
    from devices.card.pcsc import PcscTransport

    try:
        with PcscTransport.open(reader) as transport:
            counters = pin_status(JpkiCard(transport))
    except CardError as exc:
        _fail(exc.code, exc.detail)
    if as_json:
        sys.stdout.write(json.dumps([{"application": c.application, "name": c.name,
                                      "ef": f"{c.fid:04X}", "retries": c.retries}
                                     for c in counters], ensure_ascii=False) + "\n")
        return
    for c in counters:
        left = "not set" if c.retries is None else str(c.retries)
        sys.stdout.write(f"{c.application} {c.name} (EF {c.fid:04X}): {left}\n")


@app.command("issue-face")
def issue_face(
    holder: Annotated[Path, typer.Option("--holder", help="JSON: name, address, birth_date, sex "
                                         "(1/2/3), expiry, municipality_code (5 digits).")],
    issuer_key_path: Annotated[Path, typer.Option("--issuer-key", help="The issuer's private "
                                                  "key (PEM) the card trusts.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write what the card's face shows "
                                      "(the synthetic individual number, the security code, "
                                      "照合番号B); mode 0600, never overwritten.")],
    reader: Annotated[str, typer.Option("--reader", help="PC/SC reader name.")] = VPCD_READER,
    pin: Annotated[str | None, typer.Option("--pin", help="The 4-digit 券面事項入力補助用暗証番号 "
                                            "(prompted for when absent).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Draw the synthetic number and "
                                             "security code from this seed (tests).")] = None,
) -> None:
    """Card issuance of the 券面 applications of a development card (reference §4.6).

    A synthetic individual number with a valid check digit, a random security code and a
    synthetic face image; the basic 4 information from --holder. Nothing goes to the CA.
    """
    from devices.card.pcsc import PcscTransport

    try:
        document = json.loads(holder.read_text(encoding="utf-8"))
        rng = random.Random(seed) if seed is not None else None  # noqa: S311 - test data only
        surface = CardSurface(
            name=str(document["name"]), address=str(document["address"]),
            birth_date=date.fromisoformat(str(document["birth_date"])),
            sex=int(document["sex"]), expiry=date.fromisoformat(str(document["expiry"])),
            my_number=synthetic_my_number(rng), security_code=synthetic_security_code(rng),
            municipality_code=str(document["municipality_code"]))
    except OSError as exc:
        _fail("request.invalid", f"{exc.filename}: {exc.strerror}")
    except (ValueError, KeyError, TypeError) as exc:
        # Name the problem, never the value (architecture §9.7): a KeyError names the field.
        reason = f"missing {exc}" if isinstance(exc, KeyError) else type(exc).__name__
        _fail("request.invalid", f"--holder: not a valid holder ({reason})")
    if out.exists():
        _fail("request.invalid", f"{out} exists; refusing to overwrite it")
    try:
        key = serialization.load_pem_private_key(issuer_key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        _fail("request.invalid", f"--issuer-key: cannot read an RSA private key from "
              f"{issuer_key_path}")
    if not isinstance(key, rsa.RSAPrivateKey):
        _fail("request.invalid", "--issuer-key: the issuer key must be RSA")
    value = pin if pin is not None else typer.prompt("PIN (4 digits)", hide_input=True)
    try:
        with PcscTransport.open(reader, exclusive=True) as transport:
            issue_face_aps(JpkiCard(transport), key, surface, pin=value)
    except CardError as exc:
        _fail(exc.code, exc.detail)
    try:
        _write_new(out, (json.dumps({"my_number": surface.my_number,
                                     "security_code": surface.security_code,
                                     "expiry": surface.expiry.isoformat(),
                                     "code_b": surface.code_b}) + "\n").encode(), 0o600)
    except OSError as exc:
        _fail("request.invalid", f"{exc.filename}: {exc.strerror}")
    sys.stdout.write(f"issued the 券面 applications; the card's face: {out}\n")


def _write_new(path: Path, content: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
