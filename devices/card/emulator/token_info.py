"""EF 0006: a PKCS#11 ``CK_TOKEN_INFO`` serialised with 32-bit big-endian CK_ULONGs, 160 bytes.

reference §4.3 and MYNACARD-JPKI: label[32] ‖ manufacturerID[32] ‖ model[16] ‖
serialNumber[16] ‖ 11 × CK_ULONG (flags, session counts, PIN lengths, memory) ‖ hardwareVersion[2]
‖ firmwareVersion[2] ‖ utcTime[16]. Only the label is known to matter to clients (it tells a card
from a phone, reference §2); the rest is plausible: physical cards put ASCII "03" / "01" in
the version slots, and the emulator has no clock, so utcTime is blank.
"""

from __future__ import annotations

import struct

from devices.card.jpki_ap import TOKEN_LABEL_LENGTH

TOKEN_INFO_LENGTH = 160
CKF_RNG = 0x0000_0001
CKF_LOGIN_REQUIRED = 0x0000_0004
CKF_USER_PIN_INITIALIZED = 0x0000_0008
CKF_TOKEN_INITIALIZED = 0x0000_0400
CK_UNAVAILABLE_INFORMATION = 0xFFFF_FFFF
CK_EFFECTIVELY_INFINITE = 0


def _padded(text: str, width: int) -> bytes:
    raw = text.encode("ascii")
    if len(raw) > width:
        raise ValueError(f"at most {width} ASCII characters")
    return raw.ljust(width, b" ")


def token_info(label: str, *, serial: str) -> bytes:
    flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED
    ulongs = struct.pack(
        ">11I",
        flags,
        CK_EFFECTIVELY_INFINITE, CK_UNAVAILABLE_INFORMATION,  # max / current sessions
        CK_EFFECTIVELY_INFINITE, CK_UNAVAILABLE_INFORMATION,  # max / current r/w sessions
        16, 4,  # max / min PIN length (reference §4.5)
        *([CK_UNAVAILABLE_INFORMATION] * 4),  # public / private memory, total and free
    )
    info = (_padded(label, TOKEN_LABEL_LENGTH) + _padded("jpki card emulator", 32)
            + _padded("JPKI-AP", 16) + _padded(serial, 16) + ulongs + b"03" + b"01"
            + b" " * 16)
    assert len(info) == TOKEN_INFO_LENGTH
    return info
