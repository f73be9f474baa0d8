"""Errors of the card side: the APDU codec, the card client and the transports.

They join the domain's one hierarchy (:mod:`jpki.errors`) so that a station workflow can handle a
card refusal like any other refusal. A refusal that the card itself gave carries its status word
(``sw``, e.g. ``"6982"``) in the context; nothing here ever carries a PIN value or card contents.
"""

from __future__ import annotations

from typing import ClassVar

from jpki.errors import Category, JpkiError


class CardError(JpkiError):
    """Base of everything that goes wrong talking to a card."""

    code = "card.error"
    category: ClassVar[Category] = Category.UNAVAILABLE
    title = "The card could not be used"


class ApduFormatError(CardError):
    """A command or response APDU is not well formed (ISO/IEC 7816-4 §5.1).

    ``sw`` is the status word a card answers to such a command, usually 6700 (wrong length).
    """

    code = "card.apdu_malformed"
    category = Category.INVALID_INPUT
    title = "The APDU is malformed"

    def __init__(self, detail: str, sw: int) -> None:
        super().__init__(detail, sw=f"{sw:04X}")
        self.sw = sw


class CardStatusError(CardError):
    """The card refused a command with a status word the client did not expect."""

    code = "card.refused"
    title = "The card refused the command"

    def __init__(self, detail: str, sw: int) -> None:
        super().__init__(detail, sw=f"{sw:04X}")
        self.sw = sw


class WrongPin(CardStatusError):
    """VERIFY answered 63Cx: the PIN was wrong and ``retries_left`` tries remain.

    reference §4.5: ``63 C0`` is the answer to the attempt that exhausts the counter, so
    ``retries_left == 0`` means the PIN is blocked from now on (:attr:`blocked`).
    """

    code = "card.wrong_pin"
    category = Category.UNAUTHENTICATED
    title = "Wrong PIN"

    def __init__(self, detail: str, sw: int) -> None:
        super().__init__(detail, sw)
        self.retries_left = sw & 0x0F
        self.context["retries_left"] = self.retries_left

    @property
    def blocked(self) -> bool:
        return self.retries_left == 0


class PinBlocked(CardStatusError):
    """69 84: the PIN's retry counter is exhausted (reference §4.5); only a reset helps."""

    code = "card.pin_blocked"
    category = Category.FORBIDDEN
    title = "The PIN is blocked"


class SecurityStatusNotSatisfied(CardStatusError):
    """69 82: the command needs a verified PIN or issuer authentication first."""

    code = "card.security_status"
    category = Category.FORBIDDEN
    title = "Security status not satisfied"


class CardFileNotFound(CardStatusError):
    """6A 82: no such application or file."""

    code = "card.file_not_found"
    category = Category.NOT_FOUND
    title = "No such file or application on the card"


class IssuerAuthenticationFailed(CardStatusError):
    """EXTERNAL AUTHENTICATE refused: the signature did not verify with the card's issuer key."""

    code = "card.issuer_auth_failed"
    category = Category.UNAUTHENTICATED
    title = "Issuer authentication failed"


class CertificateAbsent(CardError):
    """The certificate EF is empty: the card has not been given this certificate."""

    code = "card.certificate_absent"
    category = Category.NOT_FOUND
    title = "The card holds no such certificate"


class InvalidPinFormat(CardError):
    """The PIN does not follow reference §4.5; refused before it reaches the card."""

    code = "card.pin_format"
    category = Category.INVALID_INPUT
    title = "The PIN does not have the required format"


class MalformedCardResponse(CardError):
    """The card answered 90 00 with data that is not what the command returns."""

    code = "card.response_malformed"
    category = Category.INTERNAL
    title = "The card's answer could not be understood"


class ReaderNotFound(CardError):
    code = "card.reader_not_found"
    title = "No such card reader"


class NoCardPresent(CardError):
    code = "card.absent"
    title = "No card in the reader"


class CardRemoved(CardError):
    """The card left the reader (or was reset by another application) during a session.

    Everything the session had established (selected application, verified PINs, issuer
    authentication) is gone with it.
    """

    code = "card.removed"
    title = "The card was removed"


class CardCommunicationError(CardError):
    code = "card.communication"
    title = "Communication with the card failed"


class CardStateError(CardError):
    """The emulator's state file is missing, unreadable or inconsistent."""

    code = "card.state_invalid"
    category = Category.INTERNAL
    title = "The card state is invalid"
