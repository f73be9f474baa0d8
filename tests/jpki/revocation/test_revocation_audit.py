"""Revocation rules (RFC 5280 §5.3.1, reference §3.2) and the audit chain."""

from __future__ import annotations

import contextlib
import json
import threading

import pytest
from sqlalchemy import text

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import (
    AuditChainBroken,
    CertificateNotFound,
    InvalidReason,
    MissingScope,
    WrongRole,
)
from jpki.issuance.service import KeyRequest
from jpki.model import CertKind, RevocationReason
from jpki.registry.residents import EventKind, ResidentEvent

pytestmark = pytest.mark.hsm

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)
OPERATOR = Principal(actor="client:test-operator", kind=PrincipalKind.OPERATOR)
REVOKE = authorize(OPERATOR, Operation.CERTIFICATE_REVOKE)


@pytest.fixture
def serial(services, new_resident, subject_keys):
    rid = new_resident()
    (cert,) = services.issuance.issue(ISSUE, rid, [KeyRequest(CertKind.CARD_AUTH,
                                                                subject_keys[0])])
    return cert.serial


def test_revocation_is_idempotent(services, serial, clock):
    first = services.revocation.revoke(REVOKE, serial, RevocationReason.CESSATION_OF_OPERATION)
    assert first.changed and first.revoked_at == clock.now()
    with services.uow() as uow:
        (record,) = [r for r in uow.audit.iterate() if r.action == "certificate.revoked"]
    payload = record.payload if isinstance(record.payload, dict) else json.loads(record.payload)
    assert (record.actor, record.subject, payload["cause"]) == (OPERATOR.actor, serial,
                                                                "request")
    clock.advance(hours=1)
    again = services.revocation.revoke(REVOKE, serial, RevocationReason.SUPERSEDED)
    assert not again.changed
    assert again.reason is RevocationReason.CESSATION_OF_OPERATION
    assert again.revoked_at == first.revoked_at


def test_a_hold_becomes_permanent_and_compromise_always_wins(services, serial, clock):
    held = services.revocation.revoke(REVOKE, serial, RevocationReason.CERTIFICATE_HOLD)
    clock.advance(days=1)
    permanent = services.revocation.revoke(REVOKE, serial, RevocationReason.SUPERSEDED)
    assert permanent.changed and permanent.reason is RevocationReason.SUPERSEDED
    assert permanent.revoked_at == held.revoked_at  # the hold date stays the revocation date
    compromised = services.revocation.revoke(REVOKE, serial, RevocationReason.KEY_COMPROMISE)
    assert compromised.changed and compromised.reason is RevocationReason.KEY_COMPROMISE
    with services.uow() as uow:
        cert = uow.certificates.get_by_serial(serial)
    assert cert.revocation_reason is RevocationReason.KEY_COMPROMISE
    assert cert.revocation_recorded_at == clock.now()  # what delta CRLs key on


def test_unknown_serial_and_roles(services, serial):
    with pytest.raises(CertificateNotFound) as missing:
        services.revocation.revoke(REVOKE, "abcdef", RevocationReason.UNSPECIFIED)
    assert (missing.value.detail, missing.value.context) == (
        "no certificate with serial abcdef", {"serial": "abcdef"})
    with pytest.raises(WrongRole):
        authorize(Principal(actor="client:station", kind=PrincipalKind.STATION),
                  Operation.CERTIFICATE_REVOKE)


def test_a_municipal_operator_revokes_only_its_own_residents_certificates(services, serial):
    """The table binds the revocation to the resident's municipality (architecture §2.6): an
    operator scoped to 清瀬市 (132217) may, one scoped elsewhere may not, and is told which
    scope it lacks — not whose certificate it is."""
    def operator(code):
        return authorize(Principal(actor=f"client:{code}", kind=PrincipalKind.OPERATOR,
                                   scopes=frozenset({f"municipality:{code}"})),
                         Operation.CERTIFICATE_REVOKE)

    with pytest.raises(MissingScope) as refused:
        services.revocation.revoke(operator("131016"), serial, RevocationReason.SUPERSEDED)
    assert refused.value.context == {"scope": "municipality:132217"}
    with services.uow() as uow:
        assert uow.certificates.get_by_serial(serial).revoked_at is None
    assert services.revocation.revoke(operator("132217"), serial,
                                      RevocationReason.SUPERSEDED).changed


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_concurrent_revocations_of_one_certificate_revoke_it_once(services, serial, clock,
                                                                     monkeypatch):
    """The service reads the certificate with a row lock (``for_update=True``): of two
    revocations racing on one certificate, the second waits for the first to commit, then sees
    it revoked — one change, one audit record. Without the lock both would read "not revoked",
    both report a change and both audit it. SQLite serialises writers itself, so this holds the
    lock where it matters: on PostgreSQL (READ COMMITTED)."""
    # Each revocation reads the clock right after reading (and locking) the certificate: the
    # barrier there lets both pass only if neither was kept from reading it. With the lock the
    # second is blocked in its SELECT … FOR UPDATE, the barrier times out and the first goes on.
    barrier = threading.Barrier(2, timeout=3)
    first_read = threading.local()
    now = clock.now

    def clock_now():
        if getattr(first_read, "pending", False):
            first_read.pending = False
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        return now()

    monkeypatch.setattr(clock, "now", clock_now)
    results = []

    def revoke():
        first_read.pending = True
        results.append(services.revocation.revoke(REVOKE, serial, RevocationReason.KEY_COMPROMISE))

    threads = [threading.Thread(target=revoke) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2
    assert sorted(r.changed for r in results) == [False, True]
    with services.uow() as uow:
        revoked = [r for r in uow.audit.iterate()
                   if r.action == "certificate.revoked" and r.subject == serial]
    assert len(revoked) == 1


@pytest.mark.parametrize(("text_", "reason"), [
    ("keyCompromise", RevocationReason.KEY_COMPROMISE), ("key_compromise",
                                                         RevocationReason.KEY_COMPROMISE),
    ("CESSATION-OF-OPERATION", RevocationReason.CESSATION_OF_OPERATION),
    ("6", RevocationReason.CERTIFICATE_HOLD), ("aACompromise", RevocationReason.AA_COMPROMISE),
])
def test_reason_names(text_, reason):
    assert RevocationReason.parse(text_) is reason


@pytest.mark.parametrize("bad", ["removeFromCRL", "8", "7", "lost", ""])
def test_reasons_that_are_not_revocation_reasons(bad):
    with pytest.raises(InvalidReason):
        RevocationReason.parse(bad)


# --- the audit chain ----------------------------------------------------------------------


@pytest.fixture
def history(services, new_resident, subject_keys, operator):
    """A short, realistic history: registration, issuance, an address change, a revocation."""
    rid = new_resident(name="山田 太郎", address="東京都清瀬市中里一丁目")
    certs = {c.kind: c for c in services.issuance.issue(ISSUE, rid, [
        KeyRequest(CertKind.CARD_SIGN, subject_keys[0]),
        KeyRequest(CertKind.CARD_AUTH, subject_keys[1])])}
    services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT),
        rid, ResidentEvent(EventKind.ADDRESS, address="東京都清瀬市元町"))
    services.revocation.revoke(REVOKE, certs[CertKind.CARD_AUTH].serial,
                               RevocationReason.KEY_COMPROMISE)
    return rid


def _verify(services, expect=None):
    with services.uow() as uow:
        return services.audit.verify(uow, expect)


def _exec(services, sql, **params):
    with services.uow.engine.begin() as conn:
        conn.execute(text(sql), params)


def test_every_change_is_audited_and_the_chain_verifies(services, history):
    report = _verify(services)
    with services.uow() as uow:
        actions = [r.action for r in uow.audit.iterate()]
    assert actions == ["resident.registered", "certificate.signing", "certificate.signing",
                       "certificate.issued", "certificate.issued", "certificate.revoked",
                       "resident.address", "certificate.revoked"]
    assert report.records == len(actions) == report.head_seq


def test_audit_payloads_carry_no_personal_data(services, history):
    with services.uow() as uow:
        rows = list(uow.audit.iterate())
    blob = json.dumps([[r.actor, r.action, r.subject, r.payload] for r in rows],
                      ensure_ascii=False)
    # The birth date in every form it is written (not the bare year: a random hexadecimal id
    # holds "1990" about once in 200 records).
    for fragment in ("山田", "太郎", "清瀬市中里", "元町", "1990-01-02", "19900102", "419900102"):
        assert fragment not in blob


def test_a_payload_with_a_personal_data_key_is_refused(services):
    with services.uow() as uow, pytest.raises(ValueError, match="personal data"):
        services.audit.record(uow, actor="x", action="y", subject="z",
                              payload={"address": "東京都"})


@pytest.mark.parametrize(("tamper", "message"), [
    ("UPDATE audit_log SET payload = '{}' WHERE seq = 3", "record 3 was altered"),
    ("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1", "record 1 was altered"),
    ("DELETE FROM audit_log WHERE seq = 4", "record 4 is missing"),
    ("DELETE FROM audit_log WHERE seq = 8", "the head says 8"),
    ("UPDATE audit_head SET seq = 7", "the head says 7"),
    ("INSERT INTO audit_log (seq, at, actor, action, subject, payload, prev_mac, mac) "
     "SELECT 9, at, actor, action, subject, payload, mac, mac FROM audit_log WHERE seq = 8",
     "record 9 was altered"),
])
def test_tampering_is_detected(services, history, tamper, message):
    _verify(services)
    _exec(services, tamper)
    with pytest.raises(AuditChainBroken, match=message):
        _verify(services)


def test_renumbering_after_a_deletion_is_detected(services, history):
    _exec(services, "DELETE FROM audit_log WHERE seq = 2")
    _exec(services, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 2")
    _exec(services, "UPDATE audit_head SET seq = 7")
    with pytest.raises(AuditChainBroken, match="does not follow"):
        _verify(services)


def test_a_rollback_of_the_whole_log_is_caught_by_a_recorded_head(services, history):
    checkpoint = _verify(services)
    with services.uow() as uow:
        (tail_mac,) = [r.mac for r in uow.audit.iterate() if r.seq == 6]
    # Truncate to record 6 and rewrite the head consistently: the chain alone looks fine …
    _exec(services, "DELETE FROM audit_log WHERE seq > 6")
    _exec(services, "UPDATE audit_head SET seq = 6, mac = :mac", mac=tail_mac)
    assert _verify(services).records == 6
    # … but not against the head an operator recorded earlier.
    with pytest.raises(AuditChainBroken, match="rolled back"):
        _verify(services, (checkpoint.head_seq, checkpoint.head_mac))
    assert _verify(services, (6, tail_mac)).records == 6
    with pytest.raises(AuditChainBroken, match="differs"):
        _verify(services, (6, "0" * 64))
