"""The layered measures over smartphones (重層的な措置, jpki.mobile.sweep): silent devices are
flagged past the first threshold and their certificates held past the second, as a lost
phone's; the holder lifts the hold from the phone; a run's report is durable; a second run
changes nothing; a run killed midway leaves every device handled or untouched; and nothing
personal reaches the audit log."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError
from sqlalchemy import select, text

from api.composition import mobile_sweep
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.errors import InvalidInput, NotFound, WrongRole
from jpki.mobile import sweep as sweep_module
from jpki.mobile.sweep import MobileSweep
from jpki.model import CertKind
from jpki.protocol.mobile import MobileCheckIn, MobileSuspensionLift
from jpki.settings import Settings
from jpki.store.tables import audit_log, certificates, mobile_devices
from tests.holder_kit import Holder, new_holder
from tests.phone_kit import spki

pytestmark = pytest.mark.hsm

JOB = Principal.system_job("maintenance")
SWEEP = authorize(JOB, Operation.MOBILE_SWEEP)
READ = authorize(Principal.local_operator("test"), Operation.MOBILE_SWEEP_READ)
CERT_READ = authorize(Principal.local_operator("test"), Operation.CERTIFICATE_READ)
NAMES = ["山田 太郎", "佐藤 花子", "鈴木 一郎"]
ADDRESS = "東京都清瀬市中里一丁目２番３号 秘密荘１０１"


@pytest.fixture(scope="module")
def private_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(65537, 2048) for _ in range(20)]


@pytest.fixture
def pool(private_keys):
    return list(private_keys)


@pytest.fixture
def sweeper(services):
    """The sweep with the default thresholds: flag after 90 days, hold after 180."""
    return mobile_sweep(Settings(), services.uow, services.clock, services.audit)


def with_phone(services, pool, name: str = NAMES[0]) -> Holder:
    holder = new_holder(services, pool, name=name, address=ADDRESS)
    holder.enrol_phone(f"phone-{name}")
    return holder


def status(services, serial: str) -> tuple[str, str | None]:
    view = services.certificates.show(CERT_READ, serial)
    return view.status, view.revocation_reason


def snapshot(services) -> dict[str, list[str]]:
    """The certificates, the devices and the audit log: what a second run must not change."""
    with services.uow.engine.connect() as conn:
        return {t.name: sorted(repr(tuple(r)) for r in conn.execute(select(t)).all())
                for t in (certificates, mobile_devices, audit_log)}


def check_in(services, holder: Holder) -> None:
    challenge = services.mobile.new_challenge("check_in")[0]
    services.mobile.check_in(holder.sign(
        MobileCheckIn(challenge=challenge, device=holder.phone.device_id),
        kind=CertKind.MOBILE_AUTH))


def audit_payloads(services) -> list[tuple[str, str]]:
    with services.uow() as uow:
        return [(r.action, r.payload) for r in uow.audit.iterate()]


def test_a_silent_device_is_flagged_then_held_and_released_by_the_holder(
        services, sweeper, pool, clock):
    h = with_phone(services, pool)
    device = h.phone.device_id
    mobile = dict(h.mobile_serials)
    nothing = sweeper.run(SWEEP)
    assert (nothing.outcome, nothing.counts) == ("ok", {"revoked": 0, "flagged": 0, "held": 0})

    clock.advance(days=90)  # exactly the threshold: not past it
    assert sweeper.run(SWEEP).flagged == []
    clock.advance(days=1)
    flagged = sweeper.run(SWEEP)
    assert (flagged.flagged, flagged.held) == ([device], [])
    for serial in mobile.values():
        assert status(services, serial) == ("good", None)  # flagged only
    with services.uow() as uow:
        assert uow.mobile.device(device).flagged_at == clock.now()

    clock.advance(days=90)  # 181 days silent: past the hold threshold
    held = sweeper.run(SWEEP)
    assert (held.flagged, held.held) == ([], [device])
    for serial in mobile.values():
        assert status(services, serial) == ("revoked", "certificateHold")
    for kind in (CertKind.CARD_SIGN, CertKind.CARD_AUTH):
        assert status(services, h.serial(kind)) == ("good", None)

    # The run twice gives the same state, and a report that did nothing.
    before = snapshot(services)
    clock.advance(minutes=1)
    again = sweeper.run(SWEEP)
    assert again.counts == {"revoked": 0, "flagged": 0, "held": 0}
    assert snapshot(services) == before

    # The holder lifts the hold from the phone, as after a lost phone: the phone has been seen.
    new_sign = pool.pop()
    challenge = services.mobile.new_challenge("lift")[0]
    lifted = services.mobile.lift_suspension(h.sign(MobileSuspensionLift(
        challenge=challenge, device=device, sign_public_key=spki(new_sign),
        sign_pop=h.phone.proof(challenge, CertKind.MOBILE_SIGN, key=new_sign)),
        kind=CertKind.MOBILE_AUTH))
    assert status(services, mobile[CertKind.MOBILE_AUTH]) == ("good", None)
    (reissued,) = lifted.certificates
    with services.uow() as uow:
        seen = uow.mobile.device(device)
        assert (seen.last_seen_at, seen.flagged_at) == (clock.now(), None)
    clock.advance(days=1)
    after = sweeper.run(SWEEP)
    assert after.counts == {"revoked": 0, "flagged": 0, "held": 0}
    assert status(services, reissued.serial) == ("good", None)

    # The reports, newest first, and one with its items.
    reports = sweeper.reports(READ, 10)
    assert [r.counts for r in reports][:4] == [
        {"revoked": 0, "flagged": 0, "held": 0}, {"revoked": 0, "flagged": 0, "held": 0},
        {"revoked": 0, "flagged": 0, "held": 1}, {"revoked": 0, "flagged": 1, "held": 0}]
    one = sweeper.report(READ, held.id)
    assert (one.outcome, one.held, one.flagged, one.revoked) == ("ok", [device], [], [])
    assert (one.flag_after_days, one.hold_after_days, one.actor) == (90, 180, JOB.actor)


def test_the_sweep_revokes_what_the_cascade_missed(services, sweeper, pool):
    """A card certificate revoked, or a record ended, behind the cascade's back (an import, an
    old record): the linked mobile certificates go too, with the card's reason, once."""
    card_gone, record_gone, fine = (with_phone(services, pool, n) for n in NAMES)
    with services.uow.engine.begin() as conn:
        conn.execute(text("UPDATE certificates SET revoked_at = created_at, "
                          "revocation_reason = 1 WHERE serial = :s"),
                     {"s": card_gone.serial(CertKind.CARD_SIGN)})
        conn.execute(text("UPDATE residents SET status = 'deceased' WHERE id = :r"),
                     {"r": record_gone.resident_id})
    report = sweeper.run(SWEEP)
    expected = sorted([card_gone.mobile_serials[CertKind.MOBILE_SIGN],
                       *record_gone.mobile_serials.values()])
    assert report.revoked == sorted(report.revoked) and sorted(report.revoked) == expected
    assert status(services, card_gone.mobile_serials[CertKind.MOBILE_SIGN]) == (
        "revoked", "keyCompromise")
    assert status(services, card_gone.mobile_serials[CertKind.MOBILE_AUTH]) == ("good", None)
    for serial in record_gone.mobile_serials.values():
        assert status(services, serial) == ("revoked", "cessationOfOperation")
    for serial in fine.mobile_serials.values():
        assert status(services, serial) == ("good", None)
    before = snapshot(services)
    assert sweeper.run(SWEEP).revoked == []
    assert snapshot(services) == before


def test_a_check_in_keeps_a_device_from_being_flagged_or_held(services, sweeper, pool, clock):
    quiet, talkative = with_phone(services, pool, NAMES[0]), with_phone(services, pool, NAMES[1])
    clock.advance(days=80)
    check_in(services, talkative)
    clock.advance(days=11)
    assert sweeper.run(SWEEP).flagged == [quiet.phone.device_id]
    clock.advance(days=90)  # quiet: 181 days; talkative: 101
    report = sweeper.run(SWEEP)
    assert (report.held, report.flagged) == ([quiet.phone.device_id], [talkative.phone.device_id])
    for serial in talkative.mobile_serials.values():
        assert status(services, serial) == ("good", None)


def test_a_held_device_that_checks_in_stays_held_until_the_holder_lifts_it(
        services, sweeper, pool, clock):
    """A check-in proves the phone is there but is no lift: the hold is the holder's to lift,
    with a new signing key, as for a found phone (reference §2)."""
    h = with_phone(services, pool)
    clock.advance(days=181)
    assert sweeper.run(SWEEP).held == [h.phone.device_id]
    check_in(services, h)
    clock.advance(days=1)
    assert sweeper.run(SWEEP).counts == {"revoked": 0, "flagged": 0, "held": 0}
    for serial in h.mobile_serials.values():
        assert status(services, serial) == ("revoked", "certificateHold")


def test_with_no_hold_threshold_silent_devices_are_flagged_only(services, pool, clock):
    flag_only = mobile_sweep(Settings(mobile_hold_silent_days=0), services.uow, services.clock,
                             services.audit)
    h = with_phone(services, pool)
    clock.advance(days=400)
    report = flag_only.run(SWEEP)
    assert (report.flagged, report.held, report.hold_after_days) == (
        [h.phone.device_id], [], 0)
    for serial in h.mobile_serials.values():
        assert status(services, serial) == ("good", None)


def test_a_run_killed_midway_leaves_each_device_handled_or_untouched(
        services, sweeper, pool, clock, monkeypatch):
    holders = [with_phone(services, pool, name) for name in NAMES[:2]]
    clock.advance(days=181)
    monkeypatch.setattr(sweep_module, "BATCH", 1)  # one device per transaction
    ids = sorted(h.phone.device_id for h in holders)
    real = MobileSweep._silent
    seen: list[str] = []

    def dies_on_the_second_hold(uow, device_id, before):
        if before == clock.now() - timedelta(days=180):
            seen.append(device_id)
            if len(seen) == 2:
                # What SIGKILL does to the run: nothing after this line, no handler.
                raise KeyboardInterrupt
        return real(uow, device_id, before)

    monkeypatch.setattr(MobileSweep, "_silent", staticmethod(dies_on_the_second_hold))
    with pytest.raises(KeyboardInterrupt):
        sweeper.run(SWEEP)
    (killed,) = sweeper.reports(READ, 1)
    assert killed.outcome == "running"
    assert sweeper.report(READ, killed.id).held == [ids[0]]  # what it did, exactly
    first, second = (next(h for h in holders if h.phone.device_id == i) for i in ids)
    for serial in first.mobile_serials.values():
        assert status(services, serial) == ("revoked", "certificateHold")
    for serial in second.mobile_serials.values():
        assert status(services, serial) == ("good", None)
    with services.uow() as uow:
        services.audit.verify(uow)

    monkeypatch.setattr(MobileSweep, "_silent", staticmethod(real))
    resumed = sweeper.run(SWEEP)
    assert (resumed.held, resumed.flagged) == ([ids[1]], [])
    assert sweeper.report(READ, killed.id).outcome == "interrupted"
    for serial in second.mobile_serials.values():
        assert status(services, serial) == ("revoked", "certificateHold")


def test_nothing_personal_in_the_audit_log_or_the_reports(services, sweeper, pool, clock):
    holders = [with_phone(services, pool, name) for name in NAMES[:2]]
    clock.advance(days=181)
    report = sweeper.run(SWEEP)
    assert len(report.held) == 2
    records = audit_payloads(services)
    mine = [(a, json.loads(p)) for a, p in records
            if a in ("mobile.devices_flagged", "mobile.devices_held")]
    assert [a for a, _ in mine] == ["mobile.devices_flagged", "mobile.devices_held"]
    for _, payload in mine:
        assert set(payload) == {"devices", "silent_days"}
        assert sorted(payload["devices"]) == sorted(h.phone.device_id for h in holders)
    text = json.dumps([records, repr(report), repr(sweeper.report(READ, report.id))],
                      ensure_ascii=False)
    for secret in [*NAMES, ADDRESS, *ADDRESS.split(), "1990-01-02"]:
        assert secret not in text


def test_the_reports_are_read_by_those_the_table_allows(services, sweeper):
    with pytest.raises(WrongRole):
        authorize(JOB, Operation.MOBILE_SWEEP_READ)
    with pytest.raises(NotFound):
        sweeper.report(READ, "0" * 32)
    with pytest.raises(NotFound):
        sweeper.report(READ, "not an id")
    with pytest.raises(InvalidInput):
        sweeper.reports(READ, 0)


def test_the_hold_threshold_lies_beyond_the_flag_threshold():
    with pytest.raises(ValidationError):
        Settings(mobile_flag_silent_days=90, mobile_hold_silent_days=90)
    assert Settings(mobile_flag_silent_days=90, mobile_hold_silent_days=0)
    assert Settings(mobile_flag_silent_days=30, mobile_hold_silent_days=31)
