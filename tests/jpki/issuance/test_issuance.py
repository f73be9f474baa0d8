"""Issuance and renewal: the validity rules of reference §1.4, linkage, and refusals.

Every test runs on SQLite and PostgreSQL with real SoftHSM signatures and a fixed clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import (
    CardConflict,
    CardExpired,
    CertificateNotRenewable,
    Conflict,
    DuplicatePublicKey,
    InvalidInput,
    KeyStoreUnavailable,
    RenewalOutsideWindow,
    UnderageSigning,
    WrongRole,
)
from jpki.issuance.service import KeyRequest
from jpki.lifecycle.cards import CardSpec
from jpki.model import CertKind, CertStatus, RevocationReason

pytestmark = pytest.mark.hsm

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)
ISSUE_BATCH = authorize(STATION, Operation.CERTIFICATE_ISSUE_BATCH)
RENEW = authorize(STATION, Operation.CERTIFICATE_RENEW)


def jst_end(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, 14, 59, 59, tzinfo=UTC)


def issue(services, rid, keys, kinds=(CertKind.CARD_AUTH, CertKind.CARD_SIGN), card=None):
    issued = services.issuance.issue(ISSUE, rid, [KeyRequest(k, keys[i])
                                                    for i, k in enumerate(kinds)], card)
    return {c.kind: c for c in issued}


def audit_head(services):
    with services.uow() as uow:
        return uow.audit.head()


def cert_count(services, rid):
    with services.uow() as uow:
        return len(uow.certificates.for_resident(rid))


# --- validity (§1.4) ----------------------------------------------------------------------


def test_valid_to_the_fifth_birthday_after_issuance(services, new_resident, subject_keys):
    rid = new_resident(birth=date(1990, 1, 2))  # issued 2026-11-27 JST
    certs = issue(services, rid, subject_keys)
    for cert in certs.values():
        assert cert.not_after == jst_end(date(2031, 1, 2))


def test_a_birthday_on_the_issuance_day_does_not_count(services, new_resident, subject_keys):
    rid = new_resident(birth=date(1990, 11, 27))  # issued on the 36th birthday
    certs = issue(services, rid, subject_keys)
    assert certs[CertKind.CARD_AUTH].not_after == jst_end(date(2031, 11, 27))


def test_february_29_birthdays_end_on_february_28(services, new_resident, subject_keys):
    rid = new_resident(birth=date(2000, 2, 29))
    certs = issue(services, rid, subject_keys)
    assert certs[CertKind.CARD_SIGN].not_after == jst_end(date(2031, 2, 28))


def test_capped_by_the_card_expiry(services, new_resident, subject_keys):
    rid = new_resident(birth=date(1990, 1, 2))
    certs = issue(services, rid, subject_keys, card=CardSpec(expires_on=date(2029, 5, 1)))
    for cert in certs.values():
        assert cert.not_after == jst_end(date(2029, 5, 1))


def test_signing_certificate_capped_by_the_auth_certificate(services, new_resident,
                                                             subject_keys, clock):
    rid = new_resident(birth=date(1990, 1, 2))
    auth = issue(services, rid, subject_keys, kinds=(CertKind.CARD_AUTH,),
                 card=CardSpec(expires_on=date(2036, 12, 31)))[CertKind.CARD_AUTH]
    clock.advance(days=2 * 365)  # the signing certificate alone, two years later
    sign = issue(services, rid, subject_keys[1:], kinds=(CertKind.CARD_SIGN,))[CertKind.CARD_SIGN]
    assert auth.not_after == jst_end(date(2031, 1, 2))
    assert sign.not_after == auth.not_after  # its own 5th birthday would be 2033


def test_issued_after_15_00_utc_counts_from_the_next_jst_day(services, new_resident,
                                                             subject_keys, clock):
    rid = new_resident(birth=date(1990, 11, 28))
    clock.set(datetime(2026, 11, 27, 15, 0, 0, tzinfo=UTC))  # 2026-11-28 00:00 JST
    certs = issue(services, rid, subject_keys)
    assert certs[CertKind.CARD_AUTH].not_after == jst_end(date(2031, 11, 28))


# --- who may hold what ----------------------------------------------------------------------


@pytest.mark.parametrize(("birth", "allowed"), [
    (date(2011, 11, 27), True),   # 15 today
    (date(2011, 11, 28), False),  # 15 tomorrow
    (date(2016, 5, 5), False),
])
def test_no_signing_certificate_under_15(services, new_resident, subject_keys, birth, allowed):
    rid = new_resident(birth=birth)
    head = audit_head(services)
    if allowed:
        issue(services, rid, subject_keys, kinds=(CertKind.CARD_SIGN,))
        return
    with pytest.raises(UnderageSigning):
        issue(services, rid, subject_keys)
    # Refused as a whole: not even the auth certificate of the same request, nothing audited.
    assert cert_count(services, rid) == 0 and audit_head(services) == head
    certs = issue(services, rid, subject_keys, kinds=(CertKind.CARD_AUTH,))
    assert set(certs) == {CertKind.CARD_AUTH}


def test_only_stations_issue(services, new_resident, subject_keys):
    rid = new_resident()
    operator = Principal(actor="client:op", kind=PrincipalKind.OPERATOR)
    with pytest.raises(WrongRole):
        services.issuance.issue(
            authorize(operator, Operation.CERTIFICATE_ISSUE),
            rid, [KeyRequest(CertKind.CARD_AUTH, subject_keys[0])])


def test_one_valid_certificate_per_kind(services, new_resident, subject_keys):
    rid = new_resident()
    issue(services, rid, subject_keys)
    head = audit_head(services)
    with pytest.raises(Conflict):
        issue(services, rid, subject_keys[2:], kinds=(CertKind.CARD_SIGN,))
    assert audit_head(services) == head


def test_keys_are_never_certified_twice(services, new_resident, subject_keys):
    rid, other = new_resident(), new_resident(name="佐藤 花子", sex=2)
    with pytest.raises(DuplicatePublicKey):
        issue(services, rid, [subject_keys[0], subject_keys[0]])
    issue(services, rid, subject_keys)
    head = audit_head(services)
    with pytest.raises(DuplicatePublicKey):
        issue(services, other, subject_keys[1:], kinds=(CertKind.CARD_AUTH,))
    assert audit_head(services) == head and cert_count(services, other) == 0


def test_card_that_contradicts_the_active_card_is_refused(services, new_resident,
                                                          subject_keys):
    rid = new_resident()
    issue(services, rid, subject_keys, kinds=(CertKind.CARD_AUTH,),
          card=CardSpec(number="CARD00000001", expires_on=date(2035, 1, 1)))
    with pytest.raises(CardConflict):
        issue(services, rid, subject_keys[1:], kinds=(CertKind.CARD_SIGN,),
              card=CardSpec(number="CARD00000002"))
    with pytest.raises(CardConflict):
        issue(services, rid, subject_keys[1:], kinds=(CertKind.CARD_SIGN,),
              card=CardSpec(expires_on=date(2034, 1, 1)))


def test_an_expired_card_is_refused(services, new_resident, subject_keys):
    rid = new_resident()
    with pytest.raises(CardExpired):
        issue(services, rid, subject_keys, card=CardSpec(expires_on=date(2026, 11, 26)))


def test_an_empty_request_is_refused(services, new_resident):
    with pytest.raises(InvalidInput):
        services.issuance.issue(ISSUE, new_resident(), [])


# --- linkage (§3.3) -------------------------------------------------------------------------


def test_pair_is_linked_signing_to_auth(services, new_resident, subject_keys, operator):
    rid = new_resident()
    certs = issue(services, rid, subject_keys)
    sign = services.certificates.show(
        authorize(operator, Operation.CERTIFICATE_READ), certs[CertKind.CARD_SIGN].serial)
    auth = services.certificates.show(
        authorize(operator, Operation.CERTIFICATE_READ), certs[CertKind.CARD_AUTH].serial)
    assert sign.sibling == auth.serial and auth.sibling == sign.serial
    assert sign.predecessor is None and sign.successor is None


# --- renewal (§1.4) -----------------------------------------------------------------------


@pytest.fixture
def renewable(services, new_resident, subject_keys):
    rid = new_resident(birth=date(1990, 1, 2))
    certs = issue(services, rid, subject_keys, card=CardSpec(expires_on=date(2037, 12, 31)))
    return rid, certs  # not_after 2031-01-02 14:59:59Z: the window opens 2030-10-01 15:00Z


def test_renewal_before_the_window_is_refused(services, renewable, subject_keys, clock):
    rid, _ = renewable
    clock.set(datetime(2030, 10, 1, 14, 59, 59, tzinfo=UTC))
    head = audit_head(services)
    with pytest.raises(RenewalOutsideWindow):
        services.issuance.renew(RENEW, rid, [KeyRequest(CertKind.CARD_AUTH, subject_keys[2])])
    assert audit_head(services) == head and cert_count(services, rid) == 2


def test_renewal_in_the_window_runs_to_the_sixth_birthday(services, renewable, subject_keys,
                                                           clock, operator):
    rid, old = renewable
    clock.set(datetime(2030, 10, 1, 15, 0, 0, tzinfo=UTC))  # the window's first second
    new = {c.kind: c for c in services.issuance.renew(RENEW, rid, [
        KeyRequest(CertKind.CARD_AUTH, subject_keys[2]),
        KeyRequest(CertKind.CARD_SIGN, subject_keys[3])])}
    for kind in (CertKind.CARD_AUTH, CertKind.CARD_SIGN):
        assert new[kind].not_after == jst_end(date(2036, 1, 2))
        assert new[kind].predecessor == old[kind].serial and new[kind].renewal
        before = services.certificates.show(
            authorize(operator, Operation.CERTIFICATE_READ), old[kind].serial)
        assert before.status == "revoked" and before.revocation_reason == "superseded"
        assert before.successor == new[kind].serial
    sign = services.certificates.show(
        authorize(operator, Operation.CERTIFICATE_READ), new[CertKind.CARD_SIGN].serial)
    assert sign.sibling == new[CertKind.CARD_AUTH].serial


def test_renewal_on_the_last_day_and_after_expiry(services, renewable, subject_keys, clock):
    rid, _ = renewable
    clock.set(datetime(2031, 1, 2, 14, 59, 59, tzinfo=UTC))
    (cert,) = services.issuance.renew(RENEW, rid, [KeyRequest(CertKind.CARD_AUTH,
                                                                subject_keys[2])])
    assert cert.renewal
    clock.set(datetime(2031, 1, 2, 15, 0, 0, tzinfo=UTC))  # the signing cert has now expired
    with pytest.raises(CertificateNotRenewable):
        services.issuance.renew(RENEW, rid, [KeyRequest(CertKind.CARD_SIGN, subject_keys[3])])


def test_renew_by_serial_only_the_current_certificate(services, renewable, subject_keys, clock):
    _, old = renewable
    clock.set(datetime(2030, 12, 1, tzinfo=UTC))
    serial = old[CertKind.CARD_SIGN].serial
    renewed = services.issuance.renew_serial(RENEW, serial, subject_keys[2])
    assert renewed.predecessor == serial
    with pytest.raises(CertificateNotRenewable):
        services.issuance.renew_serial(RENEW, serial, subject_keys[3])


def test_reissue_after_revocation_links_old_to_new(services, renewable, subject_keys, operator):
    rid, old = renewable
    services.revocation.revoke(
        authorize(Principal(actor="client:op", kind=PrincipalKind.OPERATOR),
                  Operation.CERTIFICATE_REVOKE),
        old[CertKind.CARD_SIGN].serial, RevocationReason.KEY_COMPROMISE)
    new = issue(services, rid, subject_keys[2:], kinds=(CertKind.CARD_SIGN,))[CertKind.CARD_SIGN]
    assert new.predecessor == old[CertKind.CARD_SIGN].serial and not new.renewal
    auth = services.certificates.show(
        authorize(operator, Operation.CERTIFICATE_READ), old[CertKind.CARD_AUTH].serial)
    assert auth.sibling == new.serial


# --- the pipeline: intent before signature ------------------------------------------------


class FailingKeys:
    """A key store whose signing key cannot be reached (an HSM outage)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def rsa_key(self, label):
        raise RuntimeError("token removed")

    def sign_many(self, label, messages):
        raise RuntimeError("token removed")


def test_hsm_failure_abandons_the_recorded_intent(services, new_resident, subject_keys,
                                                  operator):
    rid = new_resident()
    services.issuance._keys = FailingKeys(services.keys)
    with pytest.raises(KeyStoreUnavailable):
        issue(services, rid, subject_keys)
    with services.uow() as uow:
        certs = uow.certificates.for_resident(rid)
        assert len(certs) == 2  # the intents were recorded before the HSM was asked
        assert {c.status for c in certs} == {CertStatus.ABANDONED}
        # Treated as revoked: J-LIS "unspecified: destroyed before delivery" (§3.2).
        assert {c.revocation_reason for c in certs} == {RevocationReason.UNSPECIFIED}
        actions = [r.action for r in uow.audit.iterate()]
    assert actions.count("certificate.signing") == 2
    assert actions.count("certificate.abandoned") == 2
    assert "certificate.issued" not in actions
    # The same keys can be certified afterwards: abandoned intents do not hold them.
    services.issuance._keys = services.keys
    assert len(issue(services, rid, subject_keys)) == 2


def test_a_crash_after_the_intent_leaves_a_known_serial(services, new_resident, subject_keys,
                                                        clock, monkeypatch):
    rid = new_resident()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # a BaseException: nothing in the pipeline catches it

    monkeypatch.setattr("jpki.issuance.service.sign_tbs", crash)
    with pytest.raises(KeyboardInterrupt):
        issue(services, rid, subject_keys, kinds=(CertKind.CARD_AUTH,))
    with services.uow() as uow:
        (pending,) = uow.certificates.for_resident(rid)
    assert pending.status is CertStatus.PENDING and pending.tbs_der
    assert services.issuance.abandon_stale(
        authorize(Principal.local_operator("t"), Operation.PENDING_ABANDON),
        timedelta(minutes=5)) == []
    clock.advance(minutes=6)
    assert services.issuance.abandon_stale(
        authorize(Principal.local_operator("t"), Operation.PENDING_ABANDON),
        timedelta(minutes=5)) == [pending.serial]


def test_signed_certificate_verifies_under_the_ca_key(services, new_resident, subject_keys):
    rid = new_resident()
    certs = issue(services, rid, subject_keys)
    with services.uow() as uow:
        gens = {g.ca: g for g in uow.cas.generations()}
    for kind, cert in certs.items():
        parsed = x509.load_der_x509_certificate(cert.der)
        root = x509.load_der_x509_certificate(gens[kind.ca].certificate_der)
        root.public_key().verify(parsed.signature, parsed.tbs_certificate_bytes,
                                 padding.PKCS1v15(), hashes.SHA256())


# --- bulk issuance -----------------------------------------------------------------------------


def test_issue_batch_issues_each_order_and_refuses_bad_ones_alone(services, new_resident,
                                                                  subject_keys, operator):
    from jpki.errors import JpkiError
    from jpki.issuance.service import IssuanceOrder

    adults = [new_resident(name=f"山田 {i}") for i in range(3)]
    child = new_resident(name="山田 子", birth=date(2016, 5, 5))
    orders = [
        IssuanceOrder(adults[0], (KeyRequest(CertKind.CARD_AUTH, subject_keys[0]),
                                  KeyRequest(CertKind.CARD_SIGN, subject_keys[1]))),
        # refused after its card was created: the savepoint must take the card back
        IssuanceOrder(child, (KeyRequest(CertKind.CARD_AUTH, subject_keys[2]),
                              KeyRequest(CertKind.CARD_SIGN, subject_keys[3])),
                      CardSpec(number="CHILDCARD001")),
        IssuanceOrder(adults[1], (KeyRequest(CertKind.CARD_AUTH, subject_keys[1]),)),  # dup key
        IssuanceOrder(adults[2], (KeyRequest(CertKind.CARD_AUTH, subject_keys[4]),
                                  KeyRequest(CertKind.CARD_SIGN, subject_keys[5]))),
        IssuanceOrder("0" * 32, (KeyRequest(CertKind.CARD_AUTH, subject_keys[6]),)),
    ]
    results = services.issuance.issue_batch(ISSUE_BATCH, orders, chunk=2)
    assert [type(r).__name__ if isinstance(r, JpkiError) else len(r) for r in results] == [
        2, "UnderageSigning", "DuplicatePublicKey", 2, "ResidentNotFound"]
    with services.uow() as uow:
        assert uow.cards.get_by_number("CHILDCARD001") is None
        assert uow.certificates.for_resident(child) == []
        actions = [r.action for r in uow.audit.iterate()]
    assert actions.count("certificate.signing") == 4 and actions.count("certificate.issued") == 4
    for issued in (results[0], results[3]):
        assert isinstance(issued, list)
        sign = next(c for c in issued if c.kind is CertKind.CARD_SIGN)
        auth = next(c for c in issued if c.kind is CertKind.CARD_AUTH)
        view = services.certificates.show(
            authorize(operator, Operation.CERTIFICATE_READ), sign.serial)
        assert view.status == "good" and view.sibling == auth.serial
        x509.load_der_x509_certificate(sign.der)
    with services.uow() as uow:
        services.audit.verify(uow)


def test_issue_batch_needs_an_issuer() -> None:
    with pytest.raises(WrongRole):
        authorize(Principal(actor="x", kind=PrincipalKind.OPERATOR),
                  Operation.CERTIFICATE_ISSUE_BATCH)


def test_hsm_failure_in_a_batch_abandons_its_intents(services, new_resident, subject_keys):
    from jpki.errors import KeyStoreUnavailable as Unavailable
    from jpki.issuance.service import IssuanceOrder

    rid = new_resident()
    services.issuance._keys = FailingKeys(services.keys)
    (result,) = services.issuance.issue_batch(ISSUE_BATCH, [IssuanceOrder(
        rid, (KeyRequest(CertKind.CARD_AUTH, subject_keys[0]),))])
    assert isinstance(result, Unavailable)
    with services.uow() as uow:
        (cert,) = uow.certificates.for_resident(rid)
    assert cert.status is CertStatus.ABANDONED


class KilledOnce:
    """The key store's bulk signing, whose child process is killed (SIGKILL) just before the
    ``at``-th bulk request reaches it — a crash of the signing process in the middle of a
    batch."""

    def __init__(self, real, at: int) -> None:
        self._real = real
        self._at = at
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._real, name)

    def sign_many(self, label, messages):
        import os
        import signal

        self.calls += 1
        if self.calls == self._at:
            process = self._real._bulk._process
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            # A child that dies between two requests is simply replaced; this one must die
            # under the request: the store is made to write to it, as it would have.
            process.poll = lambda: None
        return self._real.sign_many(label, messages)


def test_a_signing_process_killed_mid_batch_abandons_that_chunk_only(
        services, new_resident, subject_keys, token_config, operator):
    """Bulk signing in its own process (hsm.bulk_signer, what `jpki serve` uses on SoftHSM):
    every certificate of the batch verifies; when the process dies under a chunk, that chunk's
    orders are refused as the HSM being unavailable and their intents abandoned (reported as
    revoked), the other chunks are issued by a new process, and nothing is signed twice."""
    from dataclasses import replace

    from hsm import KeyStore
    from jpki.errors import KeyStoreUnavailable as Unavailable
    from jpki.issuance.service import IssuanceOrder

    residents = [new_resident() for _ in range(3)]
    orders = [IssuanceOrder(rid, (KeyRequest(CertKind.CARD_AUTH, subject_keys[2 * i]),
                                  KeyRequest(CertKind.CARD_SIGN, subject_keys[2 * i + 1])))
              for i, rid in enumerate(residents)]
    with KeyStore(replace(token_config, bulk_process=True)) as bulk:
        keys = KilledOnce(bulk, at=3)  # chunk 1: calls 1–2 (auth CA, sign CA); chunk 2: 3–4
        services.issuance._keys = keys
        try:
            results = services.issuance.issue_batch(ISSUE_BATCH, orders, chunk=1)
        finally:
            services.issuance._keys = services.keys
    assert isinstance(results[0], list) and isinstance(results[2], list)
    assert isinstance(results[1], Unavailable)
    with services.uow() as uow:
        abandoned = uow.certificates.for_resident(residents[1])
        serials = [c.serial for r in (results[0], results[2]) for c in r]
    assert {c.status for c in abandoned} == {CertStatus.ABANDONED}
    assert len(serials) == len(set(serials)) == 4
    for issued in (results[0], results[2]):
        for cert in issued:
            view = services.certificates.show(
                authorize(operator, Operation.CERTIFICATE_READ), cert.serial)
            assert view.status == "good"
            x509.load_der_x509_certificate(cert.der)
    with services.uow() as uow:
        services.audit.verify(uow)
