"""Start the real PC/SC stack with a virtual card in it: pcscd + vpcd + the card emulator.

For tests, benchmarks and development (docs/components.md, "PC/SC with a virtual reader"). pcscd is
one per machine: :func:`pcscd_running` starts ``pcscd --foreground`` only when its socket does
not answer, and stops only what it started. :func:`emulator_running` starts the emulator as its
own process (``python -m devices.card.cli emulate``: ``jpki-card emulate`` without needing the
installed script) and waits until pcscd reports the card in the reader (pyscard
CardRequest, i.e. SCardGetStatusChange — no sleep-polling for the card).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from devices.card.emulator.vpcd import DEFAULT_PORT
from devices.card.errors import CardError, NoCardPresent
from devices.card.pcsc import VPCD_READER, PcscTransport, reader_names, wait_until_empty

PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_PORTS = {DEFAULT_PORT: VPCD_READER, DEFAULT_PORT + 1: "Virtual PCD 00 01"}
PORT_WAIT = 75.0  # longer than TCP's 60 s TIME_WAIT
EMULATE_COMMAND: tuple[str, ...] = (sys.executable, "-m", "devices.card.cli", "emulate")


class ComponentMissing(RuntimeError):
    """pcscd, vpcd or the reader is not there: tests skip (or fail in CI) on this."""


def pcscd_answers() -> bool:
    """Whether something accepts connections on pcscd's socket (a stale file does not)."""
    if not PCSCD_SOCKET.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(PCSCD_SOCKET))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def pcscd_running(*, timeout: float = 10.0, log: Path | None = None) -> Iterator[bool]:
    """Ensure pcscd runs; yield whether this call started it (and will stop it)."""
    if pcscd_answers():
        yield False
        return
    binary = shutil.which("pcscd")
    if binary is None:
        raise ComponentMissing("pcscd is not installed (apt-get install pcscd)")
    if not VPCD_DRIVER.exists():
        raise ComponentMissing("vsmartcard-vpcd is not installed (apt-get install "
                               "vsmartcard-vpcd)")
    _wait_for_vpcd_ports(timeout=PORT_WAIT)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("ab")) if log is not None else subprocess.DEVNULL
        process = subprocess.Popen([binary, "--foreground"], stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + timeout
            # pcscd offers no readiness signal but its socket: wait for it, watching the process.
            while not pcscd_answers():
                if process.poll() is not None:
                    raise ComponentMissing(f"pcscd exited with status {process.returncode}")
                if time.monotonic() > deadline:
                    raise ComponentMissing(f"pcscd did not open {PCSCD_SOCKET} in {timeout} s")
                time.sleep(0.02)
            yield True
        finally:
            _stop(process, timeout=10.0)  # pcscd can take ~1.7 s to exit (docs/components.md)


def _vpcd_ports_free() -> bool:
    for port in VPCD_PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("0.0.0.0", port))  # noqa: S104 — vpcd binds all interfaces too
            except OSError:
                return False
    return True


def _wait_for_vpcd_ports(*, timeout: float) -> None:
    """Wait until vpcd will be able to bind 35963 and 35964.

    Both ports lie in Linux's ephemeral range (32768–60999): any client connection on the machine
    may have used one as its source port and left it in TIME_WAIT for 60 s. vpcd binds without
    SO_REUSEADDR, and if either bind fails pcscd starts with *no* vpcd reader at all ("Address
    already in use" in pcscd's log). Reserving the ports (sysctl
    net.ipv4.ip_local_reserved_ports=35963-35964) avoids the wait.
    """
    deadline = time.monotonic() + timeout
    while not _vpcd_ports_free():
        if time.monotonic() > deadline:
            raise ComponentMissing(f"vpcd's ports {sorted(VPCD_PORTS)} stay in use (TIME_WAIT "
                                   "or another process)")
        time.sleep(0.5)


@contextlib.contextmanager
def emulator_running(state: Path, *, issuer_public_key: Path | None = None,
                     port: int = DEFAULT_PORT, token_label: str | None = None,
                     timeout: float = 30.0, log: Path | None = None,
                     command: Sequence[str] = EMULATE_COMMAND,
                     env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``jpki-card emulate`` on ``state`` until the block ends; the card is in the reader.

    pcscd must be running with vpcd. Refuses a reader that already holds a card: it would be
    someone else's, and the tests would talk to it.
    """
    reader = VPCD_PORTS.get(port)
    if reader is None:
        raise ValueError(f"vpcd listens on {sorted(VPCD_PORTS)}, not {port}")
    if not reader_listed(reader, timeout=5.0):
        raise ComponentMissing(f"pcscd has no reader {reader!r}: is vsmartcard-vpcd installed "
                               "(before pcscd started)?")
    # Also waits out a card that just left: pcscd must see the reader empty between two cards.
    if not wait_until_empty(reader, timeout=5.0):
        raise ComponentMissing(f"{reader!r} already holds a card: another emulator runs")
    args = [*command, "--state", str(state), "--port", str(port)]
    if issuer_public_key is not None:
        args += ["--issuer-public-key", str(issuer_public_key)]
    if token_label is not None:
        args += ["--token-label", token_label]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("ab")) if log is not None else subprocess.DEVNULL
        process = subprocess.Popen(args, stdout=out, stderr=out, env=env)
        try:
            if not card_present(reader, timeout=timeout):
                status = process.poll()
                raise ComponentMissing(
                    f"the emulator's card did not appear in {reader!r} within {timeout} s"
                    + ("" if status is None else f" (it exited with status {status})"))
            yield process
        finally:
            _stop(process, timeout=10.0)


def reader_listed(reader: str, *, timeout: float) -> bool:
    """Whether pcscd lists ``reader``, waiting up to ``timeout`` s for a pcscd that just started.

    pcscd opens its socket before it has loaded the reader drivers of /etc/reader.conf.d.
    """
    deadline = time.monotonic() + timeout
    while reader not in reader_names():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def card_present(reader: str = VPCD_READER, *, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for a card in ``reader`` (pyscard CardRequest)."""
    try:
        PcscTransport.open(reader, timeout=timeout).close()
    except NoCardPresent:
        return False
    except CardError:
        return False
    return True


def _stop(process: subprocess.Popen[bytes], *, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
