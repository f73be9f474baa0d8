"""`jpki pin-reset …`: the signing-password reset with an online password (architecture §7.1):
the card-management key in the HSM, and the holder apps with their keys. Kiosks are API clients
of their own role (`jpki client add --role kiosk --scopes chain:<name> --name <machine>`), and
are suspended like any client (`jpki client suspend`)."""

from __future__ import annotations

from pathlib import Path
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

app = group("The signing-password reset at kiosks: the card-management key, holder apps.")


@app.command("card-key")
def card_key(
    import_pem: Annotated[Path | None, typer.Option(
        "--import", help="The issuer's RSA private key (PEM) the cards trust: put into the HSM, "
        "never extractable again. Without it a new key is generated in the HSM.")] = None,
    out_public: Annotated[Path | None, typer.Option(
        "--public-out", help="Write the public key (PEM) here: what new cards must trust.")]
    = None,
    data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False,
) -> None:
    """Put the card-management key into the HSM: the key whose signature lets a card reset its
    signing password once (EXTERNAL AUTHENTICATE P2 9B)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    with open_services(data_dir, as_json) as services:
        label = services.pin_reset.card_key_label
        if services.keys.has_key(label):
            fail("pin_reset.card_key_exists", f"the HSM already holds {label!r}", as_json)
        grant(Operation.CA_CEREMONY)  # the key ceremony's: refused before the HSM is touched
        if import_pem is not None:
            try:
                key = serialization.load_pem_private_key(import_pem.read_bytes(), None)
            except (OSError, ValueError):
                fail("request.invalid", f"cannot read an RSA private key from {import_pem}",
                     as_json)
            if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
                fail("request.invalid", "the card-management key is RSA of 2048 bits or more",
                     as_json)
            public = services.keys.import_rsa_key(label, key).public_key()
        else:
            public = services.keys.generate_rsa_key(label).public_key()
        spki = public.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        fingerprint = services.pin_reset.record_card_key(grant(Operation.CA_CEREMONY), spki,
                                                          imported=import_pem is not None)
        if out_public is not None:
            out_public.write_bytes(public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        data = {"label": label, "spki_sha256": fingerprint,
                "imported": import_pem is not None}
        print_json(data) if as_json else out.print(f"{label}: SPKI SHA-256 {fingerprint}")


@app.command("app-add")
def app_add(name: Annotated[str, typer.Option(help="A name for the installed app.")],
            public_key: Annotated[Path, typer.Option(
                "--public-key", help="The app's key (PEM or DER SubjectPublicKeyInfo; ECDSA "
                "P-256 or RSA ≥ 2048) its face-check assertions are signed with.")],
            data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Register a holder app: an API client (prints its id and secret once) and its key."""
    try:
        key = public_key.read_bytes()
    except OSError as exc:
        fail("request.invalid", f"{public_key}: {exc.strerror}", as_json)
    with open_services(data_dir, as_json) as services:
        new = services.pin_reset.register_app(grant(Operation.CLIENT_CREATE), services.clients,
                                              name=name, public_key=key)
        data = {"client_id": new.client.client_id, "client_secret": new.client_secret,
                "role": "holder_app"}
        if as_json:
            print_json(data)
        else:
            out.print(f"client_id:     {new.client.client_id}")
            out.print(f"client_secret: {new.client_secret}")
            out.print("[dim]the secret is shown once; only a hash is kept[/]")
