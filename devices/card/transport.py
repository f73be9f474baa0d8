"""How APDUs reach a card: the :class:`Transport` protocol and the in-process transport.

A transport carries one command APDU and returns the complete response. Both transports finish
the two ISO/IEC 7816-4 exchanges that a client should never see (reference §4.4):

- ``61 xx``: more response data waits; fetch it with GET RESPONSE ``00 C0 00 00 xx`` and join it.
- ``6C xx``: wrong Le; resend the same command with Le = xx.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from devices.card.apdu import (
    SW_BYTES_REMAINING,
    SW_CORRECT_LENGTH,
    CommandApdu,
)
from devices.card.errors import ApduFormatError, CardCommunicationError

INS_GET_RESPONSE = 0xC0
# A bound on the GET RESPONSE chain, so that a card answering 61xx forever cannot hang a client.
MAX_GET_RESPONSE_ROUNDS = 64


class Transport(Protocol):
    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return response data ‖ SW1 SW2, after 61xx / 6Cxx."""
        ...

    def close(self) -> None: ...


class ApduProcessor(Protocol):
    """Anything that answers APDUs in-process, e.g. the card emulator."""

    def process(self, apdu: bytes) -> bytes: ...


def complete_exchange(send: Callable[[bytes], bytes], apdu: bytes) -> bytes:
    """Send ``apdu`` with ``send`` and finish 6Cxx (resend) and 61xx (GET RESPONSE) chains."""
    response = send(apdu)
    if len(response) < 2:
        raise CardCommunicationError(f"the card answered {len(response)} bytes, not a status word")
    if response[-2] == SW_CORRECT_LENGTH >> 8:
        try:
            command = CommandApdu.parse(apdu)
        except ApduFormatError:
            return response  # nothing sensible to resend; let the caller see the 6Cxx
        response = send(replace(command, le=response[-1] or 256).encode())
    data = bytearray()
    for _ in range(MAX_GET_RESPONSE_ROUNDS):
        if len(response) < 2:
            raise CardCommunicationError("the card answered without a status word")
        if response[-2] != SW_BYTES_REMAINING >> 8:
            return bytes(data) + response
        data += response[:-2]
        response = send(CommandApdu(0x00, INS_GET_RESPONSE, 0x00, 0x00,
                                    le=response[-1] or 256).encode())
    raise CardCommunicationError("the card kept answering 61xx")


class InProcessTransport:
    """A transport straight into an :class:`ApduProcessor`: unit tests and benchmarks."""

    def __init__(self, card: ApduProcessor) -> None:
        self.card = card

    def transmit(self, apdu: bytes) -> bytes:
        return complete_exchange(self.card.process, apdu)

    def close(self) -> None:
        pass
