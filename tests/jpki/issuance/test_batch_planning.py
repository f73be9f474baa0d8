"""The batch path plans a chunk's orders on plain values read with one statement per kind of
record (jpki.issuance.card.plan_many, jpki.ports.IssuanceRecords): it must refuse exactly what
one order at a time refuses, write nothing for a refused order, and see what an earlier order
of the same chunk wrote when a later one names the same resident, key or proofing record."""

from __future__ import annotations

from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import JpkiError
from jpki.issuance.service import IssuanceOrder, KeyRequest
from jpki.lifecycle.cards import CardSpec
from jpki.model import CertKind
from jpki.registry.proofing import Document, DocumentType, Evidence, Measure, Presence
from jpki.registry.residents import EventKind, ResidentEvent

STATION = Principal(actor="client:batch-station", kind=PrincipalKind.STATION)
OTHER_STATION = Principal(actor="client:other-station", kind=PrincipalKind.STATION)
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)
ISSUE_BATCH = authorize(STATION, Operation.CERTIFICATE_ISSUE_BATCH)
PIN_VISIT = Evidence(presence=Presence.IN_PERSON,
                     applicant_documents=(Document(DocumentType.MY_NUMBER_CARD),),
                     measures=frozenset({Measure.PIN_ENTRY}))


@pytest.fixture(scope="module")
def keys() -> list[bytes]:
    return [rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo) for _ in range(48)]


def _proofing(services, rid: str, station: Principal = STATION) -> str:
    return services.counter.record_proofing(
        authorize(station, Operation.PROOFING_RECORD), rid, PIN_VISIT).id


def _pair(keys: list[bytes], at: int) -> tuple[KeyRequest, ...]:
    return (KeyRequest(CertKind.CARD_AUTH, keys[at]), KeyRequest(CertKind.CARD_SIGN, keys[at + 1]))


def _outcome(result: list | JpkiError) -> str | int:
    return result.code if isinstance(result, JpkiError) else len(result)


def _scenarios(services, new_resident, keys: list[bytes], base: int) -> list[IssuanceOrder]:
    """One order per refusal the rules make, each on its own resident; the setup each needs
    (a used proofing record, a taken card number, a held certificate, a key in use) is made
    through the single path. ``base``: the first of the 24 keys this set uses."""
    k = iter(range(base, base + 12, 2))
    orders = []
    # the resident does not exist
    orders.append(IssuanceOrder("f" * 32, _pair(keys, next(k)), proofing_id="x"))
    # no proofing record named
    rid = new_resident()
    orders.append(IssuanceOrder(rid, _pair(keys, next(k))))
    # a record made for another resident, and one made by another station
    other = new_resident()
    orders.append(IssuanceOrder(rid, _pair(keys, next(k)),
                                proofing_id=_proofing(services, other)))
    orders.append(IssuanceOrder(rid, _pair(keys, next(k)),
                                proofing_id=_proofing(services, rid, OTHER_STATION)))
    # a record used already (by an issuance that succeeded): refused before the held
    # certificate is
    held = new_resident()
    used = _proofing(services, held)
    services.issuance.issue(ISSUE, held, [KeyRequest(CertKind.CARD_AUTH, keys[next(k)])],
                            card=CardSpec(number=f"TAKEN{base:05d}"), proofing_id=used)
    orders.append(IssuanceOrder(held, _pair(keys, base + 20), proofing_id=used))
    # a resident who holds a valid certificate of the kind already
    orders.append(IssuanceOrder(held, (KeyRequest(CertKind.CARD_AUTH, keys[base + 21]),),
                                proofing_id=_proofing(services, held)))
    # a card number that belongs to another resident's card
    fresh = new_resident()
    orders.append(IssuanceOrder(fresh, _pair(keys, base + 22),
                                card=CardSpec(number=f"TAKEN{base:05d}"),
                                proofing_id=_proofing(services, fresh)))
    # a public key another certificate holds
    orders.append(IssuanceOrder(fresh, (KeyRequest(CertKind.CARD_AUTH, keys[base + 8]),),
                                proofing_id=_proofing(services, fresh)))
    # a signing certificate for a child
    child = new_resident(name="山田 子", birth=date(2016, 5, 5))
    orders.append(IssuanceOrder(child, (KeyRequest(CertKind.CARD_SIGN, keys[base + 23]),),
                                proofing_id=_proofing(services, child)))
    # an ended resident record
    ended = new_resident()
    services.residents.record_event(authorize(Principal.local_operator("pytest"),
                                              Operation.RESIDENT_EVENT), ended,
                                    ResidentEvent(kind=EventKind.DEATH,
                                                  date=date(2026, 1, 1)))
    orders.append(IssuanceOrder(ended, _pair(keys, base + 20),
                                proofing_id=_proofing(services, rid)))
    return orders


def test_a_batch_refuses_what_single_issuances_refuse(services, new_resident, keys):
    single = _scenarios(services, new_resident, keys, 0)
    expected = []
    for order in single:
        try:
            expected.append(_outcome(services.issuance.issue(
                ISSUE, order.resident_id, list(order.requests), order.card,
                proofing_id=order.proofing_id)))
        except JpkiError as exc:
            expected.append(exc.code)
    assert all(isinstance(e, str) for e in expected), expected  # every one refused
    batch = _scenarios(services, new_resident, keys, 24)
    got = [_outcome(r) for r in services.issuance.issue_batch(ISSUE_BATCH, batch, chunk=32)]
    assert got == expected
    assert expected[:4] == ["resident.not_found", "proofing.required", "proofing.required",
                            "proofing.required"]


def test_orders_of_a_chunk_on_the_same_subjects_see_each_other(services, new_resident, keys):
    a, b = new_resident(), new_resident()
    pa, pb = _proofing(services, a), _proofing(services, b)
    orders = [
        IssuanceOrder(a, (KeyRequest(CertKind.CARD_AUTH, keys[0]),), proofing_id=pa),
        # the same resident again, its own record: planned after the first wrote its card and
        # intent, so it is issued on the same card rather than on a second new one
        IssuanceOrder(a, (KeyRequest(CertKind.CARD_SIGN, keys[1]),),
                      proofing_id=_proofing(services, a)),
        # the same key as the first order
        IssuanceOrder(b, (KeyRequest(CertKind.CARD_AUTH, keys[0]),), proofing_id=pb),
        # the same proofing record as the first order
        IssuanceOrder(a, (KeyRequest(CertKind.CARD_AUTH, keys[2]),), proofing_id=pa),
        # b again, with the record the key clash left unused
        IssuanceOrder(b, _pair(keys, 3), proofing_id=pb),
    ]
    results = services.issuance.issue_batch(ISSUE_BATCH, orders, chunk=8)
    assert [_outcome(r) for r in results] == [1, 1, "public_key.duplicate",
                                              "proofing.required", 2]
    first, second = results[0], results[1]
    assert isinstance(first, list) and isinstance(second, list)
    assert first[0].card_number == second[0].card_number
    with services.uow() as uow:
        services.audit.verify(uow)
        actions = [r.action for r in uow.audit.iterate()]
    assert actions.count("certificate.signing") == 4 == actions.count("certificate.issued")
