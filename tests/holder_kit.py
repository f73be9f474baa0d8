"""Holders for the relying-party tests: a resident with a card whose keys the test knows, who
signs consents, withdrawals and ordinary documents as the card (or phone) would — a CMS SignedData
whose signature is what COMPUTE DIGITAL SIGNATURE returns (tests/phone_kit.py)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from api.composition import Services
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.issuance.service import IssuedCertificate, KeyRequest
from jpki.model import CertKind
from jpki.protocol.consent import ConsentStatement, ConsentWithdrawal
from jpki.protocol.documents import Document
from jpki.registry.residents import EventKind, ResidentEvent
from tests.phone_kit import Phone, signed, spki

CA_OPERATOR = Principal.local_operator("test")
ISSUE = authorize(CA_OPERATOR, Operation.CERTIFICATE_ISSUE)
REGISTER_RESIDENT = authorize(CA_OPERATOR, Operation.RESIDENT_REGISTER)
RENEW = authorize(CA_OPERATOR, Operation.CERTIFICATE_RENEW)
RESIDENT_EVENT = authorize(CA_OPERATOR, Operation.RESIDENT_EVENT)
ITEMS_ALL = ["name", "birth_date", "sex", "address"]


def nonce() -> str:
    return secrets.token_urlsafe(24)


def b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


def consent(rp_id: str, at: datetime, *, items: tuple[str, ...] = ("name", "address"),
            purpose: str = "test",
            expires_in: timedelta = timedelta(days=30)) -> ConsentStatement:
    return ConsentStatement(relying_party=rp_id, items=items, purpose=purpose, nonce=nonce(),
                            expires_at=at + expires_in)


def consent_statement(rp_id: str, at: datetime, *, items: list[str] | None = None,
                      purpose: str = "test", expires_in: timedelta = timedelta(days=30),
                      **overrides: Any) -> dict[str, Any]:
    """:func:`consent` as a JSON object, with ``items`` and ``overrides`` set as they are (what
    the protocol's class would refuse, for the CA to refuse)."""
    doc = consent(rp_id, at, purpose=purpose, expires_in=expires_in).to_dict()
    if items is not None:
        doc["items"] = items
    doc.update(overrides)
    return doc


def withdrawal_statement(consent_id: str) -> ConsentWithdrawal:
    return ConsentWithdrawal(consent_id=consent_id, nonce=nonce())


@dataclass
class Holder:
    services: Services
    resident_id: str
    pool: list[rsa.RSAPrivateKey]
    keys: dict[CertKind, rsa.RSAPrivateKey] = field(default_factory=dict)
    certs: dict[CertKind, IssuedCertificate] = field(default_factory=dict)
    phone: Phone | None = None
    mobile_serials: dict[CertKind, str] = field(default_factory=dict)
    # Every certificate this holder was ever issued: serial → (DER, private key).
    history: dict[str, tuple[bytes, rsa.RSAPrivateKey]] = field(default_factory=dict)

    def issue(self, *kinds: CertKind) -> list[IssuedCertificate]:
        """New card certificates of these kinds (first issuance, or re-issue after a
        revocation), with fresh keys."""
        requests = []
        for kind in kinds:
            self.keys[kind] = self.pool.pop()
            requests.append(KeyRequest(kind, spki(self.keys[kind])))
        issued = self.services.issuance.issue(ISSUE, self.resident_id, requests)
        self.certs.update({c.kind: c for c in issued})
        self.history.update({c.serial: (c.der, self.keys[c.kind]) for c in issued})
        return issued

    def renew(self, kind: CertKind) -> IssuedCertificate:
        self.keys[kind] = self.pool.pop()
        (issued,) = self.services.issuance.renew(RENEW, self.resident_id,
                                                 [KeyRequest(kind, spki(self.keys[kind]))])
        self.certs[kind] = issued
        self.history[issued.serial] = (issued.der, self.keys[kind])
        return issued

    def serial(self, kind: CertKind = CertKind.CARD_SIGN) -> str:
        return self.certs[kind].serial

    def sign(self, document: Document | dict[str, Any], *, kind: CertKind = CertKind.CARD_SIGN,
             at: datetime | None = None) -> bytes:
        """A CMS SignedData over ``document`` made with this holder's ``kind`` key."""
        if kind.is_mobile:
            assert self.phone is not None
            der, key = self.phone.certs[kind], self.phone.keys[kind]
        else:
            der, key = self.certs[kind].der, self.keys[kind]
        return signed(document, der, key, at or self.services.clock.now())

    def sign_bytes(self, content: bytes, kind: CertKind = CertKind.CARD_SIGN) -> bytes:
        """A CMS SignedData over arbitrary bytes (not JSON)."""
        from jpki.protocol.cms import build_signed_data
        from tests.phone_kit import digest_info_signer

        return build_signed_data(content, self.certs[kind].der,
                                 digest_info_signer(self.keys[kind]),
                                 self.services.clock.now())

    def sign_as(self, serial: str, document: Document | dict[str, Any],
                at: datetime | None = None) -> bytes:
        """Signed with the key of any certificate this holder had (an old one, say)."""
        der, key = self.history[serial]
        return signed(document, der, key, at or self.services.clock.now())

    def move(self, address: str) -> None:
        """A move within Japan: the signing certificates are revoked (affiliationChanged)."""
        self.services.residents.record_event(RESIDENT_EVENT, self.resident_id,
                                             ResidentEvent(kind=EventKind.ADDRESS,
                                                           address=address))

    def enrol_phone(self, device: str = "pixel-1") -> Phone:
        """Mobile signing and auth certificates, applied for with the card's signing key."""
        phone = Phone(device)
        phone.new_keys(self.pool)
        challenge = self.services.mobile.new_challenge("application")[0]
        document = phone.application_document(challenge, self.serial())
        result = self.services.mobile.apply(self.sign(document))
        phone.device_id = result.device_id
        phone.certs = {c.kind: c.der for c in result.certificates}
        self.history.update({c.serial: (c.der, phone.keys[c.kind]) for c in result.certificates})
        self.mobile_serials = {c.kind: c.serial for c in result.certificates}
        self.phone = phone
        return phone


def new_holder(services: Services, pool: list[rsa.RSAPrivateKey], *, name: str = "山田 太郎",
               address: str = "東京都清瀬市中里一丁目２番３号",
               dv_support: bool = False) -> Holder:
    resident = services.residents.register(
        REGISTER_RESIDENT, name=name, birth_date=date(1990, 1, 2), sex=1, address=address,
        municipality_code="132217", dv_support=dv_support)
    holder = Holder(services=services, resident_id=resident.id, pool=pool)
    holder.issue(CertKind.CARD_AUTH, CertKind.CARD_SIGN)
    return holder
