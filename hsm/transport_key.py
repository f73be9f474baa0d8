"""The transport key: the target token's RSA key pair that key bundles are wrapped for.

Step 1 of the key-replication ceremony (:mod:`hsm.replication`): the private half is a token
object (the ceremony spans two machines and may take a while), sensitive, never extractable, and
may only unwrap (CKA_UNWRAP; no decrypt, no sign). The public half leaves as PEM; its SHA-256
fingerprint over the DER SubjectPublicKeyInfo is what the officers compare out of band.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
from pkcs11.mechanisms import KeyType
from pkcs11.types import Object, Session

from hsm.errors import BundleInvalid
from hsm.keystore import KeyStore

TRANSPORT_LABEL = "jpki-transport"
"""Label of the transport key pair on the target token (several may exist; matched by
fingerprint)."""
TRANSPORT_BITS = 3072


@dataclass(frozen=True)
class TransportKey:
    """The public half of a target token's transport key."""

    public_key: rsa.RSAPublicKey

    @property
    def spki_der(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER SubjectPublicKeyInfo, hex: what the officers compare."""
        return hashlib.sha256(self.spki_der).hexdigest()

    def pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, data: bytes) -> TransportKey:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise BundleInvalid("the transport key is not a PEM public key") from None
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
            raise BundleInvalid("the transport key must be an RSA public key of 2048+ bits")
        return cls(key)


def transport_pairs(session: Session) -> Iterator[tuple[Object, TransportKey]]:
    for private in session.get_objects(
        {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: TRANSPORT_LABEL}
    ):
        values = private.get_attributes([Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
        public = rsa.RSAPublicNumbers(
            e=int.from_bytes(values[Attribute.PUBLIC_EXPONENT], "big"),
            n=int.from_bytes(values[Attribute.MODULUS], "big"),
        ).public_key()
        yield private, TransportKey(public)


def transport_keys(keys: KeyStore) -> list[TransportKey]:
    """The transport keys on the token (normally none or one)."""
    with keys.session() as session:
        return [transport for _, transport in transport_pairs(session)]


def create_transport_key(keys: KeyStore, *, rotate: bool = False) -> tuple[TransportKey, bool]:
    """The token's transport key, created unless one exists; (key, created).

    ``rotate`` destroys the existing ones first. The private half is a token object (the
    ceremony spans two machines and may take a while), sensitive, never extractable, and may
    only unwrap.
    """
    with keys.session() as session:
        existing = list(transport_pairs(session))
        if existing and not rotate:
            return existing[0][1], False
        for private, transport in existing:
            _destroy_transport(session, private, transport)
        public, _ = session.generate_keypair(
            KeyType.RSA,
            TRANSPORT_BITS,
            label=TRANSPORT_LABEL,
            id=hashlib.sha256(b"transport" + session.generate_random(128)).digest()[:16],
            store=True,
            capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
            public_template={
                Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.WRAP: True,
                Attribute.ENCRYPT: False, Attribute.VERIFY: False,
            },
            private_template={
                Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False, Attribute.UNWRAP: True, Attribute.DECRYPT: False,
                Attribute.SIGN: False, Attribute.DERIVE: False,
            },
        )
        values = public.get_attributes([Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
        created = rsa.RSAPublicNumbers(
            e=int.from_bytes(values[Attribute.PUBLIC_EXPONENT], "big"),
            n=int.from_bytes(values[Attribute.MODULUS], "big"),
        ).public_key()
        return TransportKey(created), True


def destroy_transport_keys(keys: KeyStore) -> list[str]:
    """Destroy every transport key pair on the token (after the ceremony); their fingerprints."""
    with keys.session() as session:
        pairs = list(transport_pairs(session))
        for private, transport in pairs:
            _destroy_transport(session, private, transport)
        return [transport.fingerprint for _, transport in pairs]


def _destroy_transport(session: Session, private: Object, transport: TransportKey) -> None:
    key_id = private[Attribute.ID]
    for public in session.get_objects(
        {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: TRANSPORT_LABEL,
         Attribute.ID: key_id}
    ):
        public.destroy()
    private.destroy()
