"""The emulated 券面事項入力補助AP and 券面事項確認AP (reference §4.6).

:class:`~devices.card.emulator.card.JpkiCardEmulator` hands SELECT EF, READ BINARY, UPDATE BINARY,
VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER here while one of the two applications is
current. They behave as the JPKI-AP's (reference §4.4, §4.5), with the same decisions (card.py's
module doc):

- SELECT EF ``00 A4 02 0C 02 <FID>``: the application's data files and key references; anything
  else 6A82.
- READ BINARY (by the current EF, or by SFI in P1): 6982 until one of the credentials that open
  the file (reference §4.6 table) has been verified in this application; a key reference is not
  data (6981); an empty file answers 6B00 at offset 0; Le 00 / 6Cxx / 6282 as in JPKI-AP.
- VERIFY ``00 20 00 80`` (current EF) or ``00 20 00 <80|SFI>``: empty data reports the counter as
  63Cx without spending a try; more than 16 bytes is a malformed command (6700, nothing spent); a
  wrong value spends one (63Cx, 63C0 on the exhausting try), a right one resets the counter; once
  blocked every VERIFY answers 69 84 (reference §4.5, the card's JICSAP behaviour: 69 83 is not
  observed, §10.7). A key reference never set answers 6A88.
- CHANGE REFERENCE DATA ``00 24 01 80`` after VERIFY: only the 4-digit PIN of the text AP; the
  照合番号 are derived from the card's face and cannot be changed (6A81).
- UPDATE BINARY and RESET RETRY COUNTER (P1 02 new value / 03 counter only): card issuance, after
  EXTERNAL AUTHENTICATE by the issuer (6982 otherwise); a malformed value is 6A80.

A refused command changes nothing; only a wrong value's spent try is a change, made durable before
the answer leaves the card.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devices.card import face_aps
from devices.card.apdu import (
    SW_FILE_NOT_FOUND,
    SW_FUNCTION_NOT_SUPPORTED,
    SW_INCOMPATIBLE_FILE,
    SW_INCORRECT_P1P2,
    SW_NO_CURRENT_EF,
    SW_NOT_ENOUGH_MEMORY,
    SW_OK,
    SW_PIN_BLOCKED,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_STATUS,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    SW_WRONG_PIN,
    CommandApdu,
    sw_bytes,
)
from devices.card.emulator.refusal import Refused
from devices.card.emulator.state import PinRecord
from devices.card.face_aps import Credential, DataFile, FaceAp

if TYPE_CHECKING:
    from devices.card.emulator.card import JpkiCardEmulator

# The longest value a key reference here holds is 14 digits (照合番号B); a VERIFY carrying more
# than 16 bytes (the longest JPKI-AP password) is a malformed command: 6700, no try spent.
MAX_VALUE_BYTES = 16


class FaceApplications:
    """The commands of the two 券面 applications, on ``card``'s state and session."""

    def __init__(self, card: JpkiCardEmulator) -> None:
        self.card = card

    # --- targets ---------------------------------------------------------------------------

    @property
    def _ap(self) -> FaceAp:
        ap = self.card.session.face_ap
        assert ap is not None  # the card dispatches here only while one is current
        return ap

    def check_selectable(self, fid: int) -> None:
        """SELECT EF: a data file or a key reference of the current application, else 6A82."""
        if face_aps.data_file(self._ap, fid) is None and face_aps.credential(self._ap,
                                                                             fid) is None:
            raise Refused(SW_FILE_NOT_FOUND)

    def _by_sfi(self, sfi: int) -> int:
        for fid in [f.fid for f in face_aps.DATA_FILES if f.ap is self._ap] + [
                c.fid for c in face_aps.credentials_of(self._ap)]:
            if fid & 0x1F == sfi:
                return fid
        raise Refused(SW_FILE_NOT_FOUND)

    def _current(self) -> int:
        if self.card.session.face_ef is None:
            raise Refused(SW_NO_CURRENT_EF)
        return self.card.session.face_ef

    def _data_target(self, command: CommandApdu) -> tuple[DataFile, int]:
        """READ / UPDATE BINARY: P1 b8 = 0 → 15-bit offset in the current EF; 1 → SFI in P1."""
        if command.p1 & 0x80:
            if command.p1 & 0x60:
                raise Refused(SW_INCORRECT_P1P2)
            fid, offset = self._by_sfi(command.p1 & 0x1F), command.p2
        else:
            fid, offset = self._current(), command.p1 << 8 | command.p2
        ef = face_aps.data_file(self._ap, fid)
        if ef is None:
            raise Refused(SW_INCOMPATIBLE_FILE)  # a key reference is not readable data
        return ef, offset

    def _credential_target(self, p2: int) -> Credential:
        """VERIFY / CHANGE / RESET P2: 80 = the current EF; 80|SFI names the key reference."""
        if p2 == 0x80:
            reference = face_aps.credential(self._ap, self._current())
            if reference is None:
                raise Refused(SW_INCOMPATIBLE_FILE)
            return reference
        if 0x81 <= p2 <= 0x9E:
            reference = face_aps.credential(self._ap, self._by_sfi(p2 & 0x1F))
            if reference is None:
                raise Refused(SW_REFERENCED_DATA_NOT_FOUND)
            return reference
        raise Refused(SW_INCORRECT_P1P2)

    def _record(self, reference: Credential) -> PinRecord:
        record = self.card.state.face_pins.get((reference.ap, reference.fid))
        if record is None:
            raise Refused(SW_REFERENCED_DATA_NOT_FOUND)  # never set: a card not yet issued
        return record

    def _opened(self, ef: DataFile) -> bool:
        verified = self.card.session.face_verified
        return not ef.opened_by or any((c.ap, c.fid) in verified for c in ef.opened_by)

    # --- READ / UPDATE BINARY ----------------------------------------------------------------

    def read_binary(self, command: CommandApdu) -> bytes:
        self.card._expect(command, data=False, le=True)
        ef, offset = self._data_target(command)
        if not self._opened(ef):
            raise Refused(SW_SECURITY_STATUS)  # reference §4.6: which credential opens what
        answer = self.card._read_answer(command, self.card.state.face_files.get(
            (ef.ap, ef.fid), b""), offset)
        self.card.session.face_ef = ef.fid
        return answer

    def update_binary(self, command: CommandApdu) -> bytes:
        self.card._expect(command, data=True, le=False)
        self.card._require_issuer()
        ef, offset = self._data_target(command)
        content = self.card.state.face_files.get((ef.ap, ef.fid), b"")
        if offset > len(content):
            raise Refused(SW_WRONG_P1P2)  # no holes: write from offset 0 onwards
        if offset + len(command.data) > ef.capacity:
            raise Refused(SW_NOT_ENOUGH_MEMORY)
        if offset == 0:
            updated = command.data  # a write at 0 starts new contents (card.py module doc)
        else:
            updated = content[:offset] + command.data + content[offset + len(command.data):]
        state = self.card.state.copy()
        state.face_files[(ef.ap, ef.fid)] = updated
        self.card._commit(state)
        self.card.session.face_ef = ef.fid
        return sw_bytes(SW_OK)

    # --- VERIFY, CHANGE, RESET -----------------------------------------------------------------

    def verify(self, command: CommandApdu) -> bytes:
        if command.p1 != 0x00:
            raise Refused(SW_INCORRECT_P1P2)
        reference = self._credential_target(command.p2)
        self.card._expect(command, data=None, le=False)
        if len(command.data) > MAX_VALUE_BYTES:
            raise Refused(SW_WRONG_LENGTH)  # no reference is that long: malformed, not a try
        record = self._record(reference)
        key = (reference.ap, reference.fid)
        if not command.data:
            # The counter, spending nothing (reference §4.4 "Tries left"; myna's `pin status`).
            if record.retries == 0:
                raise Refused(SW_PIN_BLOCKED)
            raise Refused(SW_WRONG_PIN | record.retries)
        if record.retries == 0:
            raise Refused(SW_PIN_BLOCKED)  # 69 84 on every attempt after blocking (§4.5)
        if record.matches(command.data):
            if record.retries != reference.max_tries:
                state = self.card.state.copy()
                state.face_pins[key].retries = reference.max_tries
                self.card._commit(state)
            self.card.session.face_verified.add(key)
            return sw_bytes(SW_OK)
        # Wrong, including a wrong-format value: a card compares, it does not parse. The spent
        # try is durable before the answer leaves the card.
        self.card.session.face_verified.discard(key)
        state = self.card.state.copy()
        state.face_pins[key].retries = record.retries - 1
        self.card._commit(state)
        return sw_bytes(SW_WRONG_PIN | state.face_pins[key].retries)

    def change_reference_data(self, command: CommandApdu) -> bytes:
        if command.p1 != 0x01:
            raise Refused(SW_INCORRECT_P1P2)
        reference = self._credential_target(command.p2)
        self.card._expect(command, data=True, le=False)
        if not reference.changeable:
            raise Refused(SW_FUNCTION_NOT_SUPPORTED)  # 照合番号 follow the card's face
        record = self._record(reference)
        if record.retries == 0:
            raise Refused(SW_PIN_BLOCKED)
        if (reference.ap, reference.fid) not in self.card.session.face_verified:
            raise Refused(SW_SECURITY_STATUS)
        if not reference.well_formed(command.data):
            raise Refused(SW_WRONG_DATA)
        state = self.card.state.copy()
        state.face_pins[(reference.ap, reference.fid)] = PinRecord.with_tries(
            command.data, reference.max_tries)
        self.card._commit(state)
        return sw_bytes(SW_OK)

    def reset_retry_counter(self, command: CommandApdu) -> bytes:
        if command.p1 not in (0x02, 0x03):
            raise Refused(SW_INCORRECT_P1P2)
        reference = self._credential_target(command.p2)
        self.card._expect(command, data=command.p1 == 0x02, le=False)
        self.card._require_issuer()
        key = (reference.ap, reference.fid)
        state = self.card.state.copy()
        if command.p1 == 0x02:
            if not reference.well_formed(command.data):
                raise Refused(SW_WRONG_DATA)
            state.face_pins[key] = PinRecord.with_tries(command.data, reference.max_tries)
        else:
            self._record(reference)
            state.face_pins[key].retries = reference.max_tries
        self.card._commit(state)
        self.card.session.face_verified.discard(key)
        return sw_bytes(SW_OK)

