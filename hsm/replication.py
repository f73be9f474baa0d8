"""Key replication between tokens: wrapped export and import, never a plaintext key.

Network HSMs copy keys between units this way (Thales/Entrust "cloning", AWS CloudHSM
wrap/unwrap); docs/deployment.md, "Key replication ceremony", gives the officers' steps.

1. **Target token**: :func:`hsm.transport_key.create_transport_key` makes an RSA-3072 pair
   whose private half is sensitive, never extractable and may only unwrap (CKA_UNWRAP; no
   decrypt, no sign). Its public half leaves as PEM with a SHA-256 fingerprint of the
   SubjectPublicKeyInfo, which the officers compare out of band before the export.
2. **Source token**: :func:`export_keys` logs in as the security officer on one session and
   imports that public key as a session object marked CKA_TRUSTED, generates an ephemeral
   AES-256 session key, also CKA_TRUSTED, and wraps it under the transport key with
   CKM_RSA_PKCS_OAEP (SHA-1 and MGF1-SHA-1: the only parameters SoftHSM 2.6.1 accepts,
   ``MechParamCheckRSAPKCSOAEP``; OAEP-SHA-1 has no known weakness as key transport, RFC 8017
   §7.1). It then logs out and the user logs in on the same session (:mod:`hsm.session_login`):
   each key is wrapped under the AES key with CKM_AES_KEY_WRAP_PAD (RFC 5649; python-pkcs11
   notes SoftHSM's code for it is the KWP of SP 800-38F). The token decides whether a key may
   go: CKA_EXTRACTABLE false gives CKR_KEY_UNEXTRACTABLE, CKA_WRAP_WITH_TRUSTED with an
   untrusted wrapping key CKR_KEY_NOT_WRAPPABLE (PKCS#11 v2.40 §5.18.3). The bundle is bound
   by an AES-CMAC under the transfer key (only the target can check it) and by a signature of
   every RSA key it carries (proof that the source holds that key, checked against the key's
   certificate). Both session objects end with the session: a kill leaves nothing behind.
3. **Target token**: :func:`import_keys` checks the bundle names this token's transport key,
   the signatures and the CMAC, and refuses a label the token holds for another key. Keys are
   unwrapped under a pending label (:data:`hsm.key_bundle.PENDING_PREFIX`), each RSA key signs a
   test message that must verify against the key's certificate, each HMAC key must reproduce
   the source's check value, and only then does each take its label (:func:`_commit`). A run
   killed in between leaves pending objects, which the next run removes
   (:func:`discard_pending`); keys that took their labels are then reported unchanged.

The bundle holds ciphertext, labels, CKA_IDs, public keys and certificates: nothing secret.
Imported keys keep the replicable protection (sensitive, wrap only under a trusted key), so
any node can be the source of the next ceremony.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from pkcs11.constants import DEFAULT, Attribute, MechanismFlag, ObjectClass
from pkcs11.exceptions import (
    KeyNotWrappable,
    KeyUnextractable,
    PKCS11Error,
)
from pkcs11.mechanisms import MGF, KeyType, Mechanism
from pkcs11.types import Key, Object, Session, SignMixin, UnwrapMixin, VerifyMixin, WrapMixin

from hsm import session_login
from hsm.errors import (
    BundleInvalid,
    HsmError,
    HsmUnavailable,
    KeyExists,
    KeyNotFound,
    KeyNotReplicable,
    WrongTransportKey,
)
from hsm.key_bundle import (
    BUNDLE_FORMAT,
    PENDING_PREFIX,
    Bundle,
    ReplicatedKey,
    bundle_public_key,
    canonical,
)
from hsm.keystore import REPLICABLE_KEY_PROTECTION, KeyStore, TokenConfig
from hsm.module import load_module
from hsm.transport_key import TransportKey, transport_pairs

CHECK_MESSAGE = b"jpki key replication check"
"""What an imported key signs (RSA) or MACs (HMAC, against the source's check value)."""

# python-pkcs11 takes the CK_RSA_PKCS_OAEP_PARAMS as this tuple; its stub says bytes.
_OAEP: Any = (Mechanism.SHA_1, MGF.SHA1, None)
_KWP = Mechanism.AES_KEY_WRAP_PAD
_NOT_PRIVATE_KEY_ATTRIBUTES = {a: DEFAULT for a in (Attribute.ENCRYPT, Attribute.VERIFY,
                                                    Attribute.WRAP)}


@dataclass(frozen=True)
class ExportItem:
    """A key to export: its label and, for an RSA key, the certificate of its public key."""

    label: str
    certificate_der: bytes | None = None


@dataclass(frozen=True)
class ImportResult:
    imported: list[ReplicatedKey]
    unchanged: list[ReplicatedKey]


# -- export (source) ----------------------------------------------------------------------


def export_keys(
    config: TokenConfig,
    so_pin: str,
    items: Sequence[ExportItem],
    transport: TransportKey,
    *,
    now: datetime | None = None,
) -> Bundle:
    """Wrap the keys ``items`` of the token for ``transport``; the bundle (only ciphertext).

    Needs the security officer's PIN (to mark the ephemeral wrapping key CKA_TRUSTED) and the
    user PIN of ``config`` (to wrap the private keys), in one session of this process; no key
    store may be open on the token in this process meanwhile. Raises
    :class:`KeyNotReplicable` with the token's refusal, :class:`KeyNotFound`,
    :class:`BundleInvalid` (a certificate that does not match its key) or
    :class:`HsmUnavailable` (a wrong PIN).
    """
    if not items:
        raise ValueError("nothing to export")
    labels = [item.label for item in items]
    if len(set(labels)) != len(labels):
        raise ValueError("a label is named twice")
    module = load_module(config.module_path)
    with module.exclusive(config.token_label) as token:
        try:
            session = token.open(rw=True)
        except PKCS11Error as exc:
            raise HsmUnavailable(f"cannot open a session: {type(exc).__name__}") from None
        try:
            return _export(module.path, session, config, so_pin, items, transport, now)
        except PKCS11Error as exc:
            raise HsmError(f"export: {type(exc).__name__}") from exc
        finally:
            # The session objects (trusted key, transfer key) die with the session.
            with contextlib.suppress(session_login.LoginError):
                session_login.logout(module.path, _handle(session))
            with contextlib.suppress(PKCS11Error):
                session.close()


def _login(path: str, session: Session, role: int, pin: str, token_label: str) -> None:
    who = "security officer" if role == session_login.CKU_SO else "user"
    try:
        session_login.login(path, _handle(session), role, pin)
    except session_login.LoginError as exc:
        if exc.rv in (session_login.CKR_PIN_INCORRECT, session_login.CKR_PIN_INVALID,
                      session_login.CKR_PIN_LEN_RANGE):
            raise HsmUnavailable(f"token {token_label!r} rejected the {who} PIN") from None
        if exc.rv == session_login.CKR_PIN_LOCKED:
            raise HsmUnavailable(f"the {who} PIN of token {token_label!r} is locked") from None
        if exc.rv == session_login.CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
            raise HsmUnavailable(
                f"token {token_label!r} is logged in by other code of this process"
            ) from None
        raise HsmUnavailable(f"cannot log in the {who} to {token_label!r}: {exc}") from None


def _export(
    path: str,
    session: Session,
    config: TokenConfig,
    so_pin: str,
    items: Sequence[ExportItem],
    transport: TransportKey,
    now: datetime | None,
) -> Bundle:
    numbers = transport.public_key.public_numbers()
    _login(path, session, session_login.CKU_SO, so_pin, config.token_label)
    # The officer's trust decision: this public key (whose fingerprint the officers compared)
    # and the transfer key wrapped under it may carry keys marked CKA_WRAP_WITH_TRUSTED.
    trusted_transport = session.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.TOKEN: False, Attribute.PRIVATE: False, Attribute.TRUSTED: True,
        Attribute.WRAP: True, Attribute.ENCRYPT: False, Attribute.VERIFY: False,
        Attribute.MODULUS: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"),
        Attribute.PUBLIC_EXPONENT: numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"),
        Attribute.LABEL: "jpki-transport-in",
    })
    # A public session object: the SO may create no private one; it never reaches the disk.
    transfer = session.generate_key(
        KeyType.AES, 256, store=False, label="jpki-transfer",
        capabilities=MechanismFlag.WRAP | MechanismFlag.SIGN,
        template={
            Attribute.PRIVATE: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True,
            Attribute.TRUSTED: True, Attribute.WRAP: True, Attribute.SIGN: True,
            Attribute.UNWRAP: False, Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
            Attribute.VERIFY: False, Attribute.DERIVE: False,
        },
    )
    wrapped_transfer = _can(trusted_transport, WrapMixin).wrap_key(
        transfer, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=_OAEP
    )
    session_login.logout(path, _handle(session))
    _login(path, session, session_login.CKU_USER, config.user_pin, config.token_label)

    entries: list[dict[str, Any]] = []
    rsa_keys: dict[str, Key] = {}
    for item in items:
        key = _find_key(session, item.label)
        try:
            wrapped = _can(transfer, WrapMixin).wrap_key(key, mechanism=_KWP)
        except KeyUnextractable:
            raise KeyNotReplicable(
                f"the token refuses to wrap {item.label!r}: CKR_KEY_UNEXTRACTABLE (the key "
                "was created never to leave the token)", "CKR_KEY_UNEXTRACTABLE",
            ) from None
        except KeyNotWrappable:
            raise KeyNotReplicable(
                f"the token refuses to wrap {item.label!r}: CKR_KEY_NOT_WRAPPABLE (it may "
                "leave only under a key the security officer trusts)", "CKR_KEY_NOT_WRAPPABLE",
            ) from None
        entry: dict[str, Any] = {
            "label": item.label,
            "id": bytes(key[Attribute.ID]).hex(),
            "wrapped_key": base64.b64encode(wrapped).decode("ascii"),
        }
        if key.object_class == ObjectClass.PRIVATE_KEY:
            if key.key_type != KeyType.RSA:
                raise KeyNotReplicable(f"{item.label!r} is not an RSA key", "unsupported")
            public = _public_of(key)
            entry["kind"] = "rsa"
            entry["public_key"] = public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode("ascii")
            if item.certificate_der is not None:
                cert = x509.load_der_x509_certificate(item.certificate_der)
                if cert.public_key() != public:
                    raise BundleInvalid(
                        f"the certificate given for {item.label!r} is not of its key"
                    )
                entry["certificate"] = cert.public_bytes(serialization.Encoding.PEM).decode(
                    "ascii"
                )
            rsa_keys[item.label] = key
        else:
            entry["kind"] = "hmac"
            # A key check value, as payment HSMs exchange with a key: it proves the import
            # holds the same secret without revealing anything about it.
            entry["check_value"] = (
                _can(key, SignMixin).sign(CHECK_MESSAGE, mechanism=Mechanism.SHA256_HMAC).hex()
            )
        entries.append(entry)

    body = {
        "format": BUNDLE_FORMAT,
        "created_at": (now or datetime.now(UTC)).replace(microsecond=0).isoformat(),
        "source_token": config.token_label,
        "transport_key_sha256": transport.fingerprint,
        "wrapped_transfer_key": base64.b64encode(wrapped_transfer).decode("ascii"),
        "transfer_key_wrap": "CKM_RSA_PKCS_OAEP/SHA-1/MGF1-SHA-1",
        "key_wrap": "CKM_AES_KEY_WRAP_PAD (RFC 5649)",
        "keys": entries,
    }
    signed = canonical(body)
    mac = _can(transfer, SignMixin).sign(signed, mechanism=Mechanism.AES_CMAC)
    signatures = {
        label: _can(key, SignMixin).sign(signed, mechanism=Mechanism.SHA256_RSA_PKCS)
        for label, key in rsa_keys.items()
    }
    raw = json.dumps(
        {
            "body": body,
            "mac": mac.hex(),
            "signatures": {k: base64.b64encode(v).decode("ascii") for k, v in signatures.items()},
        },
        indent=2, sort_keys=True,
    ).encode("utf-8") + b"\n"
    return Bundle(raw, body, mac, signatures)


def _handle(session: Session) -> int:
    # The session handle C_Login/C_Logout need: python-pkcs11's Session has it, its stub not.
    handle = session.handle  # type: ignore[attr-defined]
    assert isinstance(handle, int)
    return handle


M = TypeVar("M")


def _can(obj: object, mixin: type[M]) -> M:
    """``obj`` as ``mixin``: python-pkcs11 builds each object's class from its attributes
    (CKA_WRAP gives WrapMixin, CKA_SIGN SignMixin, ...), so this checks the token agreed."""
    if not isinstance(obj, mixin):
        raise HsmError(f"the token object may not {mixin.__name__.removesuffix('Mixin').lower()}")
    return obj


def _find_key(session: Session, label: str) -> Key:
    found = [
        obj for obj in session.get_objects({Attribute.LABEL: label})
        if obj.object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY)
    ]
    if not found:
        raise KeyNotFound(f"no private or secret key labelled {label!r}")
    if len(found) > 1:
        raise HsmError(f"several keys are labelled {label!r}")
    key = found[0]
    assert isinstance(key, Key)
    return key


def _public_of(key: Object) -> rsa.RSAPublicKey:
    values = key.get_attributes([Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
    return rsa.RSAPublicNumbers(
        e=int.from_bytes(values[Attribute.PUBLIC_EXPONENT], "big"),
        n=int.from_bytes(values[Attribute.MODULUS], "big"),
    ).public_key()


# -- import (target) ----------------------------------------------------------------------


def import_keys(keys: KeyStore, bundle: Bundle) -> ImportResult:
    """Unwrap the bundle's keys into the token under their labels and CKA_IDs.

    Refuses (changing nothing) with :class:`WrongTransportKey`, :class:`BundleInvalid`
    (tampered: a signature, the CMAC or a wrapped key does not verify; a key that does not
    sign for its certificate) or :class:`KeyExists` (a label the token already has for another
    key). A key the token already holds - same label, CKA_ID and key - is left as it is and
    reported unchanged, so an import interrupted between two keys is finished by running it
    again.
    """
    signed = canonical(bundle.body)
    for e in bundle.body["keys"]:
        if e["kind"] == "rsa":
            try:
                bundle_public_key(e).verify(
                    bundle.signatures[e["label"]], signed, PKCS1v15(), hashes.SHA256()
                )
            except InvalidSignature:
                raise BundleInvalid(
                    f"the signature by {e['label']!r} does not verify: the bundle was altered "
                    "or not made by that key"
                ) from None
    with keys.session() as session:
        transport = next(
            (private for private, t in transport_pairs(session)
             if t.fingerprint == bundle.transport_fingerprint),
            None,
        )
        if transport is None:
            raise WrongTransportKey(
                f"the bundle is wrapped for transport key {bundle.transport_fingerprint}, which "
                "this token does not hold"
            )
        assert isinstance(transport, Key)
        try:
            transfer = _can(transport, UnwrapMixin).unwrap_key(
                ObjectClass.SECRET_KEY, KeyType.AES,
                base64.b64decode(bundle.body["wrapped_transfer_key"]),
                store=False, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=_OAEP,
                capabilities=MechanismFlag.UNWRAP | MechanismFlag.VERIFY,
                template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            )
        except PKCS11Error:
            raise BundleInvalid(
                "the transfer key does not decrypt: the bundle was altered"
            ) from None
        try:
            if not _can(transfer, VerifyMixin).verify(
                signed, bundle.mac, mechanism=Mechanism.AES_CMAC
            ):
                raise BundleInvalid("the bundle's CMAC does not verify: the bundle was altered")
            return _unwrap_all(session, transfer, bundle)
        finally:
            with contextlib.suppress(PKCS11Error):
                transfer.destroy()


def discard_pending(session: Session) -> int:
    """Remove what an interrupted import left (objects labelled :data:`PENDING_PREFIX`…).

    A public key whose private key already took its final label (the run died between the
    two renames) is completed instead. Returns how many objects were touched.
    """
    touched = 0
    for obj in list(session.get_objects()):
        label = obj[Attribute.LABEL]
        if not isinstance(label, str) or not label.startswith(PENDING_PREFIX):
            continue
        final = label[len(PENDING_PREFIX):]
        done = obj.object_class == ObjectClass.PUBLIC_KEY and any(
            o.object_class == ObjectClass.PRIVATE_KEY
            for o in session.get_objects({Attribute.LABEL: final, Attribute.ID: obj[Attribute.ID]})
        )
        if done:
            obj[Attribute.LABEL] = final
        else:
            obj.destroy()
        touched += 1
    return touched


def _unwrap_all(session: Session, transfer: Key, bundle: Bundle) -> ImportResult:
    discard_pending(session)
    todo, unchanged = [], []
    for e in bundle.body["keys"]:
        existing = list(session.get_objects({Attribute.LABEL: e["label"]}))
        if not existing:
            todo.append(e)
        elif _holds_the_same_key(existing, e):
            # Imported already (an earlier run, or one killed between two keys' commits).
            unchanged.append(e["label"])
        else:
            raise KeyExists(
                f"the token already has an object labelled {e['label']!r}, not the bundle's key"
            )
    made: list[list[tuple[Object, str]]] = []
    try:
        for e in todo:
            made.append(_unwrap_one(session, transfer, e))
    except BaseException:
        for obj, _ in (pair for key in made for pair in key):
            with contextlib.suppress(PKCS11Error):
                obj.destroy()
        raise
    for key in made:
        _commit(key)
    done = {e["label"] for e in todo}
    return ImportResult(
        imported=[k for k in bundle.entries() if k.label in done],
        unchanged=[k for k in bundle.entries() if k.label in unchanged],
    )


def _commit(key: list[tuple[Object, str]]) -> None:
    """Give one checked key its label: the private or secret half first - that is the commit
    point, what KeyStore.has_key looks for - then the public half (discard_pending completes a
    public half a kill left behind)."""
    for obj, final in sorted(key, key=lambda pair: pair[0].object_class == ObjectClass.PUBLIC_KEY):
        obj[Attribute.LABEL] = final


def _holds_the_same_key(existing: list[Object], e: Mapping[str, Any]) -> bool:
    """Whether the objects under the entry's label are the entry's key: same CKA_ID and the same
    public key (RSA) or check value (HMAC). Anything else under the label is a refusal."""
    key_id = bytes.fromhex(e["id"])
    for obj in existing:
        if obj.object_class not in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY):
            continue
        if bytes(obj[Attribute.ID]) != key_id:
            return False
        if e["kind"] == "rsa":
            return (obj.object_class == ObjectClass.PRIVATE_KEY
                    and _public_of(obj) == bundle_public_key(e))
        check = _can(obj, SignMixin).sign(CHECK_MESSAGE, mechanism=Mechanism.SHA256_HMAC)
        return bool(check.hex() == e["check_value"])
    return False


def _unwrap_one(session: Session, transfer: Key, e: Mapping[str, Any]) -> list[tuple[Object, str]]:
    label, pending = e["label"], PENDING_PREFIX + e["label"]
    key_id = bytes.fromhex(e["id"])
    wrapped = base64.b64decode(e["wrapped_key"])
    made: list[tuple[Object, str]] = []
    try:
        if e["kind"] == "rsa":
            private = _can(transfer, UnwrapMixin).unwrap_key(
                ObjectClass.PRIVATE_KEY, KeyType.RSA, wrapped, label=pending, id=key_id,
                store=True, mechanism=_KWP, capabilities=MechanismFlag.SIGN,
                template={
                    **REPLICABLE_KEY_PROTECTION, Attribute.SIGN: True, Attribute.DECRYPT: False,
                    Attribute.UNWRAP: False, Attribute.DERIVE: False,
                    # python-pkcs11 adds every capability attribute; these three belong to
                    # public and secret keys, and SoftHSM answers CKR_ATTRIBUTE_TYPE_INVALID
                    # for them on a private key - after leaving a half-made token object
                    # behind (SoftHSM 2.6.1 C_UnwrapKey), so they must never be sent.
                    **_NOT_PRIVATE_KEY_ATTRIBUTES,
                },
            )
        else:
            private = _can(transfer, UnwrapMixin).unwrap_key(
                ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET, wrapped, label=pending,
                id=key_id, store=True, mechanism=_KWP,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                template=dict(REPLICABLE_KEY_PROTECTION),
            )
    except PKCS11Error:
        raise BundleInvalid(f"the wrapped key {label!r} does not unwrap: altered") from None
    made.append((private, label))
    try:
        if e["kind"] == "rsa":
            public = bundle_public_key(e)
            signature = _can(private, SignMixin).sign(
                CHECK_MESSAGE, mechanism=Mechanism.SHA256_RSA_PKCS
            )
            try:
                public.verify(signature, CHECK_MESSAGE, PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                raise BundleInvalid(
                    f"the imported {label!r} does not sign for its certificate"
                ) from None
            numbers = public.public_numbers()
            made.append((session.create_object({
                Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
                Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True,
                Attribute.ENCRYPT: False, Attribute.WRAP: False, Attribute.LABEL: pending,
                Attribute.ID: key_id,
                Attribute.MODULUS: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"),
                Attribute.PUBLIC_EXPONENT: numbers.e.to_bytes(
                    (numbers.e.bit_length() + 7) // 8, "big"),
            }), label))
        else:
            check = _can(private, SignMixin).sign(CHECK_MESSAGE, mechanism=Mechanism.SHA256_HMAC)
            if check.hex() != e["check_value"]:
                raise BundleInvalid(f"the imported {label!r} does not match its check value")
    except BaseException:
        for obj, _ in made:
            with contextlib.suppress(PKCS11Error):
                obj.destroy()
        raise
    return made
