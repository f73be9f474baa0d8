"""Put the emulator in pcscd's virtual reader: the vsmartcard-vpcd protocol, card side.

docs/components.md: when pcscd starts, the vpcd driver *listens* on TCP 35963 (reader
``Virtual PCD 00 00``) and 35964 (``Virtual PCD 00 01``); the card is a TCP *client*. Every
message, both ways, is ``uint16 big-endian length ‖ payload``. From vpcd, a 1-byte payload is a
control — ``00`` power off, ``01`` power on, ``02`` reset (no reply), ``04`` send the ATR (reply
with it) — and a longer one is a command APDU, answered with response data ‖ SW1 SW2. Closing the
socket removes the card.

Latency: vpcd writes the length and the payload in two sends with Nagle on, so unless the card
sets ``TCP_QUICKACK`` before *every* ``recv`` (Linux turns it off again by itself), each APDU waits
for the delayed ACK, ~40 ms. With it, a round trip through pyscard is ~0.15 ms.

If pcscd restarts, the connection drops (the card "leaves the reader", losing its volatile
state) and the card reconnects as soon as vpcd listens again. Only APDU counts are logged, never
contents: they carry PINs.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from typing import Protocol

log = logging.getLogger("devices.card.emulator")

DEFAULT_HOST = "127.0.0.1"  # vpcd listens on all interfaces: keep the card on loopback
DEFAULT_PORT = 35963
RECONNECT_DELAY = 0.25  # seconds between attempts while vpcd is not listening
# pcscd learns of a removal only from vpcd's presence poll (every ~0.4 s). A card that arrives
# before a poll has seen the reader empty is taken for the one that left (pcscd logs no removal
# and no insertion), and pcscd never powers it up: the reader looks empty to clients for good.
# So a card always lets one poll pass before it enters the reader.
ARRIVAL_DELAY = 0.5

CONTROL_POWER_OFF = 0x00
CONTROL_POWER_ON = 0x01
CONTROL_RESET = 0x02
CONTROL_GET_ATR = 0x04

_LENGTH = struct.Struct(">H")


class VirtualCard(Protocol):
    """What the reader link needs from a card: an ATR, APDU processing and a reset."""

    @property
    def atr(self) -> bytes: ...

    def process(self, apdu: bytes) -> bytes: ...

    def reset(self) -> None: ...


class VpcdLink:
    """Serve ``card`` to the vpcd reader at ``host:port`` until :meth:`stop` is called."""

    def __init__(self, card: VirtualCard, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.apdus = 0  # since start
        self.connections = 0
        self.connected = threading.Event()  # set while vpcd holds the card
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Connect, serve, reconnect after pcscd restarts; return once :meth:`stop` is called."""
        arriving = True
        while not self._stopping.is_set():
            if arriving and self._stopping.wait(ARRIVAL_DELAY):
                break
            arriving = False
            try:
                sock = socket.create_connection((self.host, self.port), timeout=5.0)
            except OSError:
                self._stopping.wait(RECONNECT_DELAY)  # vpcd not listening (yet / any more)
                continue
            if sock.getsockname() == sock.getpeername():
                # With nothing listening, a connect to a port in the ephemeral range can pick
                # that very port as its source and connect to itself (TCP simultaneous open).
                # It would then hold vpcd's port so that pcscd cannot bind it: let go, retry.
                sock.close()
                self._stopping.wait(RECONNECT_DELAY)
                continue
            self._sock = sock
            self.connections += 1
            try:
                self._serve(sock)
            except OSError as exc:
                if not self._stopping.is_set():
                    log.warning("vpcd connection failed: %s", type(exc).__name__)
            finally:
                self._sock = None
                self.connected.clear()
                sock.close()
                self.card.reset()  # removed from the reader: the card session is over
                arriving = True
        log.info("stopped after %d APDUs", self.apdus)

    def stop(self) -> None:
        """Ask :meth:`serve_forever` to return; safe from a signal handler or another thread."""
        self._stopping.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv with end-of-stream

    # --- one connection ----------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.info("connected to vpcd at %s:%d", self.host, self.port)
        self.connected.set()
        at_power_on = self.apdus
        while True:
            header = self._recv_exactly(sock, _LENGTH.size)
            if header is None:
                if not self._stopping.is_set():
                    log.info("vpcd closed the connection (pcscd stopped?) after %d APDUs",
                             self.apdus - at_power_on)
                return
            (length,) = _LENGTH.unpack(header)
            payload = self._recv_exactly(sock, length) if length else b""
            if payload is None:
                return
            if length == 1:
                control = payload[0]
                log.debug("control %02X", control)
                if control == CONTROL_GET_ATR:
                    self._send(sock, self.card.atr)
                elif control in (CONTROL_POWER_OFF, CONTROL_POWER_ON, CONTROL_RESET):
                    if control == CONTROL_POWER_OFF and self.apdus > at_power_on:
                        log.info("power off after %d APDUs (%d in all)",
                                 self.apdus - at_power_on, self.apdus)
                    at_power_on = self.apdus
                    self.card.reset()
                continue
            self.apdus += 1
            self._send(sock, self._answer(payload))

    def _answer(self, apdu: bytes) -> bytes:
        try:
            return self.card.process(apdu)
        except Exception:
            # The emulator never raises by design (its fuzz test says so); should it, the card
            # answers "no precise diagnosis" instead of vanishing from the reader.
            log.exception("the card failed on an APDU")
            return b"\x6f\x00"

    @staticmethod
    def _send(sock: socket.socket, payload: bytes) -> None:
        sock.sendall(_LENGTH.pack(len(payload)) + payload)  # one segment: no Nagle wait

    @staticmethod
    def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
        buffer = bytearray()
        while len(buffer) < n:
            # docs/components.md: QUICKACK before every recv, or ~40 ms per APDU (Linux clears it).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(n - len(buffer))
            if not chunk:
                return None
            buffer += chunk
        return bytes(buffer)
