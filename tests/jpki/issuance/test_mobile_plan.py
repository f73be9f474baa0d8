"""The mobile certificates' planner (jpki.issuance.mobile, reference §2): each mobile
certificate ends exactly when the card certificate it is linked to ends, follows the holder's
card certificate of the same use, and is linked old→new, signing↔auth and to its card and
device; an order that breaks the rules jpki.mobile checked is a bug, refused outright. (End to
end, with the HSM: tests/jpki/mobile/test_mobile.py.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from jpki.access.principals import Principal
from jpki.errors import InternalError
from jpki.issuance.mobile import plan
from jpki.issuance.stages import CertificatePlan, CertificateRef, IssuancePlan
from jpki.issuance_port import DeviceOrder, LinkedRequest
from jpki.model import Certificate, CertKind, CertStatus, RegistrySource, Resident, ResidentStatus
from jpki.municipalities import load_seed

NOW = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)
DEVICE = "0123456789abcdef0123456789abcdef"
CITY = load_seed()[0]
HOLDER = Resident(id="r1", municipality_code=CITY.code, registry_source=RegistrySource.JUMINHYO,
                  status=ResidentStatus.ACTIVE, dv_support=False, created_at=NOW,
                  updated_at=NOW, name="山田 太郎", birth_date=date(1980, 1, 1), sex=1,
                  address="東京都")
KEY: Any = "a subject key"


def cert(id: int | None, serial: str, kind: CertKind, **changes: Any) -> Certificate:
    base = Certificate(
        id=id, serial=serial, kind=kind, resident_id="r1", card_id=1, ca_generation_id=1,
        status=CertStatus.ISSUED, not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=300), shard=CITY.code,
        registry_source=RegistrySource.JUMINHYO, public_key_sha256="00" * 32,
        created_at=NOW, updated_at=NOW)
    return replace(base, **changes)


# Card certificates ending at different instants: each mobile one must take its own card's.
CARD_SIGN = cert(1, "c1", CertKind.CARD_SIGN, not_after=datetime(2031, 5, 1, 14, 59, 59,
                                                                  tzinfo=UTC))
CARD_AUTH = cert(2, "c2", CertKind.CARD_AUTH, not_after=datetime(2030, 5, 1, 14, 59, 59,
                                                                  tzinfo=UTC))


def order(*requests: LinkedRequest) -> DeviceOrder:
    return DeviceOrder(resident=HOLDER, device_id=DEVICE, requests=requests)


def test_both_certificates_end_with_their_card_certificates_auth_first():
    old_sign = cert(5, "m5", CertKind.MOBILE_SIGN)
    planned = plan(order(LinkedRequest(CertKind.MOBILE_SIGN, KEY, linked_to=CARD_SIGN,
                                       predecessor=old_sign),
                         LinkedRequest(CertKind.MOBILE_AUTH, KEY, linked_to=CARD_AUTH)), CITY)
    assert planned == IssuancePlan(
        actor=Principal.holder("r1"), resident=HOLDER, municipality=CITY, card_id=None,
        card_number="", delivery_required=False, certificates=(
            CertificatePlan(kind=CertKind.MOBILE_AUTH, key=KEY, not_after=CARD_AUTH.not_after,
                            linked=CertificateRef(2, "c2"), device_id=DEVICE),
            CertificatePlan(kind=CertKind.MOBILE_SIGN, key=KEY, not_after=CARD_SIGN.not_after,
                            predecessor=CertificateRef(5, "m5"),
                            linked=CertificateRef(1, "c1"), device_id=DEVICE)))


def test_a_reissued_signing_certificate_is_linked_to_its_partner_and_predecessor():
    held_sign, auth = cert(5, "m5", CertKind.MOBILE_SIGN), cert(6, "m6", CertKind.MOBILE_AUTH)
    (only,) = plan(order(LinkedRequest(CertKind.MOBILE_SIGN, KEY, linked_to=CARD_SIGN,
                                       predecessor=held_sign, partner=auth)),
                   CITY).certificates
    assert (only.kind, only.not_after, only.predecessor, only.partner, only.linked) == (
        CertKind.MOBILE_SIGN, CARD_SIGN.not_after, CertificateRef(5, "m5"),
        CertificateRef(6, "m6"), CertificateRef(1, "c1"))


def test_an_unsaved_predecessor_or_partner_is_no_link():
    (only,) = plan(order(LinkedRequest(
        CertKind.MOBILE_SIGN, KEY, linked_to=CARD_SIGN,
        predecessor=cert(None, "m5", CertKind.MOBILE_SIGN),
        partner=cert(None, "m6", CertKind.MOBILE_AUTH))), CITY).certificates
    assert (only.predecessor, only.partner) == (None, None)


@pytest.mark.parametrize("requests", [
    (),
    (LinkedRequest(CertKind.MOBILE_SIGN, KEY, linked_to=CARD_SIGN),
     LinkedRequest(CertKind.MOBILE_SIGN, KEY, linked_to=CARD_SIGN)),
    (LinkedRequest(CertKind.CARD_SIGN, KEY, linked_to=CARD_SIGN),),
], ids=["none", "twice", "a card kind"])
def test_each_mobile_kind_at_most_once(requests):
    with pytest.raises(InternalError) as caught:
        plan(order(*requests), CITY)
    assert caught.value.detail == "a device order names each mobile kind at most once"


@pytest.mark.parametrize("card", [
    CARD_AUTH, cert(1, "c1", CertKind.MOBILE_SIGN), replace(CARD_SIGN, resident_id="r2"),
    replace(CARD_SIGN, id=None)], ids=["other use", "not a card", "another holder", "unsaved"])
def test_a_mobile_certificate_follows_its_holders_card_certificate_of_the_same_use(card):
    with pytest.raises(InternalError) as caught:
        plan(order(LinkedRequest(CertKind.MOBILE_AUTH, KEY, linked_to=CARD_AUTH),
                   LinkedRequest(CertKind.MOBILE_SIGN, KEY, linked_to=card)), CITY)
    assert caught.value.detail == ("a mobile certificate follows its holder's card certificate "
                                   "of the same use")
