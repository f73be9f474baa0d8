"""Keys kept in a PKCS#11 token: RSA signing keys and HMAC keys, found by label.

Keys are generated inside the token as token objects, sensitive and never
extractable - or, when made *replicable*, extractable only wrapped under a key the security
officer trusted (:mod:`hsm.replication`); this class only ever holds handles. One
:class:`KeyStore` serves many threads through a pool of sessions (:mod:`hsm.pool`).

Several key stores may be open at once in one process, also on the same token: the
login is shared (:mod:`hsm.login`). Two processes may use the same token directory
too (SoftHSM's file backend locks its files), but creating the same label from two
processes at the same time is not guarded against.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
from pkcs11.exceptions import (
    DeviceError,
    DeviceRemoved,
    MultipleObjectsReturned,
    NoSuchKey,
    PKCS11Error,
    TokenNotPresent,
)
from pkcs11.mechanisms import KeyType, Mechanism
from pkcs11.types import Key, Object, Session, SignMixin

from hsm.bulk_signer import BulkSigner
from hsm.errors import HsmError, HsmUnavailable, KeyExists, KeyNotFound
from hsm.mechanisms import RSA_HASHES
from hsm.module import Pkcs11Module, load_module
from hsm.pool import HsmObserver, PooledSession, SessionPool
from hsm.rsa_key import HsmRsaPrivateKey, PssParams

T = TypeVar("T")

MIN_RSA_BITS = 2048
HMAC_KEY_BITS = 256

_PROTECTION_ATTRIBUTES = {
    "sensitive": Attribute.SENSITIVE,
    "extractable": Attribute.EXTRACTABLE,
    "always_sensitive": Attribute.ALWAYS_SENSITIVE,
    "never_extractable": Attribute.NEVER_EXTRACTABLE,
    "private": Attribute.PRIVATE,
    "local": Attribute.LOCAL,
    "wrap_with_trusted": Attribute.WRAP_WITH_TRUSTED,
}

# Attributes every secret half gets by default: a token object, readable only after login,
# whose value the token never reveals, not even wrapped.
_SECRET_KEY_PROTECTION: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
}

# A replicable secret half: as above, except that the token will wrap it - never reveal it -
# but only under a wrapping key marked CKA_TRUSTED, which only the security officer can set
# (PKCS#11 v2.40 §4.8-4.10, key objects; SoftHSM 2.6.1 C_WrapKey answers CKR_KEY_NOT_WRAPPABLE
# otherwise).
# CKA_EXTRACTABLE can go from true to false but never back (CKR_ATTRIBUTE_READ_ONLY), so a key
# made with the template above can never be replicated: see hsm.replication.
REPLICABLE_KEY_PROTECTION: dict[Attribute, Any] = {
    **_SECRET_KEY_PROTECTION,
    Attribute.EXTRACTABLE: True,
    Attribute.WRAP_WITH_TRUSTED: True,
}


def secret_protection(replicable: bool) -> dict[Attribute, Any]:
    return dict(REPLICABLE_KEY_PROTECTION if replicable else _SECRET_KEY_PROTECTION)


@dataclass(frozen=True)
class TokenConfig:
    """Where the keys are: a PKCS#11 module file, a token label and its user PIN."""

    module_path: str
    token_label: str
    user_pin: str = field(repr=False)
    pool_size: int = 4
    bulk_process: bool = False
    """Sign bulk requests (:meth:`KeyStore.sign_many`) in a child process with its own session
    (:mod:`hsm.bulk_signer`): for tokens that compute in the calling process, as SoftHSM does."""

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")


class KeyStore:
    """Sign with, and create, the keys of one token. Thread-safe; close when done.

    Opening loads the module (once per process), finds the token by label (slot ids
    are not stable), logs in (once per process and token) and opens ``pool_size``
    R/W sessions. Raises :class:`TokenNotFound` or :class:`HsmUnavailable`.
    """

    def __init__(self, config: TokenConfig) -> None:
        self._config = config
        self._module: Pkcs11Module = load_module(config.module_path)
        token, self._login = self._module.login(config.token_label, config.user_pin)
        try:
            self._pool = SessionPool(
                lambda: token.open(rw=True),
                config.pool_size,
                recover=self._recover_login,
                serialize=not self._module.thread_safe,
            )
        except PKCS11Error as exc:
            self._module.release(self._login)
            raise HsmUnavailable(
                f"cannot open sessions on token {config.token_label!r}: {type(exc).__name__}"
            ) from None
        except BaseException:
            self._module.release(self._login)
            raise
        self._closed = False
        self._close_lock = threading.Lock()
        # Serialises "is the label free? then create" within the process.
        self._create_lock = threading.Lock()
        self._rsa_keys: dict[str, HsmRsaPrivateKey] = {}
        self._rsa_keys_lock = threading.Lock()
        # The environment now is the one the module was initialised with (or will be, for the
        # first key store of the process): the child gets the same.
        self._bulk = (BulkSigner(config.module_path, config.token_label, config.user_pin,
                                 dict(os.environ)) if config.bulk_process else None)

    @property
    def config(self) -> TokenConfig:
        return self._config

    # -- monitoring ---------------------------------------------------------------

    def observe(self, observer: HsmObserver | None) -> None:
        """Report waits for a session and the time of each signature to ``observer``."""
        self._pool.observer = observer

    @property
    def pool_size(self) -> int:
        return self._pool.size

    @property
    def sessions_in_use(self) -> int:
        return self._pool.in_use

    def _timed(self, operation: str, started: float) -> None:
        observer = self._pool.observer
        if observer is not None:
            with contextlib.suppress(Exception):
                observer.operated(operation, time.perf_counter() - started)

    def __repr__(self) -> str:
        return (
            f"<KeyStore token={self._config.token_label!r} module={self._config.module_path!r} "
            f"pool_size={self._pool.size}>"
        )

    # -- life cycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the sessions (waiting for operations in progress) and log out."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._bulk is not None:
                self._bulk.close()
            self._pool.close()
        finally:
            self._module.release(self._login)

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _recover_login(self, logged_out: bool) -> None:
        self._module.ensure_login(self._login, self._config.user_pin, logged_out=logged_out)

    def _run(self, what: str, operation: Callable[[PooledSession], T]) -> T:
        """Run ``operation`` on a pooled session, turning PKCS#11 errors into HsmErrors."""
        try:
            return self._pool.run(operation)
        except HsmError:
            raise
        except (DeviceError, DeviceRemoved, TokenNotPresent) as exc:
            raise HsmUnavailable(f"{what}: token unavailable ({type(exc).__name__})") from exc
        except PKCS11Error as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise HsmError(f"{what}: {detail}") from exc

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Borrow a raw python-pkcs11 session of the pool (tools and tests only).

        Do not close it, and do not log in or out on it: both act on every session.
        """
        with self._pool.borrow() as pooled:
            yield pooled.session

    # -- finding keys -------------------------------------------------------------

    @staticmethod
    def _find(pooled: PooledSession, label: str, object_class: ObjectClass) -> Key:
        try:
            return pooled.key(label, object_class)
        except NoSuchKey:
            raise KeyNotFound(f"no {_CLASS_NAMES[object_class]} labelled {label!r}") from None
        except MultipleObjectsReturned:
            raise HsmError(
                f"several {_CLASS_NAMES[object_class]}s are labelled {label!r}"
            ) from None

    @staticmethod
    def _objects_labelled(pooled: PooledSession, label: str) -> list[ObjectClass | None]:
        return [obj.object_class for obj in pooled.find({Attribute.LABEL: label})]

    def has_key(self, label: str) -> bool:
        """True if a private key or a secret key carries ``label``."""
        classes = self._run(
            f"look up {label!r}",
            lambda pooled: self._objects_labelled(pooled, label),
        )
        return ObjectClass.PRIVATE_KEY in classes or ObjectClass.SECRET_KEY in classes

    def key_labels(self) -> list[str]:
        """Labels of the private and secret keys on the token, sorted."""

        def op(pooled: PooledSession) -> list[str]:
            labels: set[str] = set()
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY):
                for obj in pooled.find({Attribute.CLASS: object_class}):
                    labels.add(obj[Attribute.LABEL])
            return sorted(labels)

        return self._run("list keys", op)

    def key_protection(self, label: str) -> dict[str, bool]:
        """Protection attributes of the private (RSA) or secret (HMAC) key ``label``.

        ``sensitive``, ``extractable``, ``always_sensitive`` and ``never_extractable``
        show the key cannot leave the token and never could; ``local`` that it was
        generated inside the token; ``private`` that it is visible only after login.
        """

        def op(pooled: PooledSession) -> dict[str, bool]:
            try:
                key = self._find(pooled, label, ObjectClass.PRIVATE_KEY)
            except KeyNotFound:
                try:
                    key = self._find(pooled, label, ObjectClass.SECRET_KEY)
                except KeyNotFound:
                    raise KeyNotFound(f"no private or secret key labelled {label!r}") from None
            values = key.get_attributes(list(_PROTECTION_ATTRIBUTES.values()))
            return {name: bool(values[attr]) for name, attr in _PROTECTION_ATTRIBUTES.items()}

        return self._run(f"read the protection of {label!r}", op)

    # -- RSA ----------------------------------------------------------------------

    def generate_rsa_key(
        self, label: str, bits: int = 2048, *, replicable: bool = False
    ) -> HsmRsaPrivateKey:
        """Generate an RSA signing key pair in the token; the key never leaves it.

        Both halves are token objects with the same label and a random 16-byte CKA_ID.
        With ``replicable`` the private half may leave wrapped for another token under a
        security officer's trusted key (:mod:`hsm.replication`), never in plaintext.
        Raises :class:`KeyExists` if any object already has the label.
        """
        _check_label(label)
        if not isinstance(bits, int) or bits < MIN_RSA_BITS:
            raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits, not {bits}")
        key_id = secrets.token_bytes(16)

        def op(pooled: PooledSession) -> rsa.RSAPublicKey:
            if self._objects_labelled(pooled, label):
                raise KeyExists(f"the token already has an object labelled {label!r}")
            public, private = pooled.session.generate_keypair(
                KeyType.RSA,
                bits,
                id=key_id,
                label=label,
                store=True,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                public_template={Attribute.TOKEN: True, Attribute.PRIVATE: False},
                private_template={
                    **secret_protection(replicable),
                    Attribute.SIGN: True,
                    Attribute.DECRYPT: False,
                    Attribute.UNWRAP: False,
                    Attribute.DERIVE: False,
                },
            )
            pooled.remember(label, ObjectClass.PRIVATE_KEY, private)
            return _rsa_public_key(public)

        with self._create_lock:
            public_key = self._run(f"generate RSA key {label!r}", op)
        key = HsmRsaPrivateKey(self, label, public_key)
        with self._rsa_keys_lock:
            self._rsa_keys[label] = key
        return key

    def rsa_key(self, label: str) -> HsmRsaPrivateKey:
        """The token's RSA key ``label`` as a cryptography private key. KeyNotFound if absent."""
        with self._rsa_keys_lock:
            cached = self._rsa_keys.get(label)
        if cached is not None:
            return cached

        def op(pooled: PooledSession) -> rsa.RSAPublicKey:
            private = self._find(pooled, label, ObjectClass.PRIVATE_KEY)
            if private.key_type != KeyType.RSA:
                raise HsmError(f"key {label!r} is not an RSA key")
            # Prefer the public half of the same pair (same CKA_ID); the private object
            # carries the modulus and exponent too, in case the public one was deleted.
            publics = pooled.find(
                {
                    Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                    Attribute.LABEL: label,
                    Attribute.ID: private.id,
                }
            )
            return _rsa_public_key(publics[0] if len(publics) == 1 else private)

        public_key = self._run(f"load RSA key {label!r}", op)
        with self._rsa_keys_lock:
            return self._rsa_keys.setdefault(label, HsmRsaPrivateKey(self, label, public_key))

    def sign_with_mechanism(
        self,
        label: str,
        data: bytes,
        mechanism: Mechanism,
        mechanism_param: PssParams | None = None,
    ) -> bytes:
        """One C_Sign with the private key ``label`` (used by :class:`HsmRsaPrivateKey`)."""

        def op(pooled: PooledSession) -> bytes:
            key = self._find(pooled, label, ObjectClass.PRIVATE_KEY)
            started = time.perf_counter()
            signature = _signer(key, label).sign(
                data, mechanism=mechanism, mechanism_param=mechanism_param
            )
            self._timed("sign", started)
            return signature

        return self._run(f"sign with {label!r}", op)

    def sign_many(self, label: str, messages: Sequence[bytes]) -> list[bytes]:
        """sha256WithRSAEncryption (PKCS#1 v1.5) signatures of ``messages`` by the RSA key
        ``label``, in order: in the bulk signing process when the configuration asks for one,
        else one after another on a pooled session."""
        if self._bulk is not None:
            return self._bulk.sign_sha256_pkcs1v15(label, messages)
        return [self.sign_with_mechanism(label, bytes(m), Mechanism.SHA256_RSA_PKCS)
                for m in messages]

    @property
    def bulk_signer_pid(self) -> int | None:
        """The bulk signing process's id while it runs (monitoring and tests)."""
        return self._bulk.pid if self._bulk is not None else None

    def sign_pkcs1v15(self, label: str, data: bytes, hash_name: str = "sha256") -> bytes:
        """RSASSA-PKCS1-v1_5 signature of ``data`` (CKM_SHA256_RSA_PKCS and friends)."""
        spec = RSA_HASHES.get(hash_name)
        if spec is None:
            raise ValueError(f"hash {hash_name!r} is not one of {', '.join(RSA_HASHES)}")
        algorithm: hashes.HashAlgorithm = spec.algorithm()
        return self.rsa_key(label).sign(data, PKCS1v15(), algorithm)

    # -- HMAC ---------------------------------------------------------------------

    def generate_hmac_key(self, label: str, *, replicable: bool = False) -> None:
        """Generate a 256-bit generic secret for HMAC-SHA-256 in the token.

        CKK_GENERIC_SECRET: SoftHSM's CKM_GENERIC_SECRET_KEY_GEN makes no other type,
        and its CKM_SHA256_HMAC accepts it. ``replicable`` as for :meth:`generate_rsa_key`.
        Raises :class:`KeyExists` if the label is taken.
        """
        _check_label(label)

        def op(pooled: PooledSession) -> None:
            if self._objects_labelled(pooled, label):
                raise KeyExists(f"the token already has an object labelled {label!r}")
            key = pooled.session.generate_key(
                KeyType.GENERIC_SECRET,
                HMAC_KEY_BITS,
                label=label,
                id=secrets.token_bytes(16),
                store=True,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
                template=secret_protection(replicable),
            )
            pooled.remember(label, ObjectClass.SECRET_KEY, key)

        with self._create_lock:
            self._run(f"generate HMAC key {label!r}", op)

    def hmac_sha256(self, label: str, data: bytes) -> bytes:
        """HMAC-SHA-256 of ``data`` under the token's secret key ``label`` (32 bytes)."""

        def op(pooled: PooledSession) -> bytes:
            key = self._find(pooled, label, ObjectClass.SECRET_KEY)
            started = time.perf_counter()
            mac = _signer(key, label).sign(bytes(data), mechanism=Mechanism.SHA256_HMAC)
            self._timed("hmac", started)
            return mac

        return self._run(f"HMAC with {label!r}", op)


_CLASS_NAMES = {
    ObjectClass.PRIVATE_KEY: "private key",
    ObjectClass.SECRET_KEY: "secret key",
    ObjectClass.PUBLIC_KEY: "public key",
}


def _check_label(label: str) -> None:
    if not isinstance(label, str) or not label:
        raise ValueError("a key label must be a non-empty string")


def _signer(key: Key, label: str) -> SignMixin:
    # python-pkcs11 builds each key object's class from its attributes: only keys
    # with CKA_SIGN get the sign() method.
    if not isinstance(key, SignMixin):
        raise HsmError(f"key {label!r} may not sign (CKA_SIGN is false)")
    return key


def _rsa_public_key(key: Object) -> rsa.RSAPublicKey:
    values = key.get_attributes([Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
    return rsa.RSAPublicNumbers(
        e=int.from_bytes(values[Attribute.PUBLIC_EXPONENT], "big"),
        n=int.from_bytes(values[Attribute.MODULUS], "big"),
    ).public_key()
