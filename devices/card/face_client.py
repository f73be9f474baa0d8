"""Clients of the 券面 applications (reference §4.6) over any transport, and card issuance.

- :class:`FaceApClient`: SELECT the 券面事項入力補助AP or the 券面事項確認AP, read a key
  reference's counter, VERIFY, read files and decode them — what an independent reader does.
- :func:`pin_status`: every counter on the card in the order the Rust ``myna pin status`` reads
  them (text AP 0011, 0014, 0015; surface AP 0013, 0012, and 0011; JPKI-AP 0018, 001B).
- :func:`issue_face_aps`: card issuance (カード発行) of the two applications — issuer
  authentication, the files, the PIN and the 照合番号 — in the manner of the station's JPKI-AP
  personalisation (architecture §7): ISO/IEC 7816 commands the card accepts only from the issuer.

Nothing here sends anything to the CA; the station's enrolment does not use this module (the
individual number never reaches the CA, reference §4.6). Values never appear in errors or reprs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from devices.card import face_aps, face_data, tlv
from devices.card.apdu import (
    SW_PIN_BLOCKED,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_WRONG_P1P2,
    SW_WRONG_PIN,
    CommandApdu,
)
from devices.card.client import (
    CLA_ISO,
    INS_RESET_RETRY_COUNTER,
    INS_SELECT,
    INS_VERIFY,
    MAX_OFFSET,
    P1_RESET_WITH_NEW_PIN,
    P1_SELECT_BY_AID,
    P2_CURRENT_EF,
    P2_NO_RESPONSE_DATA,
    READ_CHUNK,
    JpkiCard,
    refusal,
)
from devices.card.errors import CardStatusError, InvalidPinFormat, MalformedCardResponse
from devices.card.face_aps import Credential, DataFile, FaceAp
from devices.card.jpki_ap import Pin

HEADER_READ = 8  # enough for any header here (FF20 82 xxxx), fewer than the smallest file


class FaceApClient:
    """The 券面 applications of the card behind ``card`` (a :class:`JpkiCard`'s transport)."""

    def __init__(self, card: JpkiCard) -> None:
        self.card = card

    def select(self, ap: FaceAp) -> None:
        """``00 A4 04 0C 0A <AID>`` (reference §4.2, §4.4)."""
        self.card.call(CommandApdu(CLA_ISO, INS_SELECT, P1_SELECT_BY_AID, P2_NO_RESPONSE_DATA,
                                  ap.aid), f"SELECT {ap.label}")

    def retries(self, reference: Credential) -> int | None:
        """Tries left without spending one (empty VERIFY → 63Cx; 6984 → 0); ``None`` when the
        reference was never set (6A88: a card not yet issued). The application must be current.
        """
        self.card.select_ef(reference.fid)
        response = self.card.transmit(CommandApdu(CLA_ISO, INS_VERIFY, 0x00, P2_CURRENT_EF))
        if response.sw1 == SW_WRONG_PIN >> 8 and response.sw2 & 0xF0 == SW_WRONG_PIN & 0xFF:
            return response.sw2 & 0x0F
        if response.sw == SW_PIN_BLOCKED:
            return 0
        if response.sw == SW_REFERENCED_DATA_NOT_FOUND:
            return None
        raise refusal(response.sw, f"VERIFY {reference.name} (retry counter)")

    def verify(self, reference: Credential, value: str) -> None:
        """``00 20 00 80 Lc <value>`` after SELECT of the key reference. A value of the wrong
        format is refused here (:class:`InvalidPinFormat`) without spending a try."""
        raw = _encode(reference, value)
        self.card.select_ef(reference.fid)
        self.card.call(CommandApdu(CLA_ISO, INS_VERIFY, 0x00, P2_CURRENT_EF, raw),
                      f"VERIFY {reference.name}")

    def read_file(self, ef: DataFile) -> bytes:
        """SELECT ``ef`` and read the BER object it holds: its header first, then the rest."""
        self.card.select_ef(ef.fid)
        try:
            head = self.card.read_binary(0, HEADER_READ)
        except CardStatusError as exc:
            if exc.sw == SW_WRONG_P1P2:  # offset 0 past the end: the file is empty
                return b""
            raise
        try:
            total = tlv.object_length(head)
        except ValueError as exc:
            raise MalformedCardResponse(f"EF {ef.fid:04X} does not hold a BER object") from exc
        if total is None or total > MAX_OFFSET + 1:
            raise MalformedCardResponse(f"EF {ef.fid:04X} has no usable BER header")
        data = bytearray(head[:total])
        while len(data) < total:
            data += self.card.read_binary(len(data), min(READ_CHUNK, total - len(data)))
        return bytes(data)

    def read_my_number(self) -> str:
        """EF 0001 of the text AP (after its PIN or 照合番号A)."""
        try:
            return face_data.parse_my_number(self.read_file(face_aps.TEXT_MY_NUMBER))
        except ValueError as exc:
            raise MalformedCardResponse("EF 0001 is not an individual number") from exc

    def read_basic4(self) -> face_data.Basic4Text:
        """EF 0002 of the text AP (after its PIN or 照合番号B)."""
        try:
            return face_data.parse_basic4(self.read_file(face_aps.TEXT_BASIC4))
        except (ValueError, KeyError) as exc:
            raise MalformedCardResponse("EF 0002 is not the basic 4 information") from exc

    def read_card_face(self) -> face_data.CardFace:
        """EF 0002 of the surface AP (after 照合番号A or B): the face image and card surface."""
        try:
            return face_data.parse_card_face(self.read_file(face_aps.SURFACE_FACE))
        except (ValueError, KeyError) as exc:
            raise MalformedCardResponse("EF 0002 is not a card face record") from exc

    # --- card issuance ------------------------------------------------------------------------

    def write_file(self, ef: DataFile, data: bytes) -> None:
        """UPDATE BINARY in chunks (issuer authentication first); the EF then holds ``data``."""
        self.card.write_file(ef.fid, data)

    def set_value(self, reference: Credential, value: str) -> None:
        """RESET RETRY COUNTER ``00 2C 02 <80|SFI> Lc <value>``: set it with a full counter."""
        raw = _encode(reference, value)
        self.card.call(CommandApdu(CLA_ISO, INS_RESET_RETRY_COUNTER, P1_RESET_WITH_NEW_PIN,
                                  0x80 | reference.sfi, raw), f"RESET RETRY COUNTER "
                      f"{reference.name}")


def _encode(reference: Credential, value: str) -> bytes:
    raw = value.encode("ascii", errors="replace")
    if not value.isascii() or not reference.well_formed(raw):
        raise InvalidPinFormat(f"{reference.name}: exactly {reference.digits} digits")
    return raw


def issue_face_aps(card: JpkiCard, issuer_key: rsa.RSAPrivateKey,
                   surface: face_data.CardSurface, *, pin: str) -> None:
    """Card issuance of both 券面 applications (reference §4.6): files and credentials.

    ``pin`` is the holder's 4-digit 券面事項入力補助用暗証番号. 照合番号A is the individual
    number; 照合番号B and the birth-date key follow from ``surface``.
    """
    _encode(face_aps.TEXT_PIN, pin)  # refuse a malformed PIN before touching the card
    client = FaceApClient(card)
    client.select(FaceAp.TEXT)
    card.authenticate_issuer(issuer_key)  # lasts for the card session, across applications
    for ef, data in face_data.build_text_ap(surface, issuer_key).items():
        client.write_file(ef, data)
    client.set_value(face_aps.TEXT_PIN, pin)
    client.set_value(face_aps.TEXT_CODE_A, surface.my_number)
    client.set_value(face_aps.TEXT_CODE_B, surface.code_b)
    client.select(FaceAp.SURFACE)
    for ef, data in face_data.build_surface_ap(surface, issuer_key).items():
        client.write_file(ef, data)
    client.set_value(face_aps.SURFACE_BIRTH, surface.birth_key)
    client.set_value(face_aps.SURFACE_CODE_B, surface.code_b)
    client.set_value(face_aps.SURFACE_CODE_A, surface.my_number)


@dataclass(frozen=True)
class PinStatus:
    """One counter of :func:`pin_status`: ``retries`` None = never set (6A88)."""

    application: str
    name: str
    fid: int
    retries: int | None


def pin_status(card: JpkiCard) -> list[PinStatus]:
    """Every counter, as an open-source reader's "PIN status" reads them (reference §4.6)."""
    client = FaceApClient(card)
    out: list[PinStatus] = []
    for ap, references in ((FaceAp.TEXT, (face_aps.TEXT_PIN, face_aps.TEXT_CODE_A,
                                          face_aps.TEXT_CODE_B)),
                           (FaceAp.SURFACE, (face_aps.SURFACE_CODE_A, face_aps.SURFACE_CODE_B,
                                             face_aps.SURFACE_BIRTH))):
        client.select(ap)
        for reference in references:
            out.append(PinStatus(ap.label, reference.name, reference.fid,
                                 client.retries(reference)))
    card.select_jpki_ap()
    for pin, name in ((Pin.AUTH, "利用者証明用暗証番号"), (Pin.SIGN, "署名用パスワード")):
        retries = _jpki_retries(card, pin)
        out.append(PinStatus("公的個人認証AP", name, int(pin), retries))
    return out


def _jpki_retries(card: JpkiCard, pin: Pin) -> int | None:
    try:
        return card.pin_retries(pin)
    except CardStatusError as exc:
        if exc.sw == SW_REFERENCED_DATA_NOT_FOUND:  # a blank card: never set
            return None
        raise
