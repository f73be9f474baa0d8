"""What a holder signs for a relying party (reference §3.4): a consent to receive the latest basic
4 information, and its withdrawal.

Both are signed with a card or phone *signing* key (a CMS SignedData, jpki.protocol.cms). A
consent is submitted by the relying party (``POST /v1/basic4``), a withdrawal by the holder
(``POST /v1/consents/withdrawals``). What the CA checks against its records — the signer, the
relying party's purposes, the expiry's distance, the nonce's novelty — is
jpki.relying_parties.consents'; a document here is only well formed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from jpki.errors import InvalidInput
from jpki.protocol.documents import Document

ITEMS = ("name", "birth_date", "sex", "address")  # the basic 4 information, in this order
# The identifiers and codes the CA makes or relying parties declare, as the documents carry them
# (anchored for JSON Schema as well; checked here with fullmatch, which also refuses a final
# line feed that "$" would let through).
RP_ID = re.compile(r"^rp_[0-9a-f]{16}$")
PURPOSE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")  # chosen by the relying party or the holder
CONSENT_ID = re.compile(r"^cs_[0-9a-f]{24}$")


class ConsentInvalid(InvalidInput):
    code = "consent.invalid"
    title = "The consent statement is not valid"


def _check_nonce(doc: Document, nonce: str) -> None:
    if not NONCE.fullmatch(nonce):
        doc.refuse("nonce is 16 to 128 of A-Z a-z 0-9 _ -", "nonce")


@dataclass(frozen=True)
class ConsentStatement(Document):
    """The holder lets ``relying_party`` receive ``items`` for ``purpose`` until ``expires_at``.

    ``items`` are kept in the order of :data:`ITEMS`; ``expires_at`` in UTC.
    """

    TYPE: ClassVar[str] = "jpki-rp-consent/1"
    error: ClassVar[type[InvalidInput]] = ConsentInvalid

    relying_party: str
    items: tuple[str, ...]
    purpose: str  # one of the relying party's declared purposes
    nonce: str  # chosen by the relying party: a statement is accepted once
    expires_at: datetime

    def __post_init__(self) -> None:
        if not RP_ID.fullmatch(self.relying_party):
            self.refuse("relying_party is a relying party id", "relying_party")
        items = tuple(self.items)
        if not items or any(i not in ITEMS for i in items) or len(set(items)) != len(items):
            self.refuse("items are distinct names among name, birth_date, sex, address",
                        "items")
        object.__setattr__(self, "items", tuple(i for i in ITEMS if i in items))
        if not PURPOSE.fullmatch(self.purpose):
            self.refuse("purpose is a purpose code", "purpose")
        try:
            if self.expires_at.tzinfo is None or self.expires_at.utcoffset() is None:
                raise ValueError("no time zone")
            object.__setattr__(self, "expires_at", self.expires_at.astimezone(UTC))
        except (ValueError, OverflowError) as exc:  # OverflowError: past year 9999 in UTC
            raise ConsentInvalid("expires_at is an ISO 8601 instant with a time zone",
                                 field="expires_at") from exc
        _check_nonce(self, self.nonce)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "relying_party": self.relying_party,
                "items": list(self.items), "purpose": self.purpose, "nonce": self.nonce,
                "expires_at": self.expires_at.isoformat().replace("+00:00", "Z")}

    @classmethod
    def parse(cls, data: bytes | Mapping[str, Any]) -> Self:
        m = cls.members(data, ("relying_party", "items", "purpose", "nonce", "expires_at"))
        relying_party = m.text("relying_party")
        items = m.texts("items", len(ITEMS),
                        "items are distinct names among name, birth_date, sex, address")
        purpose = m.text("purpose")
        try:
            expires_at = datetime.fromisoformat(m.text("expires_at", 64))
        except (ValueError, ConsentInvalid) as exc:
            raise ConsentInvalid("expires_at is an ISO 8601 instant with a time zone",
                                 field="expires_at") from exc
        return cls(relying_party=relying_party, items=items, purpose=purpose,
                   nonce=m.text("nonce"), expires_at=expires_at)


@dataclass(frozen=True)
class ConsentWithdrawal(Document):
    """The holder withdraws consent ``consent_id`` (signed with any of their signing keys)."""

    TYPE: ClassVar[str] = "jpki-rp-consent-withdrawal/1"
    error: ClassVar[type[InvalidInput]] = ConsentInvalid

    consent_id: str
    nonce: str  # chosen by the holder

    def __post_init__(self) -> None:
        _check_nonce(self, self.nonce)
        if not CONSENT_ID.fullmatch(self.consent_id):
            self.refuse("consent_id is a consent id", "consent_id")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "consent_id": self.consent_id, "nonce": self.nonce}

    @classmethod
    def parse(cls, data: bytes | Mapping[str, Any]) -> Self:
        m = cls.members(data, ("consent_id", "nonce"))
        return cls(consent_id=m.text("consent_id"), nonce=m.text("nonce"))
