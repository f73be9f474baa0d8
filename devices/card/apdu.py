"""ISO/IEC 7816-4 command and response APDUs, and the status words JPKI-AP answers with.

A command APDU is one of four cases (ISO/IEC 7816-4 §5.1): 1 = header only; 2 = header + Le;
3 = header + Lc + data; 4 = header + Lc + data + Le. Lc and Le are short (one byte) or extended
(``00`` then two bytes for Lc; two bytes for Le, preceded by ``00`` when there is no Lc). An Le
byte of ``00`` means 256 (``00 00`` extended: 65536).

:class:`CommandApdu` keeps Le as Ne, the number of bytes expected (1..65536, or ``None`` for no
Le field), so ``le=256`` is sent as the short ``00``. Parsing is strict: a byte string whose
length does not match exactly one case is refused with 6700, as a card does.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.card.errors import ApduFormatError

# --- status words (reference §4.5 table; ISO/IEC 7816-4 §5.6) -------------------------

SW_OK = 0x9000
SW_BYTES_REMAINING = 0x6100  # 61xx: xx more bytes with GET RESPONSE (reference §4.4)
SW_END_OF_FILE = 0x6282  # fewer bytes than Ne before the end of the EF (warning)
SW_VERIFICATION_FAILED = 0x6300  # EXTERNAL AUTHENTICATE: the cryptogram did not verify
SW_WRONG_PIN = 0x63C0  # 63Cx: wrong PIN, x tries left; also the answer to an empty VERIFY
SW_MEMORY_FAILURE = 0x6581  # the card could not store the change; nothing changed
SW_WRONG_LENGTH = 0x6700  # Lc/Le inconsistent with the command, truncated or trailing bytes
SW_INCOMPATIBLE_FILE = 0x6981  # command incompatible with the file's structure (a key or PIN EF)
SW_SECURITY_STATUS = 0x6982  # security status not satisfied (no VERIFY / no issuer auth)
SW_AUTH_METHOD_BLOCKED = 0x6983  # generic ISO; not observed on JPKI-AP (reference §10.7)
SW_PIN_BLOCKED = 0x6984  # reference data not usable: JPKI's "blocked" (reference §4.5)
SW_CONDITIONS_NOT_SATISFIED = 0x6985  # e.g. GET RESPONSE with nothing pending, no challenge
SW_NO_CURRENT_EF = 0x6986  # command not allowed: no current EF (MYNA dummy.rs behaviour)
SW_WRONG_DATA = 0x6A80  # incorrect parameters in the data field (e.g. a malformed new PIN)
SW_FUNCTION_NOT_SUPPORTED = 0x6A81  # e.g. CHANGE of a 照合番号 (reference §4.6)
SW_FILE_NOT_FOUND = 0x6A82  # application or file not found
SW_NOT_ENOUGH_MEMORY = 0x6A84  # not enough memory space in the file
SW_INCORRECT_P1P2 = 0x6A86  # incorrect P1-P2 (e.g. an unsupported signature scheme)
SW_REFERENCED_DATA_NOT_FOUND = 0x6A88  # e.g. a PIN or key that was never set
SW_WRONG_P1P2 = 0x6B00  # wrong parameters: offset outside the EF (JICSAP end of file)
SW_CORRECT_LENGTH = 0x6C00  # 6Cxx: wrong Le, resend with Le = xx (reference §4.4)
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN = 0x6F00  # no precise diagnosis

SHORT_MAX_LC = 255
SHORT_MAX_NE = 256
EXTENDED_MAX_LC = 65535
EXTENDED_MAX_NE = 65536


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be a byte, not {value}")


@dataclass(frozen=True, slots=True)
class CommandApdu:
    """A command APDU. ``le`` is Ne: ``None`` (no Le field) or 1..65536."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            _check_byte(name, getattr(self, name))
        if len(self.data) > EXTENDED_MAX_LC:
            raise ValueError(f"command data is at most {EXTENDED_MAX_LC} bytes")
        if self.le is not None and not 1 <= self.le <= EXTENDED_MAX_NE:
            raise ValueError(f"Le (Ne) must be 1..{EXTENDED_MAX_NE} or None, not {self.le}")

    @property
    def case(self) -> int:
        """The ISO/IEC 7816-4 case, 1–4."""
        if self.data:
            return 3 if self.le is None else 4
        return 1 if self.le is None else 2

    @property
    def extended(self) -> bool:
        return len(self.data) > SHORT_MAX_LC or (self.le is not None and self.le > SHORT_MAX_NE)

    def encode(self) -> bytes:
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        lc = len(self.data)
        if not self.extended:
            body = bytes((lc,)) + self.data if lc else b""
            if self.le is not None:
                body += bytes((self.le % 256,))  # 256 is sent as 00
            return header + body
        # Extended: Lc is 00 ‖ two bytes; Le is two bytes, with the leading 00 only when no Lc.
        body = b"\x00" + lc.to_bytes(2, "big") + self.data if lc else b""
        if self.le is not None:
            le_field = (self.le % 65536).to_bytes(2, "big")  # 65536 is sent as 00 00
            body += le_field if lc else b"\x00" + le_field
        return header + body

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Decode exactly one command APDU; anything else raises :class:`ApduFormatError` (6700)."""
        n = len(raw)
        if n < 4:
            raise ApduFormatError(f"a command APDU has a 4-byte header, got {n} bytes",
                                  SW_WRONG_LENGTH)
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:  # case 1
            return cls(cla, ins, p1, p2)
        b4 = raw[4]
        if n == 5:  # case 2 short
            return cls(cla, ins, p1, p2, le=b4 or SHORT_MAX_NE)
        if b4 != 0:  # short Lc
            if n == 5 + b4:  # case 3 short
                return cls(cla, ins, p1, p2, raw[5:])
            if n == 6 + b4:  # case 4 short
                return cls(cla, ins, p1, p2, raw[5:5 + b4], le=raw[-1] or SHORT_MAX_NE)
            raise ApduFormatError(f"Lc {b4} does not match a body of {n - 5} bytes",
                                  SW_WRONG_LENGTH)
        if n == 6:
            raise ApduFormatError("a body of 00 ‖ one byte is neither short nor extended",
                                  SW_WRONG_LENGTH)
        if n == 7:  # case 2 extended
            le = int.from_bytes(raw[5:7], "big")
            return cls(cla, ins, p1, p2, le=le or EXTENDED_MAX_NE)
        lc = int.from_bytes(raw[5:7], "big")
        if lc == 0:
            raise ApduFormatError("extended Lc is 00 00 but data follows", SW_WRONG_LENGTH)
        if n == 7 + lc:  # case 3 extended
            return cls(cla, ins, p1, p2, raw[7:])
        if n == 9 + lc:  # case 4 extended
            le = int.from_bytes(raw[-2:], "big")
            return cls(cla, ins, p1, p2, raw[7:7 + lc], le=le or EXTENDED_MAX_NE)
        raise ApduFormatError(f"extended Lc {lc} does not match a body of {n - 7} bytes",
                              SW_WRONG_LENGTH)

    def __repr__(self) -> str:
        # Data can be a PIN: show its length, never its bytes.
        le = "" if self.le is None else f", le={self.le}"
        return (f"CommandApdu({self.cla:02X} {self.ins:02X} {self.p1:02X} {self.p2:02X}, "
                f"{len(self.data)} data bytes{le})")


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    """A response APDU: data ‖ SW1 SW2."""

    data: bytes
    sw1: int
    sw2: int

    def __post_init__(self) -> None:
        _check_byte("sw1", self.sw1)
        _check_byte("sw2", self.sw2)

    @classmethod
    def of(cls, sw: int, data: bytes = b"") -> ResponseApdu:
        return cls(data, sw >> 8, sw & 0xFF)

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise ApduFormatError(f"a response APDU ends with SW1 SW2, got {len(raw)} bytes",
                                  SW_WRONG_LENGTH)
        return cls(bytes(raw[:-2]), raw[-2], raw[-1])

    @property
    def sw(self) -> int:
        return self.sw1 << 8 | self.sw2

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK

    def encode(self) -> bytes:
        return self.data + bytes((self.sw1, self.sw2))

    def __repr__(self) -> str:
        return f"ResponseApdu({len(self.data)} data bytes, sw={self.sw:04X})"


def sw_bytes(sw: int) -> bytes:
    """A data-less response: just the status word."""
    return sw.to_bytes(2, "big")
