"""The mobile certificates' planner (reference §2; architecture §4.5): a verified device order
becomes certificates that end exactly when the card certificate they are linked to ends.

What makes an application acceptable — the card's signature, the challenge, the proofs of
possession, one device per person — is jpki.mobile's to check (it answers the
:class:`~jpki.issuance_port.DeviceOrder`); what the certificates are follows here.
"""

from __future__ import annotations

from jpki.access.principals import Principal
from jpki.errors import InternalError
from jpki.issuance.card import issuing_order
from jpki.issuance.stages import CertificatePlan, CertificateRef, IssuancePlan
from jpki.issuance_port import DeviceOrder
from jpki.model import Certificate, CertKind
from jpki.municipalities import Municipality

# The card certificate a mobile certificate follows (reference §2).
_CARD_OF = {CertKind.MOBILE_SIGN: CertKind.CARD_SIGN, CertKind.MOBILE_AUTH: CertKind.CARD_AUTH}


def plan(order: DeviceOrder, municipality: Municipality) -> IssuancePlan:
    kinds = [r.kind for r in order.requests]
    if not kinds or len(set(kinds)) != len(kinds) or any(k not in _CARD_OF for k in kinds):
        raise InternalError("a device order names each mobile kind at most once")
    certificates = []
    for request in sorted(order.requests, key=lambda r: issuing_order(r.kind)):
        card = request.linked_to
        if card.kind is not _CARD_OF[request.kind] or card.resident_id != order.resident.id \
                or card.id is None:
            raise InternalError("a mobile certificate follows its holder's card certificate "
                                "of the same use")
        certificates.append(CertificatePlan(
            kind=request.kind, key=request.key,
            # reference §2: the expiry follows the card certificate exactly.
            not_after=card.not_after,
            predecessor=_ref(request.predecessor), partner=_ref(request.partner),
            linked=_ref(card), device_id=order.device_id))
    # The holder acts: the application is signed with their card (architecture §1).
    return IssuancePlan(actor=Principal.holder(order.resident.id), resident=order.resident,
                        municipality=municipality, card_id=None, card_number="",
                        certificates=tuple(certificates), delivery_required=False)


def _ref(cert: Certificate | None) -> CertificateRef | None:
    return CertificateRef(cert.id, cert.serial) if cert is not None and cert.id is not None \
        else None
