"""The PC/SC transport: pyscard → pcscd → a reader (real, or vpcd's virtual one).

The only module of jpki that imports pyscard (``smartcard``), per the import contract of
architecture §2. It finds a reader by its exact name, waits for a card with pyscard's CardRequest
(pcscd's SCardGetStatusChange: no sleep-polling), sends raw APDUs and finishes 61xx / 6Cxx
exchanges (reference §4.4) with :func:`~devices.card.transport.complete_exchange`. A card that
leaves the reader, or is reset by another application, raises :class:`CardRemoved`: whatever the
session had established on the card is gone.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any

from smartcard import scard  # type: ignore[import-untyped]
from smartcard.CardRequest import CardRequest  # type: ignore[import-untyped]
from smartcard.CardType import AnyCardType  # type: ignore[import-untyped]
from smartcard.Exceptions import (  # type: ignore[import-untyped]
    CardConnectionException,
    CardRequestTimeoutException,
    NoCardException,
    SmartcardException,
)
from smartcard.pcsc.PCSCExceptions import BaseSCardException  # type: ignore[import-untyped]
from smartcard.System import readers as list_readers  # type: ignore[import-untyped]

from devices.card.errors import (
    CardCommunicationError,
    CardRemoved,
    NoCardPresent,
    ReaderNotFound,
)
from devices.card.transport import complete_exchange

# docs/components.md: vsmartcard-vpcd's first reader (TCP 35963); the second is "Virtual PCD 00 01".
VPCD_READER = "Virtual PCD 00 00"
DEFAULT_CARD_TIMEOUT = 10.0

# PC/SC results that mean the card (or its session) is gone. SCARD_E_NOT_TRANSACTED is what a
# card that vanishes in the middle of an exchange gives before pcscd's presence poll notices
# (vpcd: the card closed its socket); whatever the cause, the card session cannot continue.
_REMOVAL_CODES = frozenset(
    code & 0xFFFFFFFF for code in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD,
                                   scard.SCARD_W_RESET_CARD, scard.SCARD_W_UNPOWERED_CARD,
                                   scard.SCARD_E_NOT_TRANSACTED)
)


def reader_names() -> list[str]:
    """The names of the readers pcscd knows; empty when pcscd is not running."""
    try:
        return [str(reader) for reader in list_readers()]
    except (SmartcardException, BaseSCardException):
        return []


class PcscTransport:
    """One PC/SC connection to the card in one reader. Use :meth:`open`."""

    def __init__(self, service: Any, reader: str) -> None:
        # Hold the card service, not just its connection: pyscard's CardService disconnects in
        # its __del__, which would end the session as soon as open() returned.
        self._service = service
        self._connection = service.connection
        self.reader = reader

    @classmethod
    def open(cls, reader: str = VPCD_READER, *, timeout: float = DEFAULT_CARD_TIMEOUT,
             exclusive: bool = False, reset: bool = True) -> PcscTransport:
        """Connect to the card in ``reader``, waiting up to ``timeout`` seconds for one.

        ``exclusive`` keeps other applications (OpenSC, another station process) off the card
        for the whole session, e.g. during personalisation. ``reset`` (the default) starts with
        a warm reset: OpenSC and most PC/SC clients disconnect with SCARD_LEAVE_CARD, which
        leaves their verified PINs standing on the powered card for whoever connects next.
        """
        matching = [r for r in _readers() if str(r) == reader]
        if not matching:
            raise ReaderNotFound(f"no reader named {reader!r}", readers=", ".join(reader_names()))
        request = CardRequest(readers=matching, cardType=AnyCardType(), timeout=timeout)
        try:
            service = request.waitforcard()
        except CardRequestTimeoutException as exc:
            raise NoCardPresent(f"no card in {reader!r} after {timeout:g} s") from exc
        except SmartcardException as exc:
            raise CardCommunicationError(f"waiting for a card failed: {exc}") from exc
        mode = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
        try:
            service.connection.connect(mode=mode)
            if reset:
                service.connection.reconnect(mode=mode, disposition=scard.SCARD_RESET_CARD)
        except NoCardException as exc:
            raise CardRemoved("the card left the reader while connecting") from exc
        except CardConnectionException as exc:
            raise _translate(exc, "connecting") from exc
        return cls(service, reader)

    def atr(self) -> bytes:
        try:
            return bytes(self._connection.getATR())
        except CardConnectionException as exc:
            raise _translate(exc, "reading the ATR") from exc

    def _send(self, apdu: bytes) -> bytes:
        try:
            data, sw1, sw2 = self._connection.transmit(list(apdu))
        except CardConnectionException as exc:
            raise _translate(exc, "transmitting") from exc
        return bytes(data) + bytes((sw1, sw2))

    def transmit(self, apdu: bytes) -> bytes:
        return complete_exchange(self._send, apdu)

    def close(self) -> None:
        """Disconnect with a reset (or power-down): whatever the session established on the
        card — verified PINs, issuer authentication — ends here, not with the next client."""
        # Either step fails when the card or pcscd is already gone: nothing left to release.
        with contextlib.suppress(CardConnectionException):
            self._connection.disconnect()
        with contextlib.suppress(CardConnectionException):
            self._connection.release()

    def __enter__(self) -> PcscTransport:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def wait_until_empty(reader: str, *, timeout: float) -> bool:
    """Wait up to ``timeout`` s until pcscd reports no card in ``reader`` (SCardGetStatusChange).

    A card that leaves and a new one that arrives within one presence poll look to pcscd like
    one card that never left, and it does not power the new one up (seen with vpcd, whose
    presence poll runs every ~0.4 s). Whoever replaces a virtual card waits for this first.
    """
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise ReaderNotFound(f"pcscd is not available: {scard.SCardGetErrorMessage(hresult)}")
    try:
        deadline = time.monotonic() + timeout
        known = scard.SCARD_STATE_UNAWARE
        while True:
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
            hresult, states = scard.SCardGetStatusChange(context, wait_ms, [(reader, known)])
            if hresult == scard.SCARD_E_TIMEOUT:
                return False
            if hresult != scard.SCARD_S_SUCCESS:
                raise ReaderNotFound(f"no reader {reader!r}: "
                                     f"{scard.SCardGetErrorMessage(hresult)}")
            _, known, _ = states[0]
            if known & scard.SCARD_STATE_EMPTY:
                return True
            known &= ~scard.SCARD_STATE_CHANGED
            if time.monotonic() >= deadline:
                return False
    finally:
        scard.SCardReleaseContext(context)


def _readers() -> list[Any]:
    try:
        return list(list_readers())
    except (SmartcardException, BaseSCardException) as exc:
        raise ReaderNotFound(f"pcscd cannot list readers: {exc}") from exc


def _translate(exc: SmartcardException, what: str) -> CardRemoved | CardCommunicationError:
    if int(exc.hresult) & 0xFFFFFFFF in _REMOVAL_CODES:
        return CardRemoved(f"the card was removed or reset while {what}")
    return CardCommunicationError(f"PC/SC failed while {what}: {exc}")
