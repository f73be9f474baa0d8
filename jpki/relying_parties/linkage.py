"""Linkage for relying parties (紐付け, reference §3.3; POST /v1/linkage, scope ``linkage``).

Given the serial of a certificate the relying party already knows, the answer is:

- ``successors`` — the old→new links (証明書新旧紐付け情報) from that certificate through every
  renewal and re-issue, oldest first; only issued certificates count (an intent still being
  signed, or abandoned, is not a successor);
- ``current_serial`` — the newest of that chain when it is valid now (issued, in its validity,
  not revoked or held), otherwise none: a chain that ends in a revocation has no current
  certificate until a new one is issued;
- ``sibling`` and ``current_sibling`` — the signing↔auth partner (証明書紐付け情報) of the given
  certificate and of the current one, on the same card or phone.

The chain stays in one form factor: a card certificate's successors are card certificates, a
mobile certificate's are the mobile certificates of later devices (jpki.mobile.service links them
old→new).

**Never a way to enumerate people.** Every call carries evidence that the relying party has seen
a valid signature by the certificate it asks about, and is refused otherwise:

- ``signed_data`` — a CMS SignedData made with that certificate's key: the signature the relying
  party verified (any content: a contract, a login challenge). Its signer certificate must be
  byte for byte the one we issued with that serial and its signing time inside the certificate's
  valid life (jpki.relying_parties.holder_signatures). Content-agnostic on purpose — binding
  it to a statement
  naming the relying party would mean the holder signs something extra for every verifier;
  what it proves is what the issue asks: this relying party holds a signature by that key.
- ``consent_id`` — a consent this relying party holds (jpki.relying_parties.consents), not withdrawn
or expired:
  it covers the certificate that signed it and that certificate's successors (which the
  basic 4 service disclosed to it as the current serial).

Every refusal is the same whether or not the serial exists, and is checked before the serial is
looked up: evidence that does not verify is ``cms.invalid``, evidence by another certificate
or one we did not issue is ``linkage.evidence_refused``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from jpki.access.authz import Operation
from jpki.audit import AuditLog
from jpki.errors import Forbidden, InvalidInput
from jpki.model import Certificate, StatusRow
from jpki.ports import Clock, LineReads
from jpki.relying_parties.consents import load_standing_consent
from jpki.relying_parties.holder_signatures import (
    signed_while_valid,
    valid_at,
    verify_holder_signature,
)
from jpki.relying_parties.ports import LinkageUnitOfWorkFactory
from jpki.relying_parties.service import RpContext
from jpki.relying_parties.status_lookup import status_for
from jpki.serials import parse_serial

MAX_CHAIN = 64  # renewals and re-issues of one certificate line; a bound against cycles


class LinkageEvidenceMissing(InvalidInput):
    code = "linkage.evidence_missing"
    title = "Send the signature you verified (signed_data) or a consent (consent_id)"


class LinkageEvidenceRefused(Forbidden):
    code = "linkage.evidence_refused"
    title = "The evidence does not show a valid signature by this certificate"


@dataclass(frozen=True)
class LinkageAnswer:
    serial: str
    form: str
    usage: str
    status: str
    successors: list[str]
    current_serial: str | None
    sibling: str | None
    current_sibling: str | None


def successors_of(uow: LineReads, cert: Certificate) -> list[Certificate]:
    """The issued successors of ``cert``, oldest first (old→new links)."""
    chain: list[Certificate] = []
    seen = {cert.id}
    current = cert
    for _ in range(MAX_CHAIN):
        nxt = uow.certificates.issued_successor_of(current.id or 0)
        if nxt is None or nxt.id in seen:
            break
        chain.append(nxt)
        seen.add(nxt.id)
        current = nxt
    return chain


def sibling_serial(uow: LineReads, cert: Certificate | None) -> str | None:
    if cert is None or cert.sibling_id is None:
        return None
    other = uow.certificates.get(cert.sibling_id)
    return other.serial if other is not None else None


class LinkageService:
    def __init__(self, uow_factory: LinkageUnitOfWorkFactory, clock: Clock,
                 audit: AuditLog) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    def link(self, ctx: RpContext[Literal[Operation.RP_LINKAGE]], purpose: str, serial: str, *,
             signed_data: bytes | None = None, consent_id: str | None = None) -> LinkageAnswer:
        ctx.grant.require(Operation.RP_LINKAGE)
        purpose = ctx.require_purpose(purpose)
        wanted = parse_serial(serial)
        if (signed_data is None) == (consent_id is None):
            raise LinkageEvidenceMissing("send exactly one of signed_data and consent_id",
                                         field="evidence")
        with self._uow() as uow:
            now = self._clock.now()
            if signed_data is not None:
                signature = verify_holder_signature(uow, signed_data)
                if signature.signer_serial != wanted or not signed_while_valid(signature, now):
                    raise LinkageEvidenceRefused("the signature was not made by this "
                                                 "certificate while it was valid")
                cert = signature.certificate
                assert cert is not None  # signed_while_valid checked it
                chain = successors_of(uow, cert)
                evidence = {"evidence": "signature", "consent": None,
                            "evidence_sha256": hashlib.sha256(signed_data).hexdigest()}
            else:
                assert consent_id is not None
                consent = load_standing_consent(uow, ctx.rp_id, consent_id, now)
                signer = uow.certificates.get(consent.signer_id)
                if signer is None:
                    raise LinkageEvidenceRefused("the consent does not cover this certificate")
                line = [signer, *successors_of(uow, signer)]
                at = next((i for i, c in enumerate(line) if c.serial == wanted), None)
                if at is None:
                    raise LinkageEvidenceRefused("the consent does not cover this certificate")
                cert, chain = line[at], line[at + 1:]
                evidence = {"evidence": "consent", "consent": consent.id,
                            "evidence_sha256": None}
            last = chain[-1] if chain else cert
            current = last if valid_at(last, now) else None
            answer = LinkageAnswer(
                serial=cert.serial, form="mobile" if cert.kind.is_mobile else "card",
                usage="sign" if cert.kind.is_signing else "auth",
                status=status_for(cert.serial, StatusRow.of(cert), now).status,
                successors=[c.serial for c in chain],
                current_serial=current.serial if current else None,
                sibling=sibling_serial(uow, cert), current_sibling=sibling_serial(uow, current))
            self._audit.record(uow, actor=ctx.actor, action="rp.linkage", subject=cert.serial,
                               payload={"relying_party": ctx.rp_id, "purpose": purpose,
                                        "current": answer.current_serial, **evidence})
            uow.commit()
        return answer
