"""A minimal stand-in for a phone and a card, for service-level mobile tests: keys made with
cryptography, requests signed as the card (or phone) would sign them.

Documents are built with the protocol's classes (jpki.protocol); a test that sends what those
would refuse passes a plain JSON object (``dict``) instead, which is signed as it is.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jpki.model import CertKind
from jpki.protocol.cms import build_signed_data
from jpki.protocol.documents import Document, canonical_json
from jpki.protocol.mobile import MobileApplication, MobileKind, Platform, pop_message

# The CA's kinds as the protocol names them (jpki.mobile.service maps them the same way).
WIRE = {CertKind.MOBILE_SIGN: MobileKind.SIGN, CertKind.MOBILE_AUTH: MobileKind.AUTH}


def spki(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def digest_info_signer(key: rsa.RSAPrivateKey):
    """What COMPUTE DIGITAL SIGNATURE `80 2A 00 80` does with a SHA-256 DigestInfo."""
    return lambda digest_info: key.sign(digest_info[-32:], padding.PKCS1v15(),
                                        Prehashed(hashes.SHA256()))


def content(document: Document | dict[str, Any]) -> bytes:
    """What is signed: a document's canonical JSON, or a raw object in the same encoding."""
    return document.to_json() if isinstance(document, Document) else canonical_json(document)


def signed(document: Document | dict[str, Any], signer_der: bytes, key: rsa.RSAPrivateKey,
           at: datetime) -> bytes:
    return build_signed_data(content(document), signer_der, digest_info_signer(key), at)


@dataclass
class Phone:
    device: str
    platform: str = "JPKIAPGPSETOKEN"
    keys: dict[CertKind, rsa.RSAPrivateKey] = field(default_factory=dict)
    certs: dict[CertKind, bytes] = field(default_factory=dict)
    device_id: str = ""

    def new_keys(self, pool: list[rsa.RSAPrivateKey]) -> None:
        self.keys = {CertKind.MOBILE_SIGN: pool.pop(), CertKind.MOBILE_AUTH: pool.pop()}

    def proof(self, challenge: bytes, kind: CertKind, key: rsa.RSAPrivateKey | None = None,
              device: str | None = None) -> bytes:
        """The proof of possession of ``key`` (the phone's key of ``kind`` by default)."""
        key = key or self.keys[kind]
        return key.sign(pop_message(challenge, device or self.device, WIRE[kind]),
                        padding.PKCS1v15(), hashes.SHA256())

    def pop(self, challenge: bytes, kind: CertKind, key: rsa.RSAPrivateKey | None = None,
            device: str | None = None) -> str:
        """:meth:`proof` in base64, as a document carries it."""
        return base64.b64encode(self.proof(challenge, kind, key, device)).decode()

    def application_document(self, challenge: bytes,
                             card_sign_serial: str) -> MobileApplication:
        return MobileApplication(
            challenge=challenge, device=self.device, platform=Platform(self.platform),
            card_sign_serial=card_sign_serial,
            sign_public_key=spki(self.keys[CertKind.MOBILE_SIGN]),
            auth_public_key=spki(self.keys[CertKind.MOBILE_AUTH]),
            sign_pop=self.proof(challenge, CertKind.MOBILE_SIGN),
            auth_pop=self.proof(challenge, CertKind.MOBILE_AUTH))

    def application(self, challenge: bytes, card_sign_serial: str,
                    **overrides: object) -> dict[str, Any]:
        """The application as a JSON object, with ``overrides`` set as they are (what the
        protocol's class would refuse, for the CA to refuse)."""
        doc = self.application_document(challenge, card_sign_serial).to_dict()
        doc.update(overrides)
        return doc
