"""A minimal stand-in for a phone and a card, for service-level mobile tests: keys made with
cryptography, requests signed as the card (or phone) would sign them."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jpki.mobile.service import pop_message
from jpki.model import CertKind
from jpki.protocol.cms import build_signed_data


def spki(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def digest_info_signer(key: rsa.RSAPrivateKey):
    """What COMPUTE DIGITAL SIGNATURE `80 2A 00 80` does with a SHA-256 DigestInfo."""
    return lambda digest_info: key.sign(digest_info[-32:], padding.PKCS1v15(),
                                        Prehashed(hashes.SHA256()))


def signed(document: dict, signer_der: bytes, key: rsa.RSAPrivateKey, at: datetime) -> bytes:
    return build_signed_data(json.dumps(document).encode(), signer_der,
                             digest_info_signer(key), at)


@dataclass
class Phone:
    device: str
    platform: str = "JPKIAPGPSETOKEN"
    keys: dict[CertKind, rsa.RSAPrivateKey] = field(default_factory=dict)
    certs: dict[CertKind, bytes] = field(default_factory=dict)
    device_id: str = ""

    def new_keys(self, pool: list[rsa.RSAPrivateKey]) -> None:
        self.keys = {CertKind.MOBILE_SIGN: pool.pop(), CertKind.MOBILE_AUTH: pool.pop()}

    def pop(self, challenge: bytes, kind: CertKind, key: rsa.RSAPrivateKey | None = None,
            device: str | None = None) -> str:
        key = key or self.keys[kind]
        return base64.b64encode(key.sign(pop_message(challenge, device or self.device, kind),
                                         padding.PKCS1v15(), hashes.SHA256())).decode()

    def application(self, challenge: bytes, card_sign_serial: str, **overrides: object) -> dict:
        doc = {
            "type": "jpki-mobile-application/1",
            "challenge": base64.b64encode(challenge).decode(),
            "device": self.device, "platform": self.platform,
            "card_sign_serial": card_sign_serial,
            "sign_public_key": base64.b64encode(spki(self.keys[CertKind.MOBILE_SIGN])).decode(),
            "auth_public_key": base64.b64encode(spki(self.keys[CertKind.MOBILE_AUTH])).decode(),
            "sign_pop": self.pop(challenge, CertKind.MOBILE_SIGN),
            "auth_pop": self.pop(challenge, CertKind.MOBILE_AUTH),
        }
        doc.update(overrides)
        return doc
