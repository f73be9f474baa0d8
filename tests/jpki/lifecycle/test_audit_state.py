"""The certificates' state replayed from the audit log (jpki.lifecycle.audit_state): every kind of
change
made behind the log's back is found, and a store that only went through the services passes —
renewals, mobile holds and their release, cascades, emigrations brought forward, abandoned
intents. On SQLite and PostgreSQL, with real HSM signatures and MACs."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import bindparam, select, text, update

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.audit import GENESIS_MAC, canonical_content
from jpki.errors import AuditChainBroken, AuditStateMismatch, KeyStoreUnavailable
from jpki.issuance.service import KeyRequest
from jpki.lifecycle.audit_state import ACTIONS, StateReport, verify_state
from jpki.lifecycle.cards import CardSpec
from jpki.lifecycle.crl_entries import crl_entry
from jpki.model import CertKind, CertStatus, RevocationReason
from jpki.registry.cards import CardEvent
from jpki.registry.residents import EventKind, ResidentEvent
from tests.phone_kit import Phone, signed, spki

pytestmark = pytest.mark.hsm

CA = Principal.local_operator("test")  # the CA operator: no proofing needed
ABANDON_PENDING = authorize(CA, Operation.PENDING_ABANDON)
HOLD = authorize(Principal(actor="client:test-callcentre", kind=PrincipalKind.CALL_CENTRE),
                 Operation.MOBILE_HOLD)
ISSUE = authorize(CA, Operation.CERTIFICATE_ISSUE)
RENEW = authorize(CA, Operation.CERTIFICATE_RENEW)


@pytest.fixture(scope="module")
def private_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(65537, 2048) for _ in range(20)]


# --- a store that went through everything -------------------------------------------------


@dataclass
class History:
    serials: dict[str, str]  # what each certificate went through → its serial
    at: datetime  # the clock when the history ends


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _FailingKeys:
    """A key store whose signing keys cannot be reached (an HSM outage)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def rsa_key(self, label):
        raise RuntimeError("token removed")


@pytest.fixture
def history(services, new_resident, clock, private_keys, operator, monkeypatch) -> History:
    keys = list(private_keys)
    s: dict[str, str] = {}

    def card_pair(rid, card=None):
        card_keys = {CertKind.CARD_AUTH: keys.pop(), CertKind.CARD_SIGN: keys.pop()}
        issued = services.issuance.issue(ISSUE, rid, [KeyRequest(k, spki(v))
                                                   for k, v in card_keys.items()], card)
        return {c.kind: c for c in issued}, card_keys

    def apply(card, card_keys, phone):
        phone.new_keys(keys)
        challenge = services.mobile.new_challenge("application")[0]
        doc = phone.application(challenge, card[CertKind.CARD_SIGN].serial)
        result = services.mobile.apply(signed(doc, card[CertKind.CARD_SIGN].der,
                                              card_keys[CertKind.CARD_SIGN], clock.now()))
        phone.device_id = result.device_id
        phone.certs = {c.kind: c.der for c in result.certificates}
        return {c.kind: c for c in result.certificates}

    # A: a phone put on hold by the call centre, found (the auth hold released, the signing
    # certificate re-issued), then an address change that cascades to the new one.
    a = new_resident()
    card, card_keys = card_pair(a)
    phone = Phone("a-phone")
    mobile = apply(card, card_keys, phone)
    services.mobile.hold(HOLD, a)
    clock.advance(minutes=10)
    new_sign = keys.pop()
    challenge = services.mobile.new_challenge("lift")[0]
    lift = {"type": "jpki-mobile-lift/1", "challenge": _b64(challenge),
            "device": phone.device_id, "sign_public_key": _b64(spki(new_sign)),
            "sign_pop": phone.pop(challenge, CertKind.MOBILE_SIGN, key=new_sign)}
    (reissued,) = services.mobile.lift_suspension(signed(
        lift, phone.certs[CertKind.MOBILE_AUTH], phone.keys[CertKind.MOBILE_AUTH],
        clock.now())).certificates
    clock.advance(minutes=1)
    services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT),
        a, ResidentEvent(EventKind.ADDRESS, address="東京都清瀬市元町"))
    s.update(a_card_sign=card[CertKind.CARD_SIGN].serial,
             a_card_auth=card[CertKind.CARD_AUTH].serial,
             a_mobile_auth_released=mobile[CertKind.MOBILE_AUTH].serial,
             a_mobile_sign_superseded=mobile[CertKind.MOBILE_SIGN].serial,
             a_mobile_sign_cascaded=reissued.serial)

    # B: emigration in ten days (a revocation scheduled for the departure date, cascading to
    # the phone), brought forward by death — which keeps the reason it had.
    b = new_resident(name="佐藤 花子")
    card, card_keys = card_pair(b)
    mobile = apply(card, card_keys, Phone("b-phone"))
    services.residents.record_event(authorize(operator, Operation.RESIDENT_EVENT), b, ResidentEvent(
        EventKind.EMIGRATION, date=date(2026, 12, 7), address="フランス共和国パリ市"))
    clock.advance(minutes=1)
    services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), b, ResidentEvent(EventKind.DEATH))
    s.update(b_card_sign=card[CertKind.CARD_SIGN].serial,
             b_card_auth=card[CertKind.CARD_AUTH].serial,
             b_mobile_sign=mobile[CertKind.MOBILE_SIGN].serial,
             b_mobile_auth=mobile[CertKind.MOBILE_AUTH].serial)

    # C: a card expiring soon, so the pair is renewable at once; the old pair is superseded.
    c = new_resident(name="鈴木 一郎")
    old, _ = card_pair(c, CardSpec(expires_on=date(2027, 1, 31)))
    clock.advance(minutes=1)
    new = {x.kind: x for x in services.issuance.renew(RENEW, c, [
        KeyRequest(k, spki(keys.pop())) for k in (CertKind.CARD_AUTH, CertKind.CARD_SIGN)])}
    s.update(c_old_auth=old[CertKind.CARD_AUTH].serial, c_old_sign=old[CertKind.CARD_SIGN].serial,
             c_new_auth=new[CertKind.CARD_AUTH].serial, c_new_sign=new[CertKind.CARD_SIGN].serial)

    # D: intents left behind by a crash (one abandoned as stale, one still pending) and by an
    # HSM outage (abandoned at once).
    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # nothing in the pipeline catches it

    for name in ("d_stale", "d_pending"):
        rid = new_resident(name="高橋 三郎")
        with monkeypatch.context() as m:
            m.setattr("jpki.issuance.service.sign_tbs", crash)
            with pytest.raises(KeyboardInterrupt):
                services.issuance.issue(ISSUE, rid, [KeyRequest(CertKind.CARD_AUTH,
                                                             spki(keys.pop()))])
        with services.uow() as uow:
            (s[name],) = [x.serial for x in uow.certificates.for_resident(rid)]
        if name == "d_stale":
            clock.advance(minutes=6)
            assert services.issuance.abandon_stale(ABANDON_PENDING,
                                                   timedelta(minutes=5)) == [s[name]]
    rid = new_resident(name="田中 四郎")
    services.issuance._keys = _FailingKeys(services.keys)
    with pytest.raises(KeyStoreUnavailable):
        services.issuance.issue(ISSUE, rid, [KeyRequest(CertKind.CARD_AUTH, spki(keys.pop()))])
    services.issuance._keys = services.keys
    with services.uow() as uow:
        (s["d_failed"],) = [x.serial for x in uow.certificates.for_resident(rid)]

    # F: a lost card (both certificates held), then found (the holds made permanent).
    f = new_resident(name="伊藤 五郎")
    card, _ = card_pair(f)
    with services.uow() as uow:
        number = uow.cards.active_for_resident(f).number
    services.cards.record_event(authorize(operator, Operation.CARD_EVENT), number, CardEvent.LOST)
    clock.advance(minutes=1)
    services.cards.record_event(authorize(operator, Operation.CARD_EVENT), number, CardEvent.FOUND)
    s.update(f_card_auth=card[CertKind.CARD_AUTH].serial,
             f_card_sign=card[CertKind.CARD_SIGN].serial)

    # And an operator's revocation for key compromise.
    services.revocation.revoke(
        authorize(operator, Operation.CERTIFICATE_REVOKE),
        s["c_new_auth"], RevocationReason.KEY_COMPROMISE)
    return History(serials=s, at=clock.now())


def check(services, **kw) -> StateReport:
    with services.snapshots() as uow:
        services.audit.verify(uow)
        return verify_state(uow, **kw)


def findings(report: StateReport) -> set[tuple[str, ...]]:
    assert len(report.mismatches) == report.mismatch_count
    assert len(report.unrecorded) == report.unrecorded_count
    assert len(report.without_row) == report.without_row_count
    return ({("mismatch", m.serial, m.field) for m in report.mismatches}
            | {("unrecorded", u.serial, *u.missing) for u in report.unrecorded}
            | {("without_row", w.serial) for w in report.without_row})


def row(services, serial):
    with services.uow() as uow:
        return uow.certificates.get_by_serial(serial)


def _exec(services, sql, **params):
    with services.uow.engine.begin() as conn:
        assert conn.execute(text(sql), params).rowcount == 1, sql


def certificate_records(services) -> int:
    with services.uow() as uow:
        return sum(r.action in ACTIONS for r in uow.audit.iterate())


# --- a clean store passes -------------------------------------------------------------------


def test_a_store_changed_only_through_the_services_passes(services, history):
    s = history.serials
    # The history is what its names say (so the passing check below covers all of it).
    expect = {
        "a_card_sign": ("issued", RevocationReason.AFFILIATION_CHANGED),
        "a_card_auth": ("issued", None),
        "a_mobile_auth_released": ("issued", None),
        "a_mobile_sign_superseded": ("issued", RevocationReason.SUPERSEDED),
        "a_mobile_sign_cascaded": ("issued", RevocationReason.AFFILIATION_CHANGED),
        "b_card_sign": ("issued", RevocationReason.AFFILIATION_CHANGED),
        "b_mobile_sign": ("issued", RevocationReason.AFFILIATION_CHANGED),
        "b_card_auth": ("issued", RevocationReason.CESSATION_OF_OPERATION),
        "b_mobile_auth": ("issued", RevocationReason.CESSATION_OF_OPERATION),
        "c_old_auth": ("issued", RevocationReason.SUPERSEDED),
        "c_old_sign": ("issued", RevocationReason.SUPERSEDED),
        "c_new_auth": ("issued", RevocationReason.KEY_COMPROMISE),
        "c_new_sign": ("issued", None),
        "d_stale": ("abandoned", RevocationReason.UNSPECIFIED),
        "d_pending": ("pending", None),
        "d_failed": ("abandoned", RevocationReason.UNSPECIFIED),
        "f_card_auth": ("issued", RevocationReason.CESSATION_OF_OPERATION),
        "f_card_sign": ("issued", RevocationReason.CESSATION_OF_OPERATION),
    }
    assert set(expect) == set(s)
    for name, (status, reason) in expect.items():
        cert = row(services, s[name])
        assert (cert.status.value, cert.revocation_reason) == (status, reason), name
    assert row(services, s["a_mobile_auth_released"]).hold_released_at is not None
    # Brought forward from the departure date (00:00 JST on 2026-12-07) to the death.
    for name in ("b_card_sign", "b_mobile_sign"):
        assert row(services, s[name]).revoked_at < datetime(2026, 12, 6, 15, tzinfo=UTC)

    report = check(services)
    assert report.ok, report
    assert findings(report) == set()
    assert report.certificates == len(s)
    assert report.records == certificate_records(services)
    assert report.not_checkable == {}  # today's records name every field they set
    report.raise_if_mismatched()


def test_a_scheduled_revocation_passes_before_and_after_it_takes_effect(
        services, new_resident, private_keys, operator, clock):
    rid = new_resident()
    services.issuance.issue(ISSUE, rid, [KeyRequest(k, spki(private_keys[i])) for i, k in
                                      enumerate((CertKind.CARD_AUTH, CertKind.CARD_SIGN))])
    services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), rid, ResidentEvent(
        EventKind.EMIGRATION, date=date(2026, 12, 20), address="アメリカ合衆国"))
    assert check(services).ok
    clock.set(datetime(2026, 12, 21, tzinfo=UTC))
    report = check(services)
    assert report.ok and report.certificates == 2


def test_an_empty_store_passes(services):
    report = check(services)
    assert report.ok and (report.certificates, report.records) == (0, 0)


# --- every kind of change behind the log's back is found -------------------------------------


def _entry(serial: str, at: datetime, reason: int) -> bytes:
    return crl_entry(serial, at, RevocationReason(reason))


def _update(services, serial, **values):
    """A change written straight into the database (with the store's column types)."""
    from jpki.store.tables import certificates

    with services.uow.engine.begin() as conn:
        assert conn.execute(update(certificates).where(certificates.c.serial == serial)
                            .values(**values)).rowcount == 1


def _set_revocation(services, serial, at, reason):
    """What a careful forger writes: a revocation with the CRL entry that matches it."""
    _update(services, serial, revoked_at=at, revocation_reason=RevocationReason(reason),
            crl_entry=_entry(serial, at, reason))


def _unrevoke(services, h):
    _exec(services, "UPDATE certificates SET revoked_at = NULL, revocation_reason = NULL, "
                    "crl_entry = NULL WHERE serial = :s", s=h.serials["a_card_sign"])


def _change_reason(services, h):
    serial = h.serials["c_old_auth"]
    _set_revocation(services, serial, row(services, serial).revoked_at, 1)


def _change_time(services, h):
    serial = h.serials["b_card_sign"]  # back to the departure date it was brought forward from
    _set_revocation(services, serial, datetime(2026, 12, 6, 15, tzinfo=UTC), 3)


def _revoke_behind(services, h):
    _set_revocation(services, h.serials["c_new_sign"], h.at, 1)


def _insert(services, h):
    _exec(services, "INSERT INTO certificates (serial, kind, resident_id, card_id, "
                    "ca_generation_id, status, not_before, not_after, shard, registry_source, "
                    "public_key_sha256, der, delivery_required, created_at, updated_at) "
                    "SELECT :new, kind, resident_id, card_id, ca_generation_id, status, "
                    "not_before, not_after, shard, registry_source, public_key_sha256, der, "
                    "delivery_required, created_at, updated_at FROM certificates "
                    "WHERE serial = :s", new="abcdef0123456789abcdef", s=h.serials["c_new_sign"])


def _delete_issued_record(services, h):
    _exec(services, "DELETE FROM audit_log WHERE action = 'certificate.issued' AND subject = :s",
          s=h.serials["c_new_auth"])


def _unabandon(services, h):
    _exec(services, "UPDATE certificates SET status = 'issued' WHERE serial = :s",
          s=h.serials["d_stale"])


def _repend(services, h):
    _exec(services, "UPDATE certificates SET status = 'pending', revoked_at = NULL, "
                    "revocation_reason = NULL, crl_entry = NULL WHERE serial = :s",
          s=h.serials["d_failed"])


def _move_release(services, h):
    _update(services, h.serials["a_mobile_auth_released"],
            hold_released_at=h.at - timedelta(days=1))


def _drop_entry(services, h):
    _exec(services, "UPDATE certificates SET crl_entry = NULL WHERE serial = :s",
          s=h.serials["f_card_auth"])


def _extend(services, h):
    _update(services, h.serials["a_card_auth"], not_after=datetime(2040, 1, 1, tzinfo=UTC))


def _delete_row(services, h):
    _exec(services, "DELETE FROM certificates WHERE serial = :s", s=h.serials["d_pending"])


NEW = "abcdef0123456789abcdef"
TAMPERING = {
    # name: (what is done, what the check reports: (kind, certificate, detail…))
    "un-revoked": (_unrevoke, {("mismatch", "a_card_sign", "revoked_at"),
                               ("mismatch", "a_card_sign", "revocation_reason")}),
    "reason changed": (_change_reason, {("mismatch", "c_old_auth", "revocation_reason")}),
    "revocation time changed": (_change_time, {("mismatch", "b_card_sign", "revoked_at")}),
    "revoked behind the log's back": (_revoke_behind, {
        ("mismatch", "c_new_sign", "revoked_at"),
        ("mismatch", "c_new_sign", "revocation_reason")}),
    "inserted without any record": (_insert, {
        ("unrecorded", NEW, "certificate.signing", "certificate.issued")}),
    "issuance record deleted": (_delete_issued_record, {
        ("unrecorded", "c_new_auth", "certificate.issued"),
        ("mismatch", "c_new_auth", "status")}),
    "abandoned intent made issued": (_unabandon, {
        ("unrecorded", "d_stale", "certificate.issued"), ("mismatch", "d_stale", "status")}),
    "abandoned intent made pending": (_repend, {
        ("mismatch", "d_failed", "status"), ("mismatch", "d_failed", "revoked_at"),
        ("mismatch", "d_failed", "revocation_reason")}),
    "hold release moved": (_move_release, {
        ("mismatch", "a_mobile_auth_released", "hold_released_at")}),
    "CRL entry dropped": (_drop_entry, {("mismatch", "f_card_auth", "crl_entry")}),
    "validity extended": (_extend, {("mismatch", "a_card_auth", "not_after")}),
    "row deleted": (_delete_row, {("without_row", "d_pending")}),
}


def _resolve(h: History, expected: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    return {(kind, h.serials.get(name, name), *rest) for kind, name, *rest in expected}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_change_behind_the_logs_back_is_found(services, history, case):
    tamper, expected = TAMPERING[case]
    assert check(services).ok
    tamper(services, history)
    with services.snapshots() as uow:
        if case == "issuance record deleted":  # the chain sees a deleted record, too
            with pytest.raises(AuditChainBroken):
                services.audit.verify(uow)
        else:
            services.audit.verify(uow)  # the log itself is untouched: the chain passes
        report = verify_state(uow)
    assert not report.ok
    assert findings(report) == _resolve(history, expected)
    with pytest.raises(AuditStateMismatch) as raised:
        report.raise_if_mismatched()
    assert raised.value.code == "audit.state_mismatch"


def test_a_finding_says_what_the_log_expects_and_what_the_row_holds(services, history):
    s = history.serials
    revoked = row(services, s["a_card_sign"]).revoked_at
    _unrevoke(services, history)
    _unabandon(services, history)
    report = check(services)
    assert {(m.serial, m.field, m.expected, m.found) for m in report.mismatches} == {
        (s["a_card_sign"], "revoked_at", revoked.isoformat(), None),
        (s["a_card_sign"], "revocation_reason", "affiliationChanged", None),
        (s["d_stale"], "status", "abandoned", "issued")}
    assert [(u.serial, u.status, u.missing) for u in report.unrecorded] == [
        (s["d_stale"], "issued", ("certificate.issued",))]


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_all_changes_at_once_in_ranges_of_any_size(services, history, chunk):
    """Bounded memory: the serials are checked in ranges of ``chunk`` certificates, each
    against one read of the log. The findings do not depend on where the ranges fall."""
    expected: set[tuple[str, ...]] = set()
    for tamper, found in TAMPERING.values():
        tamper(services, history)
        expected |= _resolve(history, found)
    with services.snapshots() as uow:
        whole = verify_state(uow)
        ranged = verify_state(uow, chunk=chunk, batch=2)
    assert findings(whole) == findings(ranged) == expected
    total = len(history.serials)  # one deleted, one inserted
    assert whole.certificates == ranged.certificates == total
    assert ranged.records == whole.records == certificate_records(services)


def test_findings_are_counted_all_and_listed_up_to_the_limit(services, history):
    for tamper, _ in TAMPERING.values():
        tamper(services, history)
    with services.snapshots() as uow:
        full = verify_state(uow)
        capped = verify_state(uow, limit=1)
    assert (capped.mismatch_count, capped.unrecorded_count, capped.without_row_count) == \
        (full.mismatch_count, full.unrecorded_count, full.without_row_count)
    assert full.mismatch_count > 1
    assert (len(capped.mismatches), len(capped.unrecorded), len(capped.without_row)) == (1, 1, 1)


# --- one snapshot ---------------------------------------------------------------------------


def test_the_check_reads_one_snapshot_whatever_commits_meanwhile(services, history, operator):
    records = certificate_records(services)
    with services.snapshots() as uow:
        services.audit.verify(uow)  # the snapshot starts with the first read
        services.revocation.revoke(
            authorize(operator, Operation.CERTIFICATE_REVOKE), history.serials["c_new_sign"],
            RevocationReason.KEY_COMPROMISE)  # committed elsewhere
        report = verify_state(uow)
    assert report.ok and report.records == records
    after = check(services)
    assert after.ok and after.records == records + 1


# --- records written before they named the state they leave ---------------------------------


OLD_FORMAT = {"certificate.abandoned": "revoked_at",
              "certificate.hold_released": "hold_released_at",
              "certificate.revoked": "revocation_reason"}


def _as_older_records(services):
    """Rewrite the log as an older version wrote it — without the fields it did not record —
    and chain it again with the audit key, as that version did."""
    from jpki.store.tables import audit_head, audit_log

    with services.uow() as uow:
        records = list(uow.audit.iterate())
    prev = GENESIS_MAC
    rows = []
    for r in records:
        payload = r.payload
        if r.action in OLD_FORMAT:
            data = json.loads(payload)
            data.pop(OLD_FORMAT[r.action])
            payload = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        mac = services.audit._mac(prev, canonical_content(r.seq, r.at.isoformat(), r.actor,
                                                          r.action, r.subject, payload))
        rows.append({"b_seq": r.seq, "b_payload": payload, "b_prev": prev, "b_mac": mac})
        prev = mac
    with services.uow.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == bindparam("b_seq")).values(
            payload=bindparam("b_payload"), prev_mac=bindparam("b_prev"),
            mac=bindparam("b_mac")), rows)
        conn.execute(update(audit_head).values(mac=prev))
        assert conn.execute(select(audit_head.c.seq)).scalar_one() == records[-1].seq


def test_older_records_pass_and_what_they_cannot_tell_is_counted(services, history):
    _as_older_records(services)
    report = check(services)  # the chain verifies: a log as the older version left it
    assert report.ok, report
    # Two abandoned intents (their revocation time) and one released hold (its time): counted,
    # not passed as checked.
    assert report.not_checkable == {"revoked_at": 2, "hold_released_at": 1}
    # The reason a revocation left is replayed with the rule that set it — including death
    # bringing an emigration's revocation forward, which asked for cessationOfOperation but
    # kept affiliationChanged — so a changed reason is still found.
    _change_reason(services, history)
    serial = history.serials["b_card_sign"]
    _set_revocation(services, serial, row(services, serial).revoked_at, 5)
    assert findings(check(services)) == {
        ("mismatch", history.serials["c_old_auth"], "revocation_reason"),
        ("mismatch", serial, "revocation_reason")}


def test_new_records_name_the_state_they_leave(services, history):
    with services.uow() as uow:
        records = [r for r in uow.audit.iterate() if r.action in OLD_FORMAT]
    assert {r.action for r in records} == set(OLD_FORMAT)
    for r in records:
        payload = json.loads(r.payload)
        assert OLD_FORMAT[r.action] in payload, r
        cert = row(services, r.subject)
        if r.action == "certificate.hold_released":
            assert datetime.fromisoformat(payload["hold_released_at"]) == cert.hold_released_at
    b_sign = [json.loads(r.payload) for r in records
              if r.subject == history.serials["b_card_sign"]]
    # Asked for cessationOfOperation at death, left affiliationChanged: both are recorded.
    assert (b_sign[-1]["reason"], b_sign[-1]["revocation_reason"]) == \
        ("cessationOfOperation", "affiliationChanged")
    assert row(services, history.serials["d_stale"]).status is CertStatus.ABANDONED
