"""`jpki-card`: a virtual JPKI card behind pcscd, and the issuer key development cards trust, for
development and tests (architecture §7; how to start pcscd with vpcd: docs/components.md).

A device tool with its own console script, outside the CA: it imports the devices and the core's
protocol and errors only (pyproject's import contracts), never the CA's services.
``python -m devices.card.cli`` is the same command without an installed script.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devices.card.emulator import JpkiCardEmulator
from devices.card.emulator.vpcd import DEFAULT_HOST, DEFAULT_PORT, VpcdLink
from devices.card.errors import CardError
from devices.card.jpki_ap import TOKEN_LABEL_CARD, TOKEN_LABEL_LENGTH

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


def _write_new(path: Path, content: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
