"""The rules of the signing-password reset (jpki.pin_reset.rules, architecture §7.1) one by one,
on plain records: whose card, the face-check assertion, the online password and its hash, the
limits — and the protocol's documents (jpki.protocol.pin_reset). The same rules over HTTP:
tests/api/test_pin_reset_http.py; end to end with the card: tests/devices/card/
test_card_kiosk_pcsc.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from jpki.errors import CardInactive, ResidentInactive, UnderageSigning
from jpki.model import (
    Card,
    CardStatus,
    Certificate,
    CertKind,
    CertStatus,
    OnlinePassword,
    RegistrySource,
    Resident,
    ResidentStatus,
)
from jpki.pin_reset import rules
from jpki.pin_reset.rules import (
    AssertionInvalid,
    HolderProofInvalid,
    OnlinePasswordExpired,
    OnlinePasswordLocked,
    OnlinePasswordMissing,
    SigningCertificateRevoked,
    TooManyAttempts,
)
from jpki.protocol.pin_reset import (
    FaceCheckAssertion,
    PinResetError,
    ResetPurpose,
    card_reset_message,
    group_online_password,
    holder_auth_message,
    normalise_online_password,
)

NOW = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)  # 12:00 JST
APP = "jpki_" + "ab" * 12
CHALLENGE = bytes(range(32))


def cert(kind: CertKind = CertKind.CARD_AUTH, **changes: Any) -> Certificate:
    base = Certificate(
        id=1, serial="a1", kind=kind, resident_id="r1", card_id=7, ca_generation_id=1,
        status=CertStatus.ISSUED, not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=300), shard="132217",
        registry_source=RegistrySource.JUMINHYO, public_key_sha256="00" * 32,
        created_at=NOW - timedelta(days=30), updated_at=NOW, der=b"der-a1")
    return replace(base, **changes)


def resident(birth: date = date(1980, 1, 1), **changes: Any) -> Resident:
    base = Resident(id="r1", municipality_code="132217", registry_source=RegistrySource.JUMINHYO,
                    status=ResidentStatus.ACTIVE, dv_support=False, created_at=NOW,
                    updated_at=NOW, name="山田 太郎", birth_date=birth, sex=1, address="東京都")
    return replace(base, **changes)


def card(status: CardStatus = CardStatus.ACTIVE) -> Card:
    return Card(id=7, resident_id="r1", number="C1", expires_on=date(2030, 1, 1), status=status,
                created_at=NOW, status_changed_at=NOW)


def assertion(**changes: Any) -> FaceCheckAssertion:
    fields: dict[str, Any] = {"app": APP, "challenge": CHALLENGE, "card": "a1",
                              "face_image_sha256": bytes(32), "matched": True,
                              "checked_at": NOW - timedelta(seconds=30), **changes}
    return FaceCheckAssertion(**fields)


def password(**changes: Any) -> OnlinePassword:
    base = OnlinePassword(id="p1", card_id=7, app_client_id=APP, password_hash="x",
                          status="active", tries_left=3, created_at=NOW,
                          expires_at=NOW + timedelta(minutes=30))
    return replace(base, **changes)


# --- whose card -------------------------------------------------------------------------------


def test_the_auth_certificate_must_be_ours_a_card_auth_one_and_valid() -> None:
    assert rules.check_auth_certificate(cert(), b"der-a1", NOW).serial == "a1"
    for stored, presented in ((None, b"der-a1"), (cert(), b"der-other"),
                              (cert(kind=CertKind.CARD_SIGN), b"der-a1"),
                              (cert(kind=CertKind.MOBILE_AUTH), b"der-a1"),
                              (cert(revoked_at=NOW - timedelta(seconds=1)), b"der-a1"),
                              (cert(not_after=NOW - timedelta(seconds=1)), b"der-a1"),
                              (cert(card_id=None), b"der-a1")):
        with pytest.raises(HolderProofInvalid):
            rules.check_auth_certificate(stored, presented, NOW)


def test_eligible_holder_card_and_signing_certificate() -> None:
    sign = cert(CertKind.CARD_SIGN, serial="b2")
    older = cert(CertKind.CARD_SIGN, serial="b1", created_at=NOW - timedelta(days=99))
    assert rules.check_eligible(resident(), card(), [cert(), older, sign], NOW) is sign
    with pytest.raises(ResidentInactive):
        rules.check_eligible(resident(status=ResidentStatus.DECEASED), card(), [sign], NOW)
    with pytest.raises(ResidentInactive):
        rules.check_eligible(None, card(), [sign], NOW)
    with pytest.raises(CardInactive):
        rules.check_eligible(resident(), card(CardStatus.LOST), [sign], NOW)
    with pytest.raises(SigningCertificateRevoked):
        rules.check_eligible(resident(), card(), [cert(), replace(
            sign, revoked_at=NOW - timedelta(days=1))], NOW)
    with pytest.raises(SigningCertificateRevoked):
        rules.check_eligible(resident(), card(), [cert()], NOW)


def test_fifteen_on_the_jst_birthday() -> None:
    # 2026-12-02 12:00 JST: born 2011-12-02 is 15 today, born 2011-12-03 is not yet.
    sign = cert(CertKind.CARD_SIGN)
    assert rules.check_eligible(resident(date(2011, 12, 2)), card(), [sign], NOW) is sign
    with pytest.raises(UnderageSigning):
        rules.check_eligible(resident(date(2011, 12, 3)), card(), [sign], NOW)
    # 2026-12-02 15:00Z is already 12-03 in Japan.
    late = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    assert rules.holder_old_enough(date(2011, 12, 3), date(2026, 12, 3))
    assert rules.check_eligible(resident(date(2011, 12, 3)), card(), [sign], late) is sign


# --- the face check -----------------------------------------------------------------------


def test_the_assertion_names_this_app_challenge_and_card_and_is_recent() -> None:
    rules.check_assertion(assertion(), app=APP, challenge=CHALLENGE, auth_serial="a1", now=NOW)
    refused = {
        "app": assertion(app="jpki_" + "cd" * 12),
        "challenge": assertion(challenge=bytes(32)),
        "card": assertion(card="a2"),
        "matched": assertion(matched=False),
    }
    for field, bad in refused.items():
        with pytest.raises(AssertionInvalid) as exc:
            rules.check_assertion(bad, app=APP, challenge=CHALLENGE, auth_serial="a1", now=NOW)
        assert exc.value.context == {"field": field}
    for at in (NOW - rules.ASSERTION_MAX_AGE - timedelta(seconds=1),
               NOW + rules.CLOCK_SKEW + timedelta(seconds=1)):
        with pytest.raises(AssertionInvalid):
            rules.check_assertion(assertion(checked_at=at), app=APP, challenge=CHALLENGE,
                                  auth_serial="a1", now=NOW)
    for at in (NOW - rules.ASSERTION_MAX_AGE, NOW + rules.CLOCK_SKEW):
        rules.check_assertion(assertion(checked_at=at), app=APP, challenge=CHALLENGE,
                              auth_serial="a1", now=NOW)


def test_the_assertion_document_round_trips_and_refuses_what_is_not_one() -> None:
    doc = assertion(checked_at=NOW)
    assert FaceCheckAssertion.parse(doc.to_json()) == doc
    assert doc.to_json().startswith(b'{"type":"jpki-face-check","app":')
    for bad in (b"{", b'{"type":"other"}', doc.to_json().replace(b"true", b'"yes"'),
                doc.to_json().replace(b'"matched"', b'"extra":1,"matched"'),
                doc.to_json().replace(b"03:00:00Z", b"03:00:00")):
        with pytest.raises(PinResetError):
            FaceCheckAssertion.parse(bad)
    with pytest.raises(PinResetError):
        assertion(challenge=b"short")
    with pytest.raises(PinResetError):
        assertion(checked_at=NOW.replace(microsecond=5))


# --- the online password ------------------------------------------------------------------------


def test_online_passwords_are_random_in_their_alphabet_and_hashed_with_scrypt() -> None:
    values = {rules.new_online_password() for _ in range(50)}
    assert len(values) == 50
    for value in values:
        assert normalise_online_password(value) == value
    value = values.pop()
    stored = rules.hash_online_password(value)
    assert stored.startswith("scrypt$16384$8$1$") and value not in stored
    assert rules.online_password_matches(value, stored)
    assert not rules.online_password_matches(values.pop(), stored)
    assert rules.hash_online_password(value) != stored  # a salt of its own


def test_the_typed_password_is_normalised_or_refused() -> None:
    assert normalise_online_password("abcd-efgh jkmn") == "ABCDEFGHJKMN"
    assert group_online_password("ABCDEFGHJKMN") == "ABCD-EFGH-JKMN"
    for typed in ("", "ABCDEFGHJKM", "ABCDEFGHJKMNP", "ABCDEFGHJKM0", "ABCDEFGHJKMI",
                  "ＡＢＣＤＥＦＧＨＪＫＭＮ", "ABCD\nEFGHJKMN"):
        with pytest.raises(PinResetError) as exc:
            normalise_online_password(typed)
        assert exc.value.context == {"field": "online_password"}


def test_the_password_in_force() -> None:
    assert rules.usable_password(password(), NOW).id == "p1"
    with pytest.raises(OnlinePasswordMissing):
        rules.usable_password(None, NOW)
    with pytest.raises(OnlinePasswordExpired):
        rules.usable_password(password(), NOW + timedelta(minutes=30))
    with pytest.raises(OnlinePasswordLocked):
        rules.usable_password(password(tries_left=0), NOW)
    assert rules.tries_after_failure(password()) == (2, "active")
    assert rules.tries_after_failure(password(tries_left=1)) == (0, "locked")


def test_limits() -> None:
    rules.check_limit(2, 3, timedelta(hours=24), "things")
    with pytest.raises(TooManyAttempts) as exc:
        rules.check_limit(3, 3, timedelta(hours=24), "things")
    assert exc.value.retry_after == 86400 and "3 things in 24 hours" in exc.value.detail


def test_signed_messages_are_domain_separated() -> None:
    app = holder_auth_message(ResetPurpose.ONLINE_PASSWORD, CHALLENGE)
    kiosk = holder_auth_message(ResetPurpose.KIOSK_RESET, CHALLENGE)
    assert app != kiosk and not app.startswith(kiosk) and not kiosk.startswith(app)
    reset = card_reset_message(CHALLENGE, b"certificate")
    assert reset != CHALLENGE and reset.endswith(CHALLENGE)
    assert card_reset_message(CHALLENGE, b"another") != reset
