"""The key bundle: the file a replication export writes and an import reads (hsm.replication).

JSON: a ``body`` (format, source token, transport key fingerprint, the transfer key wrapped under
the transport key, and per key its label, CKA_ID, kind, wrapped value and - RSA - public key and
certificate, or - HMAC - a check value), the ``mac`` (AES-CMAC of the canonical body under the
transfer key) and ``signatures`` (each RSA key's PKCS#1 v1.5 SHA-256 signature of the canonical
body). Nothing in it is secret; all of it is bound by the MAC and the signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hsm.errors import BundleInvalid

BUNDLE_FORMAT = "jpki-key-bundle/1"
PENDING_PREFIX = "jpki-importing:"
"""Label prefix of objects an import has unwrapped but not yet checked (never a bundle's label)."""


@dataclass(frozen=True)
class ReplicatedKey:
    """What a bundle says about one key (no key material)."""

    label: str
    key_id: str
    kind: str  # "rsa" or "hmac"
    certificate_sha256: str | None


@dataclass(frozen=True)
class Bundle:
    raw: bytes
    body: Mapping[str, Any]
    mac: bytes
    signatures: Mapping[str, bytes]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def transport_fingerprint(self) -> str:
        return str(self.body["transport_key_sha256"])

    @property
    def source_token(self) -> str:
        return str(self.body["source_token"])

    def entries(self) -> list[ReplicatedKey]:
        return [
            ReplicatedKey(
                e["label"], e["id"], e["kind"],
                sha256_of_pem_cert(e["certificate"]) if e.get("certificate") else None,
            )
            for e in self.body["keys"]
        ]


def canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256_of_pem_cert(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def parse_bundle(raw: bytes) -> Bundle:
    """The bundle in ``raw``, checked for shape and self-consistency (not yet for the MAC,
    which needs the target token). Raises :class:`BundleInvalid`."""
    try:
        doc = json.loads(raw)
        body = doc["body"]
        if body["format"] != BUNDLE_FORMAT:
            raise BundleInvalid(f"not a {BUNDLE_FORMAT} bundle")
        mac = bytes.fromhex(doc["mac"])
        signatures = {
            str(k): base64.b64decode(v, validate=True) for k, v in doc["signatures"].items()
        }
        base64.b64decode(body["wrapped_transfer_key"], validate=True)
        str(body["transport_key_sha256"])
        str(body["source_token"])
        entries = body["keys"]
        if not isinstance(entries, list) or not entries:
            raise BundleInvalid("the bundle carries no key")
        seen: set[str] = set()
        for e in entries:
            label = e["label"]
            if not isinstance(label, str) or not label or label.startswith(PENDING_PREFIX):
                raise BundleInvalid("a key label is empty or reserved")
            if label in seen:
                raise BundleInvalid(f"the bundle carries {label!r} twice")
            seen.add(label)
            bytes.fromhex(e["id"])
            base64.b64decode(e["wrapped_key"], validate=True)
            if e["kind"] == "rsa":
                bundle_public_key(e)
                if label not in signatures:
                    raise BundleInvalid(f"the RSA key {label!r} has no signature")
            elif e["kind"] == "hmac":
                bytes.fromhex(e["check_value"])
            else:
                raise BundleInvalid(f"unknown key kind for {label!r}")
    except BundleInvalid:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error, AttributeError):
        raise BundleInvalid("the file is not a well-formed key bundle") from None
    return Bundle(raw, body, mac, signatures)


def bundle_public_key(entry: Mapping[str, Any]) -> rsa.RSAPublicKey:
    public = serialization.load_pem_public_key(str(entry["public_key"]).encode("ascii"))
    if not isinstance(public, rsa.RSAPublicKey):
        raise BundleInvalid(f"the public key of {entry['label']!r} is not RSA")
    cert_pem = entry.get("certificate")
    if cert_pem:
        cert = x509.load_pem_x509_certificate(str(cert_pem).encode("ascii"))
        if cert.public_key() != public:
            raise BundleInvalid(f"the certificate of {entry['label']!r} is not of its key")
    return public


def bundle_certificates(bundle: Bundle) -> dict[str, bytes]:
    """label -> DER certificate, for the RSA keys that came with one."""
    result = {}
    for e in bundle.body["keys"]:
        if e.get("certificate"):
            cert = x509.load_pem_x509_certificate(str(e["certificate"]).encode("ascii"))
            result[e["label"]] = cert.public_bytes(serialization.Encoding.DER)
    return result
