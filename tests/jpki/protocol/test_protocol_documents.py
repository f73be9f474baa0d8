"""The signed documents devices and the CA exchange (jpki.protocol): what each accepts, what it
refuses and with which error, and that its canonical bytes read back as the same document."""

from __future__ import annotations

import base64
import json
import typing
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jpki.errors import InvalidInput
from jpki.protocol.consent import ITEMS, ConsentStatement, ConsentWithdrawal
from jpki.protocol.documents import MAX_DOCUMENT, MAX_TEXT, Document
from jpki.protocol.mobile import (
    MAX_CHALLENGE,
    MAX_DEVICE_REF,
    MAX_KEY,
    ChallengePurpose,
    DeviceRevocationReason,
    MobileApplication,
    MobileCheckIn,
    MobileKind,
    MobileRevocation,
    MobileSuspensionLift,
    Platform,
    pop_message,
)

RP = "rp_0123456789abcdef"
CONSENT = "cs_0123456789abcdef01234567"
DEVICE_ID = "0123456789abcdef0123456789abcdef"
NONCE = "n0nce-of-the_holder"


def application(**changes: Any) -> MobileApplication:
    fields: dict[str, Any] = dict(
        challenge=bytes(range(32)), device="pixel-8a", platform=Platform.ANDROID,
        card_sign_serial="1f3a", sign_public_key=b"\x30\x82sign", auth_public_key=b"\x30\x82auth",
        sign_pop=b"\x01" * 256, auth_pop=b"\x02" * 256)
    fields.update(changes)
    return MobileApplication(**fields)


EXAMPLES: list[Document] = [
    application(),
    MobileRevocation(challenge=b"c" * 32, device=DEVICE_ID,
                     reason=DeviceRevocationReason.DEVICE_CHANGE),
    MobileCheckIn(challenge=b"c" * 32, device=DEVICE_ID),
    MobileSuspensionLift(challenge=b"c" * 32, device=DEVICE_ID, sign_public_key=b"\x30key",
                         sign_pop=b"\x03" * 256),
    ConsentStatement(relying_party=RP, items=("address", "name"), purpose="account_opening",
                     nonce=NONCE, expires_at=datetime(2027, 11, 27, tzinfo=UTC)),
    ConsentWithdrawal(consent_id=CONSENT, nonce=NONCE),
]
IDS = [type(d).__name__ for d in EXAMPLES]


def refused(call: Any, code: str, field: str | None) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call()
    assert caught.value.code == code, caught.value
    assert caught.value.context.get("field") == field, caught.value.context
    return caught.value


# --- the canonical form ---------------------------------------------------------------------


@pytest.mark.parametrize("doc", EXAMPLES, ids=IDS)
def test_the_canonical_bytes_read_back_as_the_same_document(doc: Document) -> None:
    data = doc.to_json()
    assert type(doc).parse(data) == doc
    assert type(doc).parse(doc.to_dict()) == doc
    assert type(doc).parse(data).to_json() == data
    # One byte string: the type first, no whitespace, ASCII only.
    assert data.startswith(b'{"type":"' + type(doc).TYPE.encode() + b'",')
    assert b" " not in data and data.isascii()
    assert json.loads(data) == doc.to_dict()


def test_the_wire_form_is_the_one_the_ca_always_read() -> None:
    """The members and their encodings as earlier clients wrote them (and still may)."""
    assert json.loads(EXAMPLES[0].to_json()) == {
        "type": "jpki-mobile-application/1",
        "challenge": base64.b64encode(bytes(range(32))).decode(), "device": "pixel-8a",
        "platform": "JPKIAPGPSETOKEN", "card_sign_serial": "1f3a",
        "sign_public_key": base64.b64encode(b"\x30\x82sign").decode(),
        "auth_public_key": base64.b64encode(b"\x30\x82auth").decode(),
        "sign_pop": base64.b64encode(b"\x01" * 256).decode(),
        "auth_pop": base64.b64encode(b"\x02" * 256).decode()}
    assert EXAMPLES[4].to_json() == (
        b'{"type":"jpki-rp-consent/1","relying_party":"rp_0123456789abcdef",'
        b'"items":["name","address"],"purpose":"account_opening","nonce":"n0nce-of-the_holder",'
        b'"expires_at":"2027-11-27T00:00:00Z"}')
    assert json.loads(EXAMPLES[1].to_json())["reason"] == "device_change"


@pytest.mark.parametrize("doc", EXAMPLES, ids=IDS)
def test_any_member_order_and_whitespace_is_read(doc: Document) -> None:
    """What a client signed is its own bytes: json.dumps's spacing, members in any order."""
    members = list(doc.to_dict().items())
    data = json.dumps(dict(reversed(members)), indent=2, ensure_ascii=False).encode("utf-8")
    assert type(doc).parse(data) == doc


def test_a_consent_is_read_in_any_time_zone_and_kept_in_utc() -> None:
    data = {**EXAMPLES[4].to_dict(), "expires_at": "2027-11-27T09:00:00+09:00",
            "items": ["address", "name"]}
    statement = ConsentStatement.parse(data)
    assert statement == EXAMPLES[4]
    assert statement.expires_at.tzinfo is UTC and statement.items == ("name", "address")
    assert ConsentStatement.parse(
        {**data, "expires_at": "2027-11-27T00:00:00.250000+00:00"}).to_dict()["expires_at"] == \
        "2027-11-27T00:00:00.250000Z"


def test_documents_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        EXAMPLES[0].device = "another"  # type: ignore[misc]


@given(challenge=st.binary(min_size=1, max_size=MAX_CHALLENGE),
       device=st.text(min_size=1, max_size=MAX_DEVICE_REF).filter(
           lambda d: not any(c < " " or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\udfff"
                             for c in d)),
       platform=st.sampled_from(Platform), serial=st.from_regex(r"[0-9A-Fa-f]{1,40}",
                                                                fullmatch=True),
       keys=st.lists(st.binary(max_size=600), min_size=4, max_size=4))
def test_every_application_reads_back(challenge: bytes, device: str, platform: Platform,
                                      serial: str, keys: list[bytes]) -> None:
    doc = MobileApplication(challenge=challenge, device=device, platform=platform,
                            card_sign_serial=serial, sign_public_key=keys[0],
                            auth_public_key=keys[1], sign_pop=keys[2], auth_pop=keys[3])
    assert MobileApplication.parse(doc.to_json()) == doc


@given(device=st.text(max_size=MAX_TEXT), reason=st.sampled_from(DeviceRevocationReason))
def test_every_holder_request_reads_back(device: str, reason: DeviceRevocationReason) -> None:
    """A device id is any string, which the CA then looks for (jpki.mobile.service)."""
    doc = MobileRevocation(challenge=b"c" * MAX_CHALLENGE, device=device, reason=reason)
    assert MobileRevocation.parse(doc.to_json()) == doc


def test_the_longest_document_is_within_the_bound() -> None:
    """The canonical form of the longest valid document (a lift naming an absurd device) is
    read back: MAX_DOCUMENT refuses only what no valid document can be."""
    lift = MobileSuspensionLift(challenge=b"c" * MAX_CHALLENGE, device="\U0001f4f1" * MAX_TEXT,
                                sign_public_key=b"k" * MAX_KEY, sign_pop=b"p" * MAX_KEY)
    assert len(lift.to_json()) <= MAX_DOCUMENT
    assert MobileSuspensionLift.parse(lift.to_json()) == lift


@given(items=st.lists(st.sampled_from(ITEMS), min_size=1, max_size=4, unique=True),
       purpose=st.from_regex(r"[a-z][a-z0-9_.-]{0,63}", fullmatch=True),
       nonce=st.from_regex(r"[A-Za-z0-9_-]{16,128}", fullmatch=True),
       expires_at=st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(9999, 12, 30),
                               timezones=st.sampled_from([UTC, timezone(timedelta(hours=9)),
                                                          timezone(timedelta(hours=-5))])))
def test_every_consent_reads_back(items: list[str], purpose: str, nonce: str,
                                  expires_at: datetime) -> None:
    doc = ConsentStatement(relying_party=RP, items=tuple(items), purpose=purpose, nonce=nonce,
                           expires_at=expires_at)
    assert ConsentStatement.parse(doc.to_json()) == doc
    assert doc.expires_at == expires_at


# --- refusals -------------------------------------------------------------------------------

MOBILE, CONSENT_CODE = "mobile.invalid", "consent.invalid"


@pytest.mark.parametrize("doc", EXAMPLES, ids=IDS)
@pytest.mark.parametrize(("data", "field"), [
    (b"\xff\xfe{}", None),  # not UTF-8
    (b'{"type": ', None),  # not JSON
    (b"[]", "type"),  # not an object
    (b'"jpki-mobile-application/1"', "type"),
    (b"{}", "type"),  # no type
    (b'{"type": "jpki-other/1"}', "type"),
    (b'{"type": null}', "type"),
], ids=["not utf-8", "not json", "array", "string", "no type", "other type", "null type"])
def test_what_is_not_a_document_of_the_type_is_refused(doc: Document, data: bytes,
                                                         field: str | None) -> None:
    code = doc.error.code
    refused(lambda: type(doc).parse(data), code, field)


@pytest.mark.parametrize("doc", EXAMPLES, ids=IDS)
def test_another_documents_type_is_refused(doc: Document) -> None:
    for other in EXAMPLES:
        if type(other) is not type(doc):
            refused(lambda other=other: type(doc).parse(other.to_json()), doc.error.code,
                    "type")


@pytest.mark.parametrize("doc", EXAMPLES, ids=IDS)
def test_unknown_members_are_refused_without_echoing_their_names(doc: Document) -> None:
    error = refused(lambda: type(doc).parse({**doc.to_dict(), "山田太郎": "1990-01-02"}),
                    doc.error.code, "type")
    assert "山田" not in str(error) and "1990" not in str(error) and "山田" not in repr(error)


@pytest.mark.parametrize("doc", EXAMPLES, ids=IDS)
def test_a_member_named_twice_is_refused(doc: Document) -> None:
    data = doc.to_json()
    first = next(k for k in doc.to_dict() if k != "type")
    twice = data[:-1] + b"," + json.dumps({first: doc.to_dict()[first]}).encode()[1:]
    assert json.loads(twice) == doc.to_dict()  # a lax reader would take it
    refused(lambda: type(doc).parse(twice), doc.error.code, None)


@pytest.mark.parametrize("doc", EXAMPLES, ids=IDS)
def test_oversized_input_is_refused_before_it_is_read(doc: Document) -> None:
    data = doc.to_json()
    padded = data[:1] + b" " * (MAX_DOCUMENT + 1 - len(data)) + data[1:]
    assert len(padded) == MAX_DOCUMENT + 1 and json.loads(padded) == doc.to_dict()
    error = refused(lambda: type(doc).parse(padded), doc.error.code, None)
    assert str(MAX_DOCUMENT) in error.detail
    assert type(doc).parse(padded.replace(b" ", b"", 1)) == doc  # at the bound: read


@pytest.mark.parametrize("doc", EXAMPLES, ids=IDS)
def test_every_member_is_required_and_typed(doc: Document) -> None:
    for name in doc.to_dict():
        if name == "type":
            continue
        members = doc.to_dict()
        del members[name]
        refused(lambda m=members: type(doc).parse(m), doc.error.code, name)
        for wrong in (None, 1, True, {"x": 1}, ["x"] if name != "items" else "name"):
            typed_wrong = {**doc.to_dict(), name: wrong}
            refused(lambda m=typed_wrong: type(doc).parse(m), doc.error.code, name)


def _members(doc: Document, **changes: Any) -> dict[str, Any]:
    return {**doc.to_dict(), **changes}


B64 = base64.b64encode
MOBILE_CASES = [
    ("challenge", "not base64!", 0),
    ("challenge", "", 0),
    ("challenge", B64(b"c" * (MAX_CHALLENGE + 1)).decode(), 0),
    ("challenge", "A" * (MAX_TEXT + 4), 0),
    ("device", "", 0),
    ("device", "d" * (MAX_DEVICE_REF + 1), 0),
    ("device", "pixel\x00", 0),
    ("device", "pixel\n8a", 0),
    ("device", "pixel\ud800", 0),
    ("platform", "JPKIAPICCTOKEN2", 0),
    ("platform", "jpkiapgpsetoken", 0),
    ("card_sign_serial", "", 0),
    ("card_sign_serial", "0x1f", 0),
    ("card_sign_serial", "1" * 41, 0),
    ("card_sign_serial", "1f\n", 0),
    ("sign_public_key", B64(b"k" * (MAX_KEY + 1)).decode(), 0),
    ("auth_pop", "AAA", 0),  # bad padding
    ("reason", "stolen", 1),
    ("reason", "Sale", 1),
    ("device", "d" * (MAX_TEXT + 1), 2),
    ("sign_pop", "A" * (MAX_TEXT + 4), 3),
    ("challenge", "", 3),
]


@pytest.mark.parametrize(("field", "value", "which"), MOBILE_CASES,
                         ids=[f"{EXAMPLES[w].TYPE}-{f}-{i}"
                              for i, (f, _, w) in enumerate(MOBILE_CASES)])
def test_mobile_members_out_of_range_are_refused(field: str, value: str, which: int) -> None:
    doc = EXAMPLES[which]
    members = _members(doc, **{field: value})
    for data in (members, json.dumps(members).encode()):
        refused(lambda data=data: type(doc).parse(data), MOBILE, field)


CONSENT_CASES = [
    ("relying_party", "rp_0123", 4),
    ("relying_party", RP + "\n", 4),
    ("relying_party", RP.upper(), 4),
    ("items", [], 4),
    ("items", ["name", "income"], 4),
    ("items", ["name", "name"], 4),
    ("items", [*ITEMS, "name"], 4),
    ("purpose", "Account", 4),
    ("purpose", "a" * 65, 4),
    ("nonce", "short", 4),
    ("nonce", NONCE + "\n", 4),
    ("nonce", "n" * 129, 4),
    ("nonce", "nonce with spaces!", 4),
    ("expires_at", "2027-11-27T00:00:00", 4),  # no time zone
    ("expires_at", "2027-11-27", 4),
    ("expires_at", "tomorrow", 4),
    ("expires_at", "9999-12-31T23:00:00-05:00", 4),  # after 9999 in UTC
    ("expires_at", "2027-11-27T00:00:00Z" + " " * 64, 4),
    ("consent_id", "cs_123", 5),
    ("consent_id", CONSENT + "\n", 5),
    ("nonce", "", 5),
]


@pytest.mark.parametrize(("field", "value", "which"), CONSENT_CASES,
                         ids=[f"{EXAMPLES[w].TYPE}-{f}-{i}"
                              for i, (f, _, w) in enumerate(CONSENT_CASES)])
def test_consent_members_out_of_range_are_refused(field: str, value: Any, which: int) -> None:
    doc = EXAMPLES[which]
    refused(lambda: type(doc).parse(json.dumps(_members(doc, **{field: value})).encode()),
            CONSENT_CODE, field)


def test_a_device_cannot_build_what_the_ca_would_refuse() -> None:
    """The constructors hold the same rules as parse: nothing invalid gets signed."""
    refused(lambda: application(device=""), MOBILE, "device")
    refused(lambda: application(platform="JPKIAPICCTOKEN2"), MOBILE, "platform")
    refused(lambda: application(challenge=b""), MOBILE, "challenge")
    refused(lambda: MobileRevocation(challenge=b"c", device=DEVICE_ID,
                                     reason="stolen"),  # type: ignore[arg-type]
            MOBILE, "reason")
    refused(lambda: ConsentStatement(relying_party=RP, items=("name",), purpose="test",
                                     nonce=NONCE, expires_at=datetime(2027, 1, 1)),
            CONSENT_CODE, "expires_at")
    refused(lambda: ConsentWithdrawal(consent_id="cs_1", nonce=NONCE), CONSENT_CODE,
            "consent_id")
    # An enum given as its wire string is taken as the enum.
    assert application(platform="JPKIAPIOSTOKEN").platform is Platform.IOS


# --- the proof of possession and the shared vocabulary --------------------------------------


def test_the_proof_of_possession_message_is_fixed() -> None:
    """The bytes both sides sign and verify: changing them breaks every phone in the field."""
    assert pop_message(b"\x01\x02", "pixel-8a", MobileKind.SIGN) == \
        b"jpki-mobile-pop\x00\x00\x01\x02\x00pixel-8a\x00mobile_sign"
    assert pop_message(b"c", "端末", MobileKind.AUTH) == \
        b"jpki-mobile-pop\x00\x00c\x00" + "端末".encode() + b"\x00mobile_auth"
    with pytest.raises(ValueError):
        pop_message(b"c", "d", "card_sign")  # type: ignore[arg-type]


def test_the_protocols_names_are_the_cas() -> None:
    """The protocol keeps its own copies of the wire strings (it may not import jpki.model or
    the API); these are the CA's."""
    from api.schemas import ChallengeIn
    from jpki.mobile.service import WIRE_KIND
    from jpki.model import CertKind

    assert {k.value: v.value for k, v in WIRE_KIND.items()} == {
        "mobile_sign": "mobile_sign", "mobile_auth": "mobile_auth"}
    assert set(WIRE_KIND) == {k for k in CertKind if k.is_mobile}
    assert all(k.is_signing == v.is_signing for k, v in WIRE_KIND.items())
    literal = typing.get_args(ChallengeIn.model_fields["purpose"].annotation)
    assert set(literal) == {p.value for p in ChallengePurpose}
    assert {d.PURPOSE for d in EXAMPLES if hasattr(d, "PURPOSE")} == set(ChallengePurpose)
