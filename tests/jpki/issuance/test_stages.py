"""The stages of an issuance (jpki.issuance.stages): frozen values, and an intent that can be
signed once, and only once its record has committed (architecture §3.3).

The first tests need nothing but Python; the others run the real pipeline on SQLite and
PostgreSQL with SoftHSM signatures.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
from cryptography import x509

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.errors import KeyStoreUnavailable
from jpki.issuance import card
from jpki.issuance.stages import (
    IntentAlreadySigned,
    IntentNotRecorded,
    IssuanceOrder,
    KeyRequest,
    RedeemToken,
)
from jpki.model import CertKind, CertStatus

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)

# --- the token --------------------------------------------------------------------------------


def test_a_token_is_redeemable_once_and_only_once_armed():
    token = RedeemToken()
    with pytest.raises(IntentNotRecorded):
        token.redeem("0a")  # its record has not committed
    assert not token.redeemed
    token.arm()
    token.redeem("0a")
    assert token.redeemed
    with pytest.raises(IntentAlreadySigned):
        token.redeem("0a")
    token.arm()  # arming again does not make it redeemable again
    with pytest.raises(IntentAlreadySigned):
        token.redeem("0a")


def test_of_threads_racing_to_redeem_one_token_exactly_one_wins():
    token = RedeemToken()
    token.arm()
    start = threading.Barrier(8)
    won: list[int] = []
    refused: list[int] = []

    def race(n: int) -> None:
        start.wait()
        try:
            token.redeem("0a")
            won.append(n)
        except IntentAlreadySigned:
            refused.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7


def test_the_request_stages_are_frozen(subject_keys):
    order = IssuanceOrder("r" * 32, (KeyRequest(CertKind.CARD_SIGN, subject_keys[0]),
                                     KeyRequest(CertKind.CARD_AUTH, subject_keys[1])))
    validated = card.validate(order)
    # Auth first: the signing certificate is capped by it (reference §1.4).
    assert [k.kind for k in validated.keys] == [CertKind.CARD_AUTH, CertKind.CARD_SIGN]
    for value, name in ((order, "renew"), (validated, "keys"), (validated.keys[0], "kind")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, None)


# --- the pipeline -----------------------------------------------------------------------------


class CountingKeys:
    """The real key store, counting the RSA signatures asked of the HSM."""

    def __init__(self, real):
        self._real = real
        self.signatures = 0
        self.on_sign = None
        self._lock = threading.Lock()  # a pair is signed on two threads at once

    def __getattr__(self, name):
        return getattr(self._real, name)

    def rsa_key(self, label):
        key, keys = self._real.rsa_key(label), self

        class Counted:
            def sign(self, data, padding, algorithm):
                with keys._lock:
                    keys.signatures += 1
                    if keys.on_sign is not None:
                        keys.on_sign()
                return key.sign(data, padding, algorithm)

        return Counted()


def _record(services, clock, rid, keys, *, commit=True):
    """Steps 1–4 of the service's pipeline, by hand: a recorded intent (committed or not)."""
    issuance = services.issuance
    validated = card.validate(IssuanceOrder(rid, tuple(
        KeyRequest(kind, key) for kind, key in keys)))
    with services.uow() as uow:
        now = clock.now()
        recorded = issuance._record(uow, card.plan(uow, ISSUE, validated, now,
                                                   issuance._municipality), now)
        issuance._arm_on_commit(uow, [recorded])
        if commit:
            uow.commit()
    return recorded


def _statuses(services, rid):
    with services.uow() as uow:
        return {c.serial: c.status for c in uow.certificates.for_resident(rid)}


@pytest.mark.hsm
def test_signing_the_same_intent_twice_is_refused_and_signs_nothing(
        services, new_resident, subject_keys, clock):
    rid = new_resident()
    recorded = _record(services, clock, rid, [(CertKind.CARD_AUTH, subject_keys[0]),
                                              (CertKind.CARD_SIGN, subject_keys[1])])
    keys = services.issuance._keys = CountingKeys(services.keys)
    (signed,) = services.issuance._sign_all([recorded])
    assert keys.signatures == 2
    with pytest.raises(IntentAlreadySigned):
        services.issuance._sign_all([recorded])
    with pytest.raises(IntentAlreadySigned):
        services.issuance._sign_all([recorded], parallel=True)
    assert keys.signatures == 2  # the HSM was not asked again
    # The refused attempt abandoned nothing: the first signing still completes the issuance.
    assert set(_statuses(services, rid).values()) == {CertStatus.PENDING}
    with services.uow() as uow:
        services.issuance._store(uow, [signed], clock.now())
        uow.commit()
    assert set(_statuses(services, rid).values()) == {CertStatus.ISSUED}
    for der, intent in zip(signed.certificates, recorded.intents, strict=True):
        assert x509.load_der_x509_certificate(der).tbs_certificate_bytes == intent.draft.tbs


@pytest.mark.hsm
def test_an_intent_whose_record_did_not_commit_is_never_signed(services, new_resident,
                                                                subject_keys, clock):
    rid = new_resident()
    recorded = _record(services, clock, rid, [(CertKind.CARD_AUTH, subject_keys[0])],
                       commit=False)
    keys = services.issuance._keys = CountingKeys(services.keys)
    with pytest.raises(IntentNotRecorded):
        services.issuance._sign_all([recorded])
    assert keys.signatures == 0
    assert _statuses(services, rid) == {}  # rolled back: the database knows of nothing


@pytest.mark.hsm
def test_the_intent_and_its_audit_record_are_durable_before_the_hsm_signs(
        services, new_resident, subject_keys):
    rid = new_resident()
    keys = services.issuance._keys = CountingKeys(services.keys)
    seen: list[tuple[dict[str, CertStatus], list[str]]] = []

    def look_from_another_transaction():
        with services.uow() as uow:
            rows = {c.serial: c.status for c in uow.certificates.for_resident(rid)}
            signing = [r.subject for r in uow.audit.iterate()
                       if r.action == "certificate.signing"]
        seen.append((rows, signing))

    keys.on_sign = look_from_another_transaction
    issued = services.issuance.issue(ISSUE, rid, [
        KeyRequest(CertKind.CARD_AUTH, subject_keys[0]),
        KeyRequest(CertKind.CARD_SIGN, subject_keys[1])])
    serials = {c.serial for c in issued}
    assert len(seen) == 2
    for rows, signing in seen:
        assert rows == dict.fromkeys(serials, CertStatus.PENDING)
        assert serials <= set(signing)


@pytest.mark.hsm
def test_a_failed_signature_of_a_pair_abandons_both_intents(services, new_resident,
                                                             subject_keys, clock):
    rid = new_resident()
    keys = services.issuance._keys = CountingKeys(services.keys)

    def fail_the_second():
        if keys.signatures == 2:
            raise RuntimeError("token removed")

    keys.on_sign = fail_the_second
    with pytest.raises(KeyStoreUnavailable):
        services.issuance.issue(ISSUE, rid, [
            KeyRequest(CertKind.CARD_AUTH, subject_keys[0]),
            KeyRequest(CertKind.CARD_SIGN, subject_keys[1])])
    assert set(_statuses(services, rid).values()) == {CertStatus.ABANDONED}
