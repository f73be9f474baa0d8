"""A JPKI-AP client over any :class:`~devices.card.transport.Transport` (reference §4).

The holder-side commands are exactly those of the real card and of OpenSC's jpki driver:
SELECT by AID and by FID, READ BINARY, VERIFY, CHANGE PIN, COMPUTE DIGITAL SIGNATURE. The issuer
side — GET CHALLENGE, EXTERNAL AUTHENTICATE, GENERATE ASYMMETRIC KEY PAIR, UPDATE BINARY, RESET
RETRY COUNTER — is the ISO/IEC 7816 personalisation that architecture §7 adds for the enrolment
station; the card accepts it only after the station has authenticated as the issuer.

Every refusal raises (:mod:`devices.card.errors`): a wrong PIN is :class:`WrongPin` with the tries
left, a blocked one :class:`PinBlocked`, a missing VERIFY :class:`SecurityStatusNotSatisfied`.
PIN values never appear in errors, logs or reprs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from devices.card import tlv
from devices.card.apdu import (
    SW_FILE_NOT_FOUND,
    SW_OK,
    SW_PIN_BLOCKED,
    SW_SECURITY_STATUS,
    SW_VERIFICATION_FAILED,
    SW_WRONG_P1P2,
    SW_WRONG_PIN,
    CommandApdu,
    ResponseApdu,
)
from devices.card.errors import (
    CardFileNotFound,
    CardStatusError,
    CertificateAbsent,
    IssuerAuthenticationFailed,
    MalformedCardResponse,
    PinBlocked,
    SecurityStatusNotSatisfied,
    WrongPin,
)
from devices.card.jpki_ap import (
    CERTIFICATE_PRESENT,
    JPKI_AP_AID,
    TOKEN_LABEL_LENGTH,
    CertSlot,
    Ef,
    Key,
    Pin,
    SignScheme,
    sign_input_length_ok,
)
from devices.card.pins import encode_pin
from devices.card.transport import Transport

# Instruction bytes (reference §4.4; ISO/IEC 7816-4 / -8 for the issuance commands).
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_UPDATE_BINARY = 0xD6
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE_DATA = 0x24
INS_RESET_RETRY_COUNTER = 0x2C
INS_COMPUTE_SIGNATURE = 0x2A  # with CLA 80: the card's own command, not ISO PSO
INS_GET_CHALLENGE = 0x84
INS_EXTERNAL_AUTHENTICATE = 0x82
INS_GENERATE_KEY_PAIR = 0x47
INS_GET_DATA = 0xCA

CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80

P1_SELECT_BY_FID = 0x02
P1_SELECT_BY_AID = 0x04
P2_NO_RESPONSE_DATA = 0x0C
P2_CURRENT_EF = 0x80  # VERIFY / CHANGE / sign: the currently selected EF holds the reference
P1_CHANGE_NEW_ONLY = 0x01  # CHANGE REFERENCE DATA after VERIFY: data = the new PIN only
P1_RESET_WITH_NEW_PIN = 0x02  # RESET RETRY COUNTER: data = the new PIN, no resetting code
P1_RESET_COUNTER_ONLY = 0x03
P1_GENERATE = 0x00
P1_READ_PUBLIC_KEY = 0x81

READ_CHUNK = 256  # READ BINARY Le 00: the most one short APDU returns
WRITE_CHUNK = 255  # UPDATE BINARY: the most one short Lc carries
MAX_OFFSET = 0x7FFF  # READ/UPDATE BINARY: 15-bit offset, P1 b8 = 0 (reference §4.4)
ISSUER_CHALLENGE_LENGTH = 32
P2_RESET_SIGN_PIN = 0x80 | Ef.SIGN_PIN.sfi  # EXTERNAL AUTHENTICATE: one sign-PIN reset (§7.1)


@dataclass(frozen=True)
class CertificateAvailability:
    """EF 0008 (reference §4.3): ``8F`` in byte 0 / 1 = sign / auth certificate present."""

    raw: bytes

    @property
    def sign(self) -> bool:
        return len(self.raw) > 0 and self.raw[0] == CERTIFICATE_PRESENT

    @property
    def auth(self) -> bool:
        return len(self.raw) > 1 and self.raw[1] == CERTIFICATE_PRESENT


def availability_bytes(sign: bool, auth: bool) -> bytes:
    """The three bytes of EF 0008; ``8F 8F 00`` on a card holding both certificates."""
    return bytes((CERTIFICATE_PRESENT if sign else 0, CERTIFICATE_PRESENT if auth else 0, 0))


def der_length(header: bytes) -> int | None:
    """Total length of the DER object whose first bytes are ``header``, or None if unknown yet.

    OpenSC takes ``(b[2] << 8 | b[3]) + 4`` from the first 4 bytes (reference §4.4); this
    reads the general definite form so that short certificates work as well.
    """
    if len(header) < 2:
        return None
    first = header[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 3:
        raise MalformedCardResponse("the EF does not start with a DER definite length")
    if len(header) < 2 + count:
        return None
    return 2 + count + int.from_bytes(header[2:2 + count], "big")


class JpkiCard:
    """A card (or phone token) with JPKI-AP, reached through ``transport``."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    # --- raw exchange -------------------------------------------------------------------

    def transmit(self, command: CommandApdu) -> ResponseApdu:
        """One command, the complete response (61xx / 6Cxx already handled by the transport)."""
        return ResponseApdu.parse(self.transport.transmit(command.encode()))

    def _ok(self, command: CommandApdu, what: str) -> bytes:
        response = self.transmit(command)
        if response.sw != SW_OK:
            raise refusal(response.sw, what)
        return response.data

    def call(self, command: CommandApdu, what: str) -> bytes:
        """One command that must answer 90 00: its data; any other status word raises
        (:func:`refusal`, ``what`` naming the command). For the other applications' clients."""
        return self._ok(command, what)

    # --- selection and reading ------------------------------------------------------------

    def select_jpki_ap(self) -> None:
        """``00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01`` (reference §4.4)."""
        self._ok(CommandApdu(CLA_ISO, INS_SELECT, P1_SELECT_BY_AID, P2_NO_RESPONSE_DATA,
                             JPKI_AP_AID), "SELECT JPKI-AP")

    def select_ef(self, fid: int) -> None:
        """``00 A4 02 0C 02 <FID>`` (reference §4.4)."""
        self._ok(CommandApdu(CLA_ISO, INS_SELECT, P1_SELECT_BY_FID, P2_NO_RESPONSE_DATA,
                             fid.to_bytes(2, "big")), f"SELECT EF {fid:04X}")

    def read_binary(self, offset: int, length: int) -> bytes:
        """READ BINARY of the current EF: ``00 B0 <offset, 15 bits> <Le>``, 1..256 bytes."""
        if not 0 <= offset <= MAX_OFFSET:
            raise ValueError("READ BINARY offsets are 15 bits")
        if not 1 <= length <= READ_CHUNK:
            raise ValueError("one READ BINARY returns 1..256 bytes")
        return self._ok(CommandApdu(CLA_ISO, INS_READ_BINARY, offset >> 8, offset & 0xFF,
                                    le=length), "READ BINARY")

    def read_binary_all(self, fid: int) -> bytes:
        """Select ``fid`` and read the DER object it holds, as OpenSC does (reference §4.4).

        Reads 4 bytes, takes the size from the DER header, then reads the rest with offsets.
        An empty EF gives ``b""``.
        """
        self.select_ef(fid)
        try:
            header = self.read_binary(0, 4)
        except CardStatusError as exc:
            if exc.sw == SW_WRONG_P1P2:  # offset 0 is already past the end: the EF is empty
                return b""
            raise
        if header[:1] != b"\x30":
            raise MalformedCardResponse(f"EF {fid:04X} does not hold a DER SEQUENCE")
        total = der_length(header)
        if total is None:
            raise MalformedCardResponse(f"EF {fid:04X} is shorter than its DER header")
        if total > MAX_OFFSET + 1:
            raise MalformedCardResponse(f"EF {fid:04X} claims {total} bytes")
        data = bytearray(header[:total])
        while len(data) < total:
            data += self.read_binary(len(data), min(READ_CHUNK, total - len(data)))
        return bytes(data)

    def token_label(self) -> str:
        """The first 32 bytes of EF 0006, space padded (reference §2, §4.3)."""
        self.select_ef(Ef.TOKEN_INFO)
        raw = self.read_binary(0, TOKEN_LABEL_LENGTH)
        return raw.decode("ascii", errors="replace").rstrip(" \x00")

    def availability(self) -> CertificateAvailability:
        """EF 0008: which certificates the card holds (reference §4.3)."""
        self.select_ef(Ef.AVAILABILITY)
        return CertificateAvailability(self.read_binary(0, 3))

    def read_certificate_der(self, slot: CertSlot) -> bytes:
        der = self.read_binary_all(slot)
        if not der:
            raise CertificateAbsent(f"EF {int(slot):04X} is empty")
        return der

    def read_certificate(self, slot: CertSlot) -> x509.Certificate:
        """A certificate EF. The signing certificate (0001) needs the sign PIN first (6982)."""
        der = self.read_certificate_der(slot)
        try:
            return x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise MalformedCardResponse(f"EF {int(slot):04X} is not a certificate") from exc

    # --- PINs --------------------------------------------------------------------------------

    def pin_retries(self, pin: Pin) -> int:
        """Tries left, without spending one: empty VERIFY → 63Cx (0 when blocked: 6984)."""
        self.select_ef(pin)
        response = self.transmit(CommandApdu(CLA_ISO, INS_VERIFY, 0x00, P2_CURRENT_EF))
        if response.sw1 == SW_WRONG_PIN >> 8 and response.sw2 & 0xF0 == SW_WRONG_PIN & 0xFF:
            return response.sw2 & 0x0F
        if response.sw == SW_PIN_BLOCKED:
            return 0
        raise refusal(response.sw, "VERIFY (retry counter)")

    def verify_pin(self, pin: Pin, value: str) -> None:
        """``00 20 00 80 Lc <PIN>`` after selecting the PIN EF (reference §4.4).

        The sign password is upper-cased as real clients do; a value of the wrong format is
        refused here (:class:`InvalidPinFormat`) without spending a try.
        """
        raw = encode_pin(pin, value)
        self.select_ef(pin)
        self._ok(CommandApdu(CLA_ISO, INS_VERIFY, 0x00, P2_CURRENT_EF, raw), "VERIFY")

    def change_pin(self, pin: Pin, old: str, new: str) -> None:
        """VERIFY ``old``, then CHANGE REFERENCE DATA ``00 24 01 80 Lc <new>`` (§4.4)."""
        new_raw = encode_pin(pin, new)  # refuse a bad new PIN before spending a try on the old
        self.verify_pin(pin, old)
        self._ok(CommandApdu(CLA_ISO, INS_CHANGE_REFERENCE_DATA, P1_CHANGE_NEW_ONLY,
                             P2_CURRENT_EF, new_raw), "CHANGE REFERENCE DATA")

    # --- signing -------------------------------------------------------------------------------

    def sign(self, key: Key, digest_info: bytes) -> bytes:
        """The classic JPKI signature: SELECT the key EF, ``80 2A 00 80 Lc <DigestInfo> 00``.

        The card pads with PKCS#1 v1.5 (reference §4.4); the key's PIN must have been
        verified in this card session.
        """
        return self.compute_signature(key, digest_info, SignScheme.PKCS1_AS_GIVEN)

    def compute_signature(self, key: Key, data: bytes, scheme: SignScheme, *,
                          by_sfi: bool = False) -> bytes:
        """COMPUTE DIGITAL SIGNATURE with any P1 scheme of reference §4.4.

        ``by_sfi`` names the key in P2 (``97`` / ``9A``) instead of selecting its EF first.
        """
        if not sign_input_length_ok(scheme, len(data)):
            raise ValueError(f"scheme {scheme.name} does not take {len(data)} bytes")
        if by_sfi:
            p2 = 0x80 | Ef(key).sfi
        else:
            self.select_ef(key)
            p2 = P2_CURRENT_EF
        signature = self._ok(CommandApdu(CLA_PROPRIETARY, INS_COMPUTE_SIGNATURE, scheme, p2,
                                         data, le=256), "COMPUTE DIGITAL SIGNATURE")
        if not signature:
            raise MalformedCardResponse("the card returned an empty signature")
        return signature

    # --- issuer side -------------------------------------------------------------------------

    def get_challenge(self, n: int = ISSUER_CHALLENGE_LENGTH) -> bytes:
        """GET CHALLENGE ``00 84 00 00 n``: n random bytes for EXTERNAL AUTHENTICATE."""
        if not 1 <= n <= 256:
            raise ValueError("GET CHALLENGE returns 1..256 bytes")
        challenge = self._ok(CommandApdu(CLA_ISO, INS_GET_CHALLENGE, 0x00, 0x00, le=n),
                             "GET CHALLENGE")
        if len(challenge) != n:
            raise MalformedCardResponse(f"asked for a {n}-byte challenge, got {len(challenge)}")
        return challenge

    def external_authenticate(self, response: bytes) -> None:
        """EXTERNAL AUTHENTICATE ``00 82 00 00 Lc <signature over the last challenge>``.

        A 256-byte RSA-2048 signature does not fit a short Lc, so this is an extended APDU.
        """
        answer = self.transmit(CommandApdu(CLA_ISO, INS_EXTERNAL_AUTHENTICATE, 0x00, 0x00,
                                           response))
        if answer.sw == SW_VERIFICATION_FAILED:
            raise IssuerAuthenticationFailed("the card did not accept the issuer's signature",
                                             answer.sw)
        if answer.sw != SW_OK:
            raise refusal(answer.sw, "EXTERNAL AUTHENTICATE")

    def relay_reset_authorisation(self, signature: bytes) -> None:
        """EXTERNAL AUTHENTICATE ``00 82 00 9B Lc <signature>``: the CA's authorisation of one
        signing-PIN reset over the card's last challenge (architecture §7.1). The very next
        command must be :meth:`reset_retry_counter` of :attr:`Pin.SIGN`."""
        answer = self.transmit(CommandApdu(CLA_ISO, INS_EXTERNAL_AUTHENTICATE, 0x00,
                                           P2_RESET_SIGN_PIN, signature))
        if answer.sw == SW_VERIFICATION_FAILED:
            raise IssuerAuthenticationFailed("the card did not accept the reset authorisation",
                                             answer.sw)
        if answer.sw != SW_OK:
            raise refusal(answer.sw, "EXTERNAL AUTHENTICATE (reset)")

    def authenticate_issuer(self, issuer_private_key: rsa.RSAPrivateKey) -> None:
        """Challenge → RSA PKCS#1 v1.5 SHA-256 signature by the issuer → EXTERNAL AUTHENTICATE.

        ``issuer_private_key`` may be an HSM-backed key (a ``cryptography`` subclass whose
        ``sign`` calls the token). The card stays authenticated until it is reset or removed.
        """
        challenge = self.get_challenge()
        signature = issuer_private_key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
        self.external_authenticate(signature)

    def generate_key_pair(self, key: Key) -> rsa.RSAPublicKey:
        """GENERATE ASYMMETRIC KEY PAIR ``00 47 00 00 Lc B6{84 <key FID>} 00``.

        The card makes a fresh RSA-2048 key in the key EF and answers ``7F49 { 81 n, 82 e }``
        (ISO/IEC 7816-8). The private key never leaves the card. Issuer authentication first.
        """
        return self._public_key(key, P1_GENERATE, "GENERATE ASYMMETRIC KEY PAIR")

    def read_public_key(self, key: Key) -> rsa.RSAPublicKey:
        """``00 47 81 00``: the public half of the key already in the key EF (resuming work)."""
        return self._public_key(key, P1_READ_PUBLIC_KEY, "GENERATE ASYMMETRIC KEY PAIR (read)")

    def _public_key(self, key: Key, p1: int, what: str) -> rsa.RSAPublicKey:
        data = self._ok(CommandApdu(CLA_ISO, INS_GENERATE_KEY_PAIR, p1, 0x00,
                                    tlv.encode_key_reference(key), le=256), what)
        try:
            return tlv.decode_rsa_public_key(data)
        except ValueError as exc:
            raise MalformedCardResponse(f"{what}: not a 7F49 public key template") from exc

    def write_file(self, fid: int, data: bytes) -> None:
        """SELECT ``fid`` and UPDATE BINARY ``00 D6 <offset> Lc <chunk>`` in chunks of ≤255 bytes.

        The emulator's EFs have a variable length: a write at offset 0 starts new contents, so
        after this the EF holds exactly ``data``. Issuer authentication first.
        """
        if not data:
            raise ValueError("nothing to write")
        if len(data) > MAX_OFFSET + 1:
            raise ValueError("an EF holds at most 32768 bytes")
        self.select_ef(fid)
        for offset in range(0, len(data), WRITE_CHUNK):
            chunk = data[offset:offset + WRITE_CHUNK]
            self._ok(CommandApdu(CLA_ISO, INS_UPDATE_BINARY, offset >> 8, offset & 0xFF, chunk),
                     f"UPDATE BINARY EF {fid:04X}")

    def reset_retry_counter(self, pin: Pin, new_value: str) -> None:
        """RESET RETRY COUNTER ``00 2C 02 <80|SFI> Lc <new PIN>``: set the PIN, full counter.

        What the municipal window does for a forgotten or blocked PIN (reference §4.5
        "Unlock"). Issuer authentication first.
        """
        raw = encode_pin(pin, new_value)
        self._ok(CommandApdu(CLA_ISO, INS_RESET_RETRY_COUNTER, P1_RESET_WITH_NEW_PIN,
                             0x80 | Ef(pin).sfi, raw), "RESET RETRY COUNTER")

    def set_availability(self, sign: bool, auth: bool) -> None:
        """Write EF 0008 (``8F 8F 00`` when both certificates are present)."""
        self.write_file(Ef.AVAILABILITY, availability_bytes(sign, auth))

    def write_certificate(self, slot: CertSlot, certificate: x509.Certificate) -> None:
        """Write a certificate's DER into its EF (issuer authentication first)."""
        self.write_file(slot, certificate.public_bytes(Encoding.DER))

    def close(self) -> None:
        self.transport.close()


def refusal(sw: int, what: str) -> CardStatusError:
    """The error for a status word (reference §4.5 table)."""
    if sw >> 4 == SW_WRONG_PIN >> 4:
        return WrongPin(f"{what}: wrong PIN, {sw & 0x0F} tries left", sw)
    if sw == SW_PIN_BLOCKED:
        return PinBlocked(f"{what}: the PIN is blocked", sw)
    if sw == SW_SECURITY_STATUS:
        return SecurityStatusNotSatisfied(f"{what}: security status not satisfied", sw)
    if sw == SW_FILE_NOT_FOUND:
        return CardFileNotFound(f"{what}: not found", sw)
    return CardStatusError(f"{what}: the card answered {sw:04X}", sw)
