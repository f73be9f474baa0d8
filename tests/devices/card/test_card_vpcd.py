"""The vpcd link, card side, against a stand-in for vpcd's listening socket (no pcscd needed):
framing, controls, power events and reconnection after the reader goes away."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from devices.card.emulator.vpcd import VpcdLink
from devices.card.jpki_ap import JPKI_ATR
from tests.devices.card.conftest import EmulatedCard


class FakeVpcd:
    """The listening side vpcd plays in pcscd."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.server.settimeout(10)

    def accept(self) -> socket.socket:
        conn, _ = self.server.accept()
        conn.settimeout(10)
        return conn

    @staticmethod
    def send(conn: socket.socket, payload: bytes) -> None:
        conn.sendall(struct.pack(">H", len(payload)) + payload)

    @staticmethod
    def receive(conn: socket.socket) -> bytes:
        header = conn.recv(2, socket.MSG_WAITALL)
        (length,) = struct.unpack(">H", header)
        return conn.recv(length, socket.MSG_WAITALL)

    def exchange(self, conn: socket.socket, payload: bytes) -> bytes:
        self.send(conn, payload)
        return self.receive(conn)


@pytest.fixture
def vpcd() -> Iterator[FakeVpcd]:
    fake = FakeVpcd()
    yield fake
    fake.server.close()


def test_controls_apdus_power_and_reconnect(vpcd: FakeVpcd, card: EmulatedCard) -> None:
    link = VpcdLink(card.emulator, "127.0.0.1", vpcd.port)
    thread = threading.Thread(target=link.serve_forever, daemon=True)
    thread.start()
    try:
        conn = vpcd.accept()
        assert vpcd.exchange(conn, b"\x04") == JPKI_ATR  # ATR request
        vpcd.send(conn, b"\x01")  # power on: no reply
        select = bytes.fromhex("00A4040C0AD392F000260100000001")
        assert vpcd.exchange(conn, select) == b"\x90\x00"
        assert vpcd.exchange(conn, bytes.fromhex("00A4020C020018")) == b"\x90\x00"
        assert vpcd.exchange(conn, b"\x00\x20\x00\x80\x04" + b"1234") == b"\x90\x00"
        assert card.emulator.session.verified
        vpcd.send(conn, b"\x00")  # power off: the session ends
        assert vpcd.exchange(conn, b"\x04") == JPKI_ATR  # (orders the power-off before us)
        assert not card.emulator.session.verified
        assert vpcd.exchange(conn, bytes.fromhex("00A4020C020018")) == b"\x6a\x82"
        vpcd.send(conn, b"\x02")  # reset
        assert vpcd.exchange(conn, b"\x04") == JPKI_ATR
        assert link.apdus == 4
        conn.close()  # pcscd stopped: the card is removed and comes back
        again = vpcd.accept()
        assert vpcd.exchange(again, select) == b"\x90\x00"
        assert link.connections == 2
        extended = b"\x00\xb0\x00\x00\x00\x01\x00"  # READ BINARY, extended Le 256
        assert vpcd.exchange(again, extended) == b"\x69\x86"  # a fresh session: no EF
        again.close()
    finally:
        link.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_stop_while_waiting_for_vpcd() -> None:
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    link = VpcdLink(_Dummy(), "127.0.0.1", port)
    thread = threading.Thread(target=link.serve_forever, daemon=True)
    thread.start()
    link.stop()
    thread.join(5)
    assert not thread.is_alive()


class _Dummy:
    atr = JPKI_ATR

    def process(self, apdu: bytes) -> bytes:
        return b"\x90\x00"

    def reset(self) -> None:
        pass
