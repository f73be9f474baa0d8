"""`jpki hsm …`: the key-replication ceremony between HSM tokens (hsm.replication).

On the target node `transport-key`, on the source node `export-key`, on the target again
`import-key`: keys travel wrapped, never in plaintext (docs/deployment.md, "Key replication
ceremony"). Each step is audited in the hash-chained log when the node's database and audit key
are there (a fresh target has its audit key only once it is imported); the records hold labels,
fingerprints and the operator, never key material.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    escape,
    fail,
    grant,
    group,
    out,
    print_json,
)

if TYPE_CHECKING:
    from api.composition import Services
    from hsm.keystore import KeyStore

app = group("HSM tokens: the key-replication ceremony (wrapped export and import).")


def _fail_hsm(exc: Exception, as_json: bool) -> NoReturn:
    """Map the hsm package's refusals to the CLI's error codes (architecture §1)."""
    from hsm.errors import (
        BundleInvalid,
        HsmUnavailable,
        KeyExists,
        KeyNotFound,
        KeyNotReplicable,
        TokenNotFound,
        WrongTransportKey,
    )

    if isinstance(exc, KeyNotReplicable):
        fail("key.not_replicable", str(exc), as_json)
    if isinstance(exc, WrongTransportKey):
        fail("bundle.wrong_transport_key", str(exc), as_json)
    if isinstance(exc, BundleInvalid):
        fail("bundle.invalid", str(exc), as_json)
    if isinstance(exc, KeyExists):
        fail("key.exists", str(exc), as_json)
    if isinstance(exc, KeyNotFound):
        fail("key.not_found", str(exc), as_json)
    if isinstance(exc, TokenNotFound | HsmUnavailable):
        fail("hsm.unavailable", str(exc), as_json)
    fail("hsm.error", str(exc), as_json)


def _settings(data_dir: Path) -> Any:
    from jpki.settings import Settings

    return Settings(data_dir=data_dir)


def _open_keys(data_dir: Path, as_json: bool, *, create_token: bool = False) -> KeyStore:
    from api.keystore import open_keystore
    from hsm.errors import HsmError
    from jpki.authority.recipe import load_recipe
    from jpki.errors import JpkiError

    settings = _settings(data_dir)
    try:
        return open_keystore(settings, load_recipe(settings.recipe), create_token=create_token)
    except JpkiError as exc:
        fail(exc.code, exc.detail, as_json)
    except HsmError as exc:
        _fail_hsm(exc, as_json)


def _services(data_dir: Path, as_json: bool | None = None) -> Services | None:
    """The node's services when its database is initialised, else None (a fresh target).

    With ``as_json`` given, an HSM or settings error (a wrong PIN, no PIN) fails the command
    precisely; without, it counts as "not available" (auditing after the fact)."""
    from api.composition import build_services
    from hsm.errors import HsmError
    from jpki.errors import JpkiError

    try:
        services = build_services(_settings(data_dir))
    except HsmError as exc:
        if as_json is None:
            return None
        _fail_hsm(exc, as_json)
    except JpkiError as exc:
        if as_json is None:
            return None
        fail(exc.code, exc.detail, as_json)
    except Exception:
        return None
    try:
        services.cas.generations()
    except Exception:
        # No schema yet: a node whose database `jpki init` never made.
        services.close()
        return None
    return services


def _audit(data_dir: Path, action: str, subject: str, payload: dict[str, Any]) -> bool:
    """Record one audit record if the node can (database and audit key); True if recorded."""
    from jpki.access.authz import Operation

    services = _services(data_dir)
    if services is None:
        return False
    try:
        if not services.keys.has_key(services.recipe.audit_key_label):
            return False
        actor = grant(Operation.KEY_REPLICATION).require(Operation.KEY_REPLICATION)
        with services.uow() as uow:
            services.audit.record(uow, actor=actor.actor, action=action, subject=subject,
                                  payload=payload)
            uow.commit()
        return True
    finally:
        services.close()


def _write_atomically(path: Path, data: bytes, as_json: bool) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        fail("output.unwritable", f"cannot write {path}", as_json)


@app.command("transport-key")
def transport_key(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the public key (PEM).")],
    rotate: Annotated[bool, typer.Option(help="Destroy the existing transport key first.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """On the target node: create (or show) the transport key and write its public half.

    Creates the SoftHSM token and its PINs when the node has none yet. Read the fingerprint to
    the source node's officers over another channel; they type it into `export-key`.
    """
    from hsm import transport_key as tk
    from hsm.errors import HsmError
    from jpki.access.authz import Operation

    grant(Operation.KEY_REPLICATION).require(Operation.KEY_REPLICATION)
    keys = _open_keys(data_dir, as_json, create_token=True)
    try:
        transport, created = tk.create_transport_key(keys, rotate=rotate)
    except HsmError as exc:
        _fail_hsm(exc, as_json)
    finally:
        keys.close()
    _write_atomically(out_path, transport.pem(), as_json)
    audited = created and _audit(data_dir, "hsm.transport_key_created", "hsm/transport",
                                 {"fingerprint": transport.fingerprint})
    data = {"fingerprint": transport.fingerprint, "created": created, "out": str(out_path),
            "audited": audited}
    if as_json:
        print_json(data)
        return
    out.print(f"transport key {'created' if created else 'exists'}: {escape(str(out_path))}")
    out.print(f"SHA-256 fingerprint: {transport.fingerprint}")


@app.command("destroy-transport-key")
def destroy_transport_key(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """On the target node, after the import: destroy the transport key (the ceremony's end)."""
    from hsm.errors import HsmError
    from hsm.transport_key import destroy_transport_keys
    from jpki.access.authz import Operation

    grant(Operation.KEY_REPLICATION).require(Operation.KEY_REPLICATION)
    keys = _open_keys(data_dir, as_json)
    try:
        destroyed = destroy_transport_keys(keys)
    except HsmError as exc:
        _fail_hsm(exc, as_json)
    finally:
        keys.close()
    for fingerprint in destroyed:
        _audit(data_dir, "hsm.transport_key_destroyed", "hsm/transport",
               {"fingerprint": fingerprint})
    print_json({"destroyed": destroyed}) if as_json else out.print(
        f"destroyed {len(destroyed)} transport key(s)")


def _replicable_labels(services: Services) -> dict[str, bytes | None]:
    """label -> certificate (DER) of every key the CA's ceremony made: the CA generations and
    their OCSP responders (with their certificates), the audit and client-secret HMAC keys."""
    labels: dict[str, bytes | None] = {}
    with services.uow() as uow:
        for gen in uow.cas.generations():
            labels[gen.key_label] = gen.certificate_der
            for responder in uow.cas.responders(gen.id or 0):
                labels[responder.key_label] = responder.certificate_der
    labels[services.recipe.audit_key_label] = None
    labels[services.recipe.client_secret_key_label] = None
    return labels


@app.command("export-key")
def export_key(
    to: Annotated[Path, typer.Option("--to", help="The target's transport public key (PEM).")],
    fingerprint: Annotated[str, typer.Option(
        "--fingerprint", help="The transport key's SHA-256 fingerprint as the target's officer "
        "read it out (compared out of band).")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the bundle.")],
    labels: Annotated[list[str] | None, typer.Argument(help="Key labels (or --all).")] = None,
    all_keys: Annotated[bool, typer.Option("--all", help="Every key of the CA: generations, "
                                           "OCSP responders, audit and client-secret keys.")]
    = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """On the source node: wrap keys for the target's transport key into a bundle file.

    Needs the security officer's PIN (JPKI_HSM_SO_PIN or the secrets directory) besides the
    user PIN: only the officer can mark the wrapping key trusted. The token refuses a key that
    was made never to leave (error key.not_replicable).
    """
    from api.keystore import is_softhsm
    from hsm import replication
    from hsm.errors import HsmError
    from hsm.keystore import TokenConfig
    from hsm.softhsm import activate_softhsm_config, default_module_path
    from hsm.transport_key import TransportKey
    from jpki.access.authz import Operation
    from jpki.authority.recipe import load_recipe
    from jpki.errors import JpkiError

    grant(Operation.KEY_REPLICATION).require(Operation.KEY_REPLICATION)
    if bool(labels) == all_keys:
        fail("request.invalid", "name the keys to export, or --all (not both)", as_json)
    try:
        transport = TransportKey.from_pem(to.read_bytes())
    except OSError:
        fail("input.unreadable", f"cannot read {to}", as_json)
    except HsmError as exc:
        _fail_hsm(exc, as_json)
    if fingerprint.replace(":", "").lower() != transport.fingerprint:
        fail("transport.fingerprint_mismatch",
             f"{to} has fingerprint {transport.fingerprint}, not the one the officers compared "
             f"({fingerprint or 'none given'})", as_json)

    settings = _settings(data_dir)
    try:
        user_pin, so_pin = settings.user_pin(), settings.so_pin()
    except JpkiError as exc:
        fail(exc.code, exc.detail, as_json)
    if user_pin is None or so_pin is None:
        fail("ca.not_initialised", f"no HSM user and SO PIN for {data_dir}: set "
             "JPKI_HSM_USER_PIN and JPKI_HSM_SO_PIN", as_json)
    # Certificates come from the database: each RSA key travels with the certificate of its
    # public key, which the target checks the imported key against.
    services = _services(data_dir, as_json)
    if services is None:
        fail("ca.not_initialised", f"no initialised CA database for {data_dir}", as_json)
    try:
        known = _replicable_labels(services)
    finally:
        services.close()  # the officer's login needs every key store of the process closed
    chosen = list(known) if all_keys else list(labels or [])
    items = [replication.ExportItem(label, known.get(label)) for label in chosen]
    if is_softhsm(settings.hsm_module or default_module_path()):
        # As open_keystore does: SoftHSM reads the data directory's config at C_Initialize.
        activate_softhsm_config(settings.resolved_data_dir)
    recipe = load_recipe(settings.recipe)
    config = TokenConfig(module_path=settings.hsm_module or default_module_path(),
                         token_label=recipe.token_label, user_pin=user_pin, pool_size=1)
    try:
        bundle = replication.export_keys(config, so_pin, items, transport)
    except HsmError as exc:
        _audit_refusal(data_dir, transport.fingerprint, exc)
        _fail_hsm(exc, as_json)
    _write_atomically(out_path, bundle.raw, as_json)
    payload: dict[str, Any] = {
        "transport_key": transport.fingerprint, "bundle_sha256": bundle.sha256,
        "keys": [{"label": k.label, "kind": k.kind, "certificate_sha256": k.certificate_sha256}
                 for k in bundle.entries()]}
    audited = _audit(data_dir, "hsm.keys_exported", f"hsm/{recipe.token_label}", payload)
    if as_json:
        print_json({**payload, "out": str(out_path), "audited": audited})
        return
    for k in bundle.entries():
        out.print(f"wrapped {escape(k.label)} ({k.kind})")
    out.print(f"bundle: {escape(str(out_path))}  SHA-256 {bundle.sha256}")


def _audit_refusal(data_dir: Path, transport: str, exc: Exception) -> None:
    from hsm.errors import KeyNotReplicable

    if isinstance(exc, KeyNotReplicable):
        _audit(data_dir, "hsm.export_refused", "hsm/export",
               {"transport_key": transport, "reason": exc.reason})


@app.command("import-key")
def import_key(
    bundle_path: Annotated[Path, typer.Argument(help="The bundle from `jpki hsm export-key`.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """On the target node: unwrap a bundle's keys into the token under their labels.

    Refuses a bundle for another transport key, an altered bundle, a label the token holds for
    another key, and a key that does not sign for its certificate — changing nothing. A key the
    token holds already is left unchanged (an interrupted import finishes when run again). When
    this node's database already holds the CA, each certificate in the bundle must be the
    database's.
    """
    from hsm import replication
    from hsm.errors import HsmError
    from hsm.key_bundle import bundle_certificates, parse_bundle
    from hsm.keystore import KeyStore
    from jpki.access.authz import Operation

    grant(Operation.KEY_REPLICATION).require(Operation.KEY_REPLICATION)
    try:
        raw = bundle_path.read_bytes()
    except OSError:
        fail("input.unreadable", f"cannot read {bundle_path}", as_json)
    try:
        bundle = parse_bundle(raw)
    except HsmError as exc:
        _fail_hsm(exc, as_json)
    services = _services(data_dir, as_json)
    if services is not None:
        try:
            known = _replicable_labels(services)
        finally:
            services.close()
        for label, der in bundle_certificates(bundle).items():
            if label in known and known[label] is not None and known[label] != der:
                fail("bundle.certificate_mismatch",
                     f"the certificate for {label!r} is not the one this node's database holds",
                     as_json)
    keys = _open_keys(data_dir, as_json)
    try:
        assert isinstance(keys, KeyStore)
        result = replication.import_keys(keys, bundle)
    except HsmError as exc:
        _fail_hsm(exc, as_json)
    finally:
        keys.close()
    payload: dict[str, Any] = {
        "transport_key": bundle.transport_fingerprint, "bundle_sha256": bundle.sha256,
        "source_token": bundle.source_token,
        "keys": [{"label": k.label, "kind": k.kind, "certificate_sha256": k.certificate_sha256}
                 for k in result.imported],
        "unchanged": [k.label for k in result.unchanged]}
    audited = bool(result.imported) and _audit(data_dir, "hsm.keys_imported", "hsm/import",
                                                payload)
    if as_json:
        print_json({**payload, "audited": audited})
        return
    for k in result.imported:
        out.print(f"imported {escape(k.label)} ({k.kind}), checked against "
                  f"{'its certificate' if k.kind == 'rsa' else 'its check value'}")
    for k in result.unchanged:
        out.print(f"[dim]unchanged[/] {escape(k.label)} (the token holds this key already)")
    out.print(f"bundle SHA-256 {bundle.sha256}" + ("" if audited or not result.imported else
              " (not audited: this node has no CA database or audit key yet)"))


@app.command("keys")
def list_keys(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """The token's keys and whether each may be replicated (wrapped under a trusted key)."""
    from hsm.errors import HsmError

    keys = _open_keys(data_dir, as_json)
    try:
        rows = [(label, keys.key_protection(label)) for label in keys.key_labels()]
    except HsmError as exc:
        _fail_hsm(exc, as_json)
    finally:
        keys.close()
    data = [{"label": label, "replicable": p["extractable"] and p["wrap_with_trusted"],
             "sensitive": p["sensitive"], "local": p["local"]} for label, p in rows]
    if as_json:
        print_json(data)
        return
    for row in data:
        out.print(f"{escape(str(row['label']))}  "
                  f"{'replicable' if row['replicable'] else 'never leaves the token'}")
