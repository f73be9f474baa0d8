"""The card's volatile security state: lost at power-off, reset, removal and emulator restart.

ISO/IEC 7816-4 §5.4: verified PINs and an authenticated issuer last for the card session only.
None of this is ever written to the state file — in particular not the issuer-authenticated flag:
after a restart the station must authenticate again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.card.face_aps import FaceAp
from devices.card.jpki_ap import Ef, Pin


@dataclass
class Session:
    ap_selected: bool = False  # JPKI-AP is the current application
    current_ef: Ef | None = None
    verified: set[Pin] = field(default_factory=set)
    # The 券面 applications (reference §4.6): which one is current, its current EF, and the
    # credentials verified. Only one application is current at a time; selecting another one
    # clears what was verified (see JpkiCardEmulator._select).
    face_ap: FaceAp | None = None
    face_ef: int | None = None
    face_verified: set[tuple[FaceAp, int]] = field(default_factory=set)  # (AP, key FID)
    issuer_authenticated: bool = False
    # GET CHALLENGE's answer: valid for the very next command only, and only once.
    challenge: bytes | None = None
    # EXTERNAL AUTHENTICATE P2 9B's answer (a reset of the signing PIN the CA authorised for
    # this card and challenge, architecture §7.1): valid for the very next command only, once.
    reset_authorised: Pin | None = None
    # Response bytes still to be fetched with GET RESPONSE after a 61xx.
    pending: bytes = b""
