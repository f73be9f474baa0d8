"""A virtual My Number Card JPKI application: :class:`JpkiCardEmulator` answers APDUs.

It implements reference §4 as documented there — the AID, the EFs of §4.3 and their access
rules, the APDUs of §4.4 and the PIN semantics and status words of §4.5 — plus the ISO/IEC 7816
personalisation commands of architecture §7 (GENERATE ASYMMETRIC KEY PAIR, UPDATE BINARY,
RESET RETRY COUNTER), which it accepts only after EXTERNAL AUTHENTICATE by the issuer. The card's
two other applications, 券面事項入力補助AP and 券面事項確認AP (reference §4.6), answer SELECT by
their AIDs; while one of them is current, :mod:`devices.card.emulator.face_apps` handles their
files and credentials.

Decisions where the reference is silent (each also noted at the code):

- A VERIFY value of the wrong format (e.g. 5 digits for the auth PIN) is simply a wrong PIN: a
  card compares, it does not parse, so such an attempt spends a try. Clients refuse malformed PINs
  before sending them (:mod:`devices.card.pins`). A malformed *new* PIN (CHANGE PIN, RESET RETRY
  COUNTER) is refused with 6A80 and changes nothing.
- A PIN that was never set (a blank card) answers 6A88 (referenced data not found) to VERIFY.
- Before an application is selected, EFs are not visible: SELECT EF answers 6A82; a command that
  needs a current EF answers 6986. Each application sees its own EFs only.
- Selecting another application clears every verified PIN (reference §4.6, our choice); issuer
  authentication lasts for the card session across applications.
- READ BINARY: an offset at or past the end of the EF → 6B00 (JICSAP); Le 00 returns what is
  there up to 256 bytes; an explicit Le larger than what is left → 6Cxx with the exact length,
  which clients resend (reference §4.4).
- A response longer than Ne (e.g. the 270-byte public key template for Le 00, or any data when
  no Le was sent) is chained with 61xx and GET RESPONSE.
- EFs have a variable length: UPDATE BINARY at offset 0 starts new contents, writes further on
  overwrite or append, so writing a file in order from offset 0 leaves exactly what was written.
- GET CHALLENGE's answer is valid for the next command only, and once: EXTERNAL AUTHENTICATE
  consumes it whether or not the signature verifies; any other command discards it.
- Issuer authentication lasts for the card session (until power-off, reset or restart).
- A **reset authorisation** (architecture §7.1, the convenience-store kiosk): EXTERNAL
  AUTHENTICATE with P2 ``9B`` (80 | the SFI of the signing PIN 001B) checks the issuer's
  signature over :func:`jpki.protocol.pin_reset.card_reset_message` — a domain prefix, the
  SHA-256 of this card's auth certificate (EF 000A) and the challenge — instead of over the bare
  challenge. It authenticates no one: it lets the very next command, if it is RESET RETRY
  COUNTER of the signing PIN (P1 02 or 03), run without issuer authentication, once. Any other
  next command discards it; RESET RETRY COUNTER of the auth PIN after it answers 6982. So a
  kiosk that relays the CA's authorisation can reset that card's signing password and nothing
  else, and the authorisation cannot be replayed (the challenge is gone) nor used on another
  card (another auth certificate). Without a current challenge: 6985; a wrong signature: 6300;
  a card without an auth certificate: 6985; P2 other than 00 or 9B: 6A86.

A command that is refused changes nothing, neither in the state file nor in the session, except
where the standard says a refusal itself is the change (a wrong PIN spends a try and clears that
PIN's verified state).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devices.card import face_aps, pins, tlv
from devices.card.apdu import (
    EXTENDED_MAX_NE,
    SHORT_MAX_NE,
    SW_BYTES_REMAINING,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_CORRECT_LENGTH,
    SW_END_OF_FILE,
    SW_FILE_NOT_FOUND,
    SW_INCOMPATIBLE_FILE,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_MEMORY_FAILURE,
    SW_NO_CURRENT_EF,
    SW_NOT_ENOUGH_MEMORY,
    SW_OK,
    SW_PIN_BLOCKED,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_STATUS,
    SW_VERIFICATION_FAILED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    SW_WRONG_PIN,
    CommandApdu,
    sw_bytes,
)
from devices.card.emulator import signatures
from devices.card.emulator.face_apps import FaceApplications
from devices.card.emulator.refusal import Refused as _Refused
from devices.card.emulator.session import Session
from devices.card.emulator.state import EF_CAPACITY, CardState, PinRecord, issuer_key
from devices.card.errors import ApduFormatError
from devices.card.jpki_ap import (
    JPKI_AP_AID,
    JPKI_ATR,
    TOKEN_LABEL_ANDROID,
    TOKEN_LABEL_CARD,
    Ef,
    Key,
    Pin,
    SignScheme,
    sign_input_length_ok,
)
from jpki.protocol.pin_reset import card_reset_message

CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80
MAX_AID_LENGTH = 16  # ISO/IEC 7816-4 §12.2.3
MIN_ISSUER_CHALLENGE = 16  # shorter challenges could be answered by a replayed signature
P2_RESET_SIGN_PIN = 0x80 | Ef.SIGN_PIN.sfi  # EXTERNAL AUTHENTICATE for one sign-PIN reset
RSA_KEY_BITS = 2048
RSA_PUBLIC_EXPONENT = 65537
GET_DATA_ATR_TAG = 0x5F51  # reference §4.1: the contact ATR, stored without TS

_SFI_EFS = {ef.sfi: ef for ef in Ef}
_EF_FIDS = frozenset(int(ef) for ef in Ef)
_SCHEMES = frozenset(int(scheme) for scheme in SignScheme)


Handler = Callable[[CommandApdu], bytes]


class JpkiCardEmulator:
    """A JPKI card. ``path`` is its state file; ``None`` keeps the state in memory only."""

    def __init__(self, state: CardState, path: Path | None = None) -> None:
        self.state = state
        self.path = path
        self.session = Session()
        self.apdu_count = 0
        self._keys: dict[Key, tuple[bytes, rsa.RSAPrivateKey]] = {}
        self._issuer_key = issuer_key(state.issuer_public_key_pem)
        self._face = FaceApplications(self)  # the 券面 applications (reference §4.6)
        self._handlers: dict[tuple[int, int], Handler] = {
            (CLA_ISO, 0xA4): self._select,
            (CLA_ISO, 0xB0): self._read_binary,
            (CLA_ISO, 0xD6): self._update_binary,
            (CLA_ISO, 0x20): self._verify,
            (CLA_ISO, 0x24): self._change_reference_data,
            (CLA_ISO, 0x2C): self._reset_retry_counter,
            (CLA_ISO, 0x84): self._get_challenge,
            (CLA_ISO, 0x82): self._external_authenticate,
            (CLA_ISO, 0x47): self._generate_key_pair,
            (CLA_ISO, 0xC0): self._get_response,
            (CLA_ISO, 0xCA): self._get_data,
            (CLA_ISO, 0x88): self._internal_authenticate,
            (CLA_PROPRIETARY, 0x2A): self._compute_signature,
            (CLA_PROPRIETARY, 0xFC): self._last_command_indicator,
        }
        # Taken from the session at the start of each command: valid for that command only.
        self._challenge: bytes | None = None
        self._reset_authorised: Pin | None = None
        self._pending = b""

    @classmethod
    def open(cls, path: Path) -> JpkiCardEmulator:
        """The card whose state is in ``path``."""
        return cls(CardState.load(path), path)

    @classmethod
    def create(cls, path: Path, issuer_public_key_pem: bytes,
               token_label: str = TOKEN_LABEL_CARD) -> JpkiCardEmulator:
        """A blank card, its state written to ``path`` (which must not exist yet)."""
        if path.exists():
            raise FileExistsError(path)
        state = CardState.blank(issuer_public_key_pem, token_label)
        state.save(path)
        return cls(state, path)

    @property
    def atr(self) -> bytes:
        return JPKI_ATR

    def reset(self) -> None:
        """Power-off, power-on or warm reset: the volatile security state is gone."""
        self.session = Session()

    # --- dispatch ------------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response data ‖ SW1 SW2. Never raises for any input."""
        self.apdu_count += 1
        self._challenge, self.session.challenge = self.session.challenge, None
        self._reset_authorised, self.session.reset_authorised = \
            self.session.reset_authorised, None
        self._pending, self.session.pending = self.session.pending, b""
        try:
            command = CommandApdu.parse(apdu)
        except ApduFormatError as exc:
            return sw_bytes(exc.sw)
        if command.cla not in (CLA_ISO, CLA_PROPRIETARY):
            # No secure messaging, no logical channels, no command chaining on JPKI-AP
            # (reference §4.1); OpenSC's probes for other cards use many classes.
            return sw_bytes(SW_CLA_NOT_SUPPORTED)
        handler = self._handlers.get((command.cla, command.ins))
        if handler is None:
            return sw_bytes(SW_INS_NOT_SUPPORTED)
        try:
            return handler(command)
        except _Refused as refusal:
            return sw_bytes(refusal.sw)

    def _respond(self, command: CommandApdu, data: bytes) -> bytes:
        """``data`` ‖ 9000, or the first Ne bytes ‖ 61xx with the rest kept for GET RESPONSE."""
        ne = command.le or 0
        if len(data) <= ne:
            return data + sw_bytes(SW_OK)
        self.session.pending = data[ne:]
        remaining = min(len(self.session.pending), SHORT_MAX_NE) % 256
        return data[:ne] + sw_bytes(SW_BYTES_REMAINING | remaining)

    def _commit(self, state: CardState) -> None:
        """Persist ``state`` and only then make it current: a failed write changes nothing."""
        if self.path is not None:
            try:
                state.save(self.path)
            except OSError as exc:
                raise _Refused(SW_MEMORY_FAILURE) from exc
        self.state = state

    # --- parameter helpers ---------------------------------------------------------------

    @staticmethod
    def _expect(command: CommandApdu, *, data: bool | None, le: bool | None) -> None:
        """Refuse with 6700 unless data / Le are present or absent as required (None: either)."""
        if data is not None and bool(command.data) != data:
            raise _Refused(SW_WRONG_LENGTH)
        if le is not None and (command.le is not None) != le:
            raise _Refused(SW_WRONG_LENGTH)

    def _ef_by_sfi(self, sfi: int) -> Ef:
        if not self.session.ap_selected or sfi not in _SFI_EFS:
            raise _Refused(SW_FILE_NOT_FOUND)
        return _SFI_EFS[sfi]

    def _current_ef(self) -> Ef:
        if self.session.current_ef is None:
            raise _Refused(SW_NO_CURRENT_EF)
        return self.session.current_ef

    def _binary_target(self, command: CommandApdu) -> tuple[Ef, int]:
        """READ / UPDATE BINARY: P1 b8 = 0 → 15-bit offset in the current EF; 1 → SFI in P1.

        reference §4.4: ``00 B0 8A 00 00`` reads EF 000A by SFI, P2 = 8-bit offset. Naming
        an EF by SFI makes it the current EF (ISO/IEC 7816-4 §7.2.2) — once the command succeeds.
        """
        if command.p1 & 0x80:
            if command.p1 & 0x60:
                raise _Refused(SW_INCORRECT_P1P2)
            return self._ef_by_sfi(command.p1 & 0x1F), command.p2
        return self._current_ef(), command.p1 << 8 | command.p2

    def _transparent(self, ef: Ef) -> None:
        if ef not in EF_CAPACITY:
            raise _Refused(SW_INCOMPATIBLE_FILE)  # keys and PINs are not readable data

    def _pin_target(self, p2: int) -> Pin:
        """VERIFY / CHANGE / RESET P2: 80 = the current EF; 80|SFI names the PIN EF (§4.4)."""
        if p2 == 0x80:
            ef = self._current_ef()
            if ef not in (Ef.AUTH_PIN, Ef.SIGN_PIN):
                raise _Refused(SW_INCOMPATIBLE_FILE)
            return Pin(ef)
        if 0x81 <= p2 <= 0x9E:
            ef = self._ef_by_sfi(p2 & 0x1F)
            if ef not in (Ef.AUTH_PIN, Ef.SIGN_PIN):
                raise _Refused(SW_REFERENCED_DATA_NOT_FOUND)
            return Pin(ef)
        raise _Refused(SW_INCORRECT_P1P2)

    def _pin_record(self, pin: Pin) -> PinRecord:
        record = self.state.pins.get(pin)
        if record is None:
            raise _Refused(SW_REFERENCED_DATA_NOT_FOUND)  # never set: a blank card
        return record

    def _require_issuer(self) -> None:
        if not self.session.issuer_authenticated:
            raise _Refused(SW_SECURITY_STATUS)

    def _private_key(self, key: Key) -> rsa.RSAPrivateKey:
        pem = self.state.keys.get(key)
        if pem is None:
            raise _Refused(SW_REFERENCED_DATA_NOT_FOUND)  # not generated yet
        cached = self._keys.get(key)
        if cached is not None and cached[0] == pem:
            return cached[1]
        loaded = serialization.load_pem_private_key(pem, None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise _Refused(SW_REFERENCED_DATA_NOT_FOUND)
        self._keys[key] = (pem, loaded)
        return loaded

    # --- SELECT (reference §4.1, §4.4) ---------------------------------------------

    def _select(self, command: CommandApdu) -> bytes:
        if command.p1 == 0x00:
            # reference §4.1: selecting the MF is unreliable on the real card — 6A86 after
            # reset, 90 00 without effect once a DF is current. OpenSC keeps a virtual MF.
            if command.p2 != 0x00 and command.p2 != 0x0C:
                raise _Refused(SW_INCORRECT_P1P2)
            if not self.session.ap_selected and self.session.face_ap is None:
                raise _Refused(SW_INCORRECT_P1P2)
            return sw_bytes(SW_OK)
        if command.p1 not in (0x02, 0x04):
            raise _Refused(SW_INCORRECT_P1P2)
        self._expect(command, data=True, le=None)  # an Le is tolerated and ignored
        # The name is looked up first: an unknown AID or FID is 6A82 whatever P2 asks for
        # (OpenSC's probes for other cards select their AIDs with P2 00).
        face_ap = None
        if command.p1 == 0x04:
            if len(command.data) > MAX_AID_LENGTH:
                raise _Refused(SW_WRONG_LENGTH)
            face_ap = face_aps.by_aid(command.data)
            if command.data != JPKI_AP_AID and face_ap is None:
                raise _Refused(SW_FILE_NOT_FOUND)  # JPKI-AP and the two 券面 APs live here
        else:
            if len(command.data) != 2:
                raise _Refused(SW_WRONG_LENGTH)
            fid = int.from_bytes(command.data, "big")
            if self.session.face_ap is not None:
                self._face.check_selectable(fid)
            elif not self.session.ap_selected or fid not in _EF_FIDS:
                raise _Refused(SW_FILE_NOT_FOUND)
        if command.p2 != 0x0C:
            raise _Refused(SW_INCORRECT_P1P2)  # only "no response data" selections (§4.4)
        if command.p1 == 0x04:
            self._enter_application(face_ap)
        elif self.session.face_ap is not None:
            self.session.face_ef = fid
        else:
            self.session.current_ef = Ef(fid)
        return sw_bytes(SW_OK)

    def _enter_application(self, face_ap: face_aps.FaceAp | None) -> None:
        """Make JPKI-AP (``None``) or a 券面 AP current, with no current EF.

        Our choice where the sources are silent (reference §4.6): what was verified belongs to
        its application, so switching to *another* application clears it — a PIN verified in
        JPKI-AP does not survive a detour through the 券面事項入力補助AP, nor the other way round.
        Selecting the current application again keeps it (clients re-select JPKI-AP freely).
        """
        was = self.session.face_ap if self.session.face_ap is not None else (
            "jpki" if self.session.ap_selected else None)
        now = face_ap if face_ap is not None else "jpki"
        if was != now:
            self.session.verified.clear()
            self.session.face_verified.clear()
        self.session.ap_selected = face_ap is None
        self.session.face_ap = face_ap
        self.session.current_ef = None
        self.session.face_ef = None

    # --- READ BINARY / UPDATE BINARY --------------------------------------------------------

    def _check_read_access(self, ef: Ef) -> None:
        # reference §4.3: the signing certificate needs the sign PIN; on an Android token
        # (JPKIAPGPSETOKEN) the auth certificate needs the auth PIN (MYNA cli.rs).
        if ef is Ef.SIGN_CERT and Pin.SIGN not in self.session.verified:
            raise _Refused(SW_SECURITY_STATUS)
        if (ef is Ef.AUTH_CERT and self.state.token_label == TOKEN_LABEL_ANDROID
                and Pin.AUTH not in self.session.verified):
            raise _Refused(SW_SECURITY_STATUS)

    def _read_binary(self, command: CommandApdu) -> bytes:
        if self.session.face_ap is not None:
            return self._face.read_binary(command)
        self._expect(command, data=False, le=True)
        ef, offset = self._binary_target(command)
        self._transparent(ef)
        self._check_read_access(ef)
        answer = self._read_answer(command, self.state.files.get(ef, b""), offset)
        self.session.current_ef = ef
        return answer

    @staticmethod
    def _read_answer(command: CommandApdu, content: bytes, offset: int) -> bytes:
        """READ BINARY's answer from ``content`` at ``offset`` (module doc: 6B00, Le 00, 6Cxx)."""
        if offset >= len(content):
            raise _Refused(SW_WRONG_P1P2)  # JICSAP: offset outside the EF
        ne = command.le or 0
        available = len(content) - offset
        if ne <= available:
            answer = content[offset:offset + ne] + sw_bytes(SW_OK)
        elif ne in (SHORT_MAX_NE, EXTENDED_MAX_NE):  # Le 00 / 00 00: "as much as there is"
            answer = content[offset:] + sw_bytes(SW_OK)
        elif available < SHORT_MAX_NE:
            raise _Refused(SW_CORRECT_LENGTH | available)
        else:
            answer = content[offset:] + sw_bytes(SW_END_OF_FILE)
        return answer

    def _update_binary(self, command: CommandApdu) -> bytes:
        if self.session.face_ap is not None:
            return self._face.update_binary(command)
        self._expect(command, data=True, le=False)
        self._require_issuer()
        ef, offset = self._binary_target(command)
        self._transparent(ef)
        content = self.state.files.get(ef, b"")
        if offset > len(content):
            raise _Refused(SW_WRONG_P1P2)  # no holes: write from offset 0 onwards
        if offset + len(command.data) > EF_CAPACITY[ef]:
            raise _Refused(SW_NOT_ENOUGH_MEMORY)
        if offset == 0:
            updated = command.data  # a write at 0 starts new contents (see module doc)
        else:
            updated = content[:offset] + command.data + content[offset + len(command.data):]
        state = self.state.copy()
        state.files[ef] = updated
        self._commit(state)
        self.session.current_ef = ef
        return sw_bytes(SW_OK)

    # --- PINs (reference §4.5) -------------------------------------------------------

    def _verify(self, command: CommandApdu) -> bytes:
        if self.session.face_ap is not None:
            return self._face.verify(command)
        if command.p1 != 0x00:
            raise _Refused(SW_INCORRECT_P1P2)
        pin = self._pin_target(command.p2)
        self._expect(command, data=None, le=False)
        record = self._pin_record(pin)
        if not command.data:
            # Empty VERIFY: report the counter, spend nothing (OpenSC SC_PIN_CMD_GET_INFO). Always
            # 63Cx, even when verified: OpenSC's PKCS#15 binding fails on anything but 63xx.
            if record.retries == 0:
                raise _Refused(SW_PIN_BLOCKED)
            raise _Refused(SW_WRONG_PIN | record.retries)
        if record.retries == 0:
            raise _Refused(SW_PIN_BLOCKED)  # 69 84 on every attempt after blocking
        if record.matches(command.data):
            if record.retries != pin.max_tries:  # a correct PIN resets the counter
                state = self.state.copy()
                state.pins[pin].retries = pin.max_tries
                self._commit(state)
            self.session.verified.add(pin)
            return sw_bytes(SW_OK)
        # Wrong (including wrong-format values: a card compares, it does not parse). The
        # decremented counter is durable before the answer leaves the card, so cutting power
        # after seeing 63Cx cannot undo the spent try.
        self.session.verified.discard(pin)
        state = self.state.copy()
        state.pins[pin].retries = record.retries - 1
        self._commit(state)
        return sw_bytes(SW_WRONG_PIN | state.pins[pin].retries)  # 63 C0 on the exhausting try

    def _change_reference_data(self, command: CommandApdu) -> bytes:
        # reference §4.4: CHANGE PIN after VERIFY, ``00 24 01 80 Lc <new PIN>``. P1 00 (old
        # and new PIN in the data) is not offered by JPKI-AP.
        if self.session.face_ap is not None:
            return self._face.change_reference_data(command)
        if command.p1 != 0x01:
            raise _Refused(SW_INCORRECT_P1P2)
        pin = self._pin_target(command.p2)
        self._expect(command, data=True, le=False)
        record = self._pin_record(pin)
        if record.retries == 0:
            raise _Refused(SW_PIN_BLOCKED)
        if pin not in self.session.verified:
            raise _Refused(SW_SECURITY_STATUS)
        if not pins.is_well_formed(pin, command.data):
            raise _Refused(SW_WRONG_DATA)
        state = self.state.copy()
        state.pins[pin] = PinRecord.new(pin, command.data)
        self._commit(state)
        return sw_bytes(SW_OK)

    def _reset_retry_counter(self, command: CommandApdu) -> bytes:
        # ISO/IEC 7816-4 §11.5.10: P1 02 = new reference data, no resetting code; 03 = reset the
        # counter only. The issuer's authentication stands in for a resetting code.
        if self.session.face_ap is not None:
            return self._face.reset_retry_counter(command)
        if command.p1 not in (0x02, 0x03):
            raise _Refused(SW_INCORRECT_P1P2)
        pin = self._pin_target(command.p2)
        self._expect(command, data=command.p1 == 0x02, le=False)
        if self._reset_authorised is None:
            self._require_issuer()
        elif pin is not self._reset_authorised and not self.session.issuer_authenticated:
            raise _Refused(SW_SECURITY_STATUS)  # the authorisation names the signing PIN only
        state = self.state.copy()
        if command.p1 == 0x02:
            if not pins.is_well_formed(pin, command.data):
                raise _Refused(SW_WRONG_DATA)
            state.pins[pin] = PinRecord.new(pin, command.data)
        else:
            self._pin_record(pin)
            state.pins[pin].retries = pin.max_tries
        self._commit(state)
        self.session.verified.discard(pin)
        return sw_bytes(SW_OK)

    # --- COMPUTE DIGITAL SIGNATURE (reference §4.4) --------------------------------------

    def _compute_signature(self, command: CommandApdu) -> bytes:
        if command.p1 not in _SCHEMES:
            raise _Refused(SW_INCORRECT_P1P2)  # 方式種別 outside 00–05
        scheme = SignScheme(command.p1)
        if command.p2 == 0x80:
            ef = self._current_ef()
            if ef not in (Ef.AUTH_KEY, Ef.SIGN_KEY):
                raise _Refused(SW_INCOMPATIBLE_FILE)
        elif command.p2 in (0x80 | Ef.AUTH_KEY.sfi, 0x80 | Ef.SIGN_KEY.sfi):
            ef = self._ef_by_sfi(command.p2 & 0x1F)  # key by SFI: no SELECT needed
        else:
            raise _Refused(SW_INCORRECT_P1P2)
        self._expect(command, data=True, le=None)
        key = Key(ef)
        private_key = self._private_key(key)
        if key.pin not in self.session.verified:
            raise _Refused(SW_SECURITY_STATUS)
        if not sign_input_length_ok(scheme, len(command.data)):
            raise _Refused(SW_WRONG_LENGTH)
        return self._respond(command, signatures.sign(private_key, scheme, command.data))

    # --- issuer authentication ------------------------------------------------------------

    def _get_challenge(self, command: CommandApdu) -> bytes:
        if command.p1 != 0x00 or command.p2 != 0x00:
            raise _Refused(SW_INCORRECT_P1P2)
        self._expect(command, data=False, le=True)
        if command.le is None or command.le > SHORT_MAX_NE:
            raise _Refused(SW_WRONG_LENGTH)
        challenge = secrets.token_bytes(command.le)
        self.session.challenge = challenge
        return challenge + sw_bytes(SW_OK)

    def _external_authenticate(self, command: CommandApdu) -> bytes:
        if command.p1 != 0x00 or command.p2 not in (0x00, P2_RESET_SIGN_PIN):
            raise _Refused(SW_INCORRECT_P1P2)
        self._expect(command, data=True, le=False)
        challenge = self._challenge  # taken from the session by process(): single use
        if challenge is None or len(challenge) < MIN_ISSUER_CHALLENGE:
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
        if command.p2 == P2_RESET_SIGN_PIN:
            return self._authorise_reset(command.data, challenge)
        self.session.issuer_authenticated = False
        try:
            self._issuer_key.verify(command.data, challenge, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return sw_bytes(SW_VERIFICATION_FAILED)
        self.session.issuer_authenticated = True
        return sw_bytes(SW_OK)

    def _authorise_reset(self, signature: bytes, challenge: bytes) -> bytes:
        """P2 9B: the CA's authorisation of one signing-PIN reset (module doc). Issuer
        authentication is left as it was: this authenticates no one."""
        auth_certificate = self.state.files.get(Ef.AUTH_CERT, b"")
        if not auth_certificate:
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)  # nothing to bind the reset to
        try:
            self._issuer_key.verify(signature, card_reset_message(challenge, auth_certificate),
                                    padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return sw_bytes(SW_VERIFICATION_FAILED)
        self.session.reset_authorised = Pin.SIGN
        return sw_bytes(SW_OK)

    # --- personalisation --------------------------------------------------------------------

    def _generate_key_pair(self, command: CommandApdu) -> bytes:
        # ISO/IEC 7816-8 §5.1: P1 00 generates (here: 80 is not used), 81 reads the public key
        # already there. The key is named in a control reference template B6 { 84 <key FID> }.
        if command.p1 not in (0x00, 0x81) or command.p2 != 0x00:
            raise _Refused(SW_INCORRECT_P1P2)
        self._expect(command, data=True, le=None)
        self._require_issuer()
        if not self.session.ap_selected:
            raise _Refused(SW_FILE_NOT_FOUND)
        try:
            fid = tlv.decode_key_reference(command.data)
        except ValueError as exc:
            raise _Refused(SW_WRONG_DATA) from exc
        if fid not in (Key.AUTH, Key.SIGN):
            raise _Refused(SW_WRONG_DATA)
        key = Key(fid)
        if command.p1 == 0x81:
            return self._respond(command,
                                 tlv.encode_rsa_public_key(self._private_key(key).public_key()))
        private_key = rsa.generate_private_key(RSA_PUBLIC_EXPONENT, RSA_KEY_BITS)
        state = self.state.copy()
        state.keys[key] = private_key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption())
        self._commit(state)
        # A new key invalidates nothing else: the station writes the matching certificate next.
        return self._respond(command, tlv.encode_rsa_public_key(private_key.public_key()))

    # --- the rest ------------------------------------------------------------------------

    def _get_response(self, command: CommandApdu) -> bytes:
        if command.p1 != 0x00 or command.p2 != 0x00:
            raise _Refused(SW_INCORRECT_P1P2)
        self._expect(command, data=False, le=True)
        if not self._pending:
            raise _Refused(SW_CONDITIONS_NOT_SATISFIED)
        return self._respond(command, self._pending)

    def _get_data(self, command: CommandApdu) -> bytes:
        self._expect(command, data=False, le=True)
        if command.p1 << 8 | command.p2 != GET_DATA_ATR_TAG:
            raise _Refused(SW_REFERENCED_DATA_NOT_FOUND)
        return self._respond(command, JPKI_ATR[1:])  # without TS (reference §4.1)

    def _internal_authenticate(self, command: CommandApdu) -> bytes:
        # reference §4.4: INTERNAL AUTHENTICATE is not used for JPKI keys; keys behind a PIN
        # answer 6982.
        raise _Refused(SW_SECURITY_STATUS)

    def _last_command_indicator(self, command: CommandApdu) -> bytes:
        # reference §2: the iPhone profile's ``80 FC 00 00`` is rejected by cards with 6700.
        raise _Refused(SW_WRONG_LENGTH)
