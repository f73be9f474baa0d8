"""APDU round trips per second to the card emulator: through the real PC/SC stack, and in-process.

    .venv/bin/python -m bench.card [--seconds 3] [--repeat 3] [--port 35964] [--json]

Setup, not measured: a temporary card state with a 1 KiB certificate in EF 000A and both PINs set
(written in-process through the issuer commands; no key generation is needed). Then, for each
round (``--repeat``, interleaved so that both paths see the same machine load):

- **in-process** (the baseline): ``JpkiCard`` → ``InProcessTransport`` → ``JpkiCardEmulator`` in
  this process — the cost of the codec, the client and the emulator alone;
- **PC/SC**: ``JpkiCard`` → ``PcscTransport`` (pyscard) → pcscd → vpcd → TCP → ``jpki card
  emulate`` (its own process, with ``TCP_QUICKACK`` before every recv) — what a station sees.

Two commands, each for ``--seconds`` after 200 warm-up round trips:

- READ BINARY of 0x100 bytes (``00 B0 00 00 00``) from EF 000A: the shape of reading certificates;
- an empty VERIFY (``00 20 00 80``, answered ``63 C3``): the smallest exchange, no state change.

Printed: APDUs/s on each path, p50 / p99 latency, and the ratio PC/SC ÷ in-process. pcscd is
started if its socket does not answer (and stopped again); the emulator runs on vpcd's second
reader (port 35964) by default so that a development card on 35963 is left alone.
``enrolment_breakdown`` is the hook where the enrolment station's per-step timings will go.
Results go to docs/performance.md; no test asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.card.apdu import CommandApdu
from jpki.card.client import JpkiCard
from jpki.card.emulator import JpkiCardEmulator
from jpki.card.jpki_ap import Ef, Pin
from jpki.card.transport import InProcessTransport

WARMUP = 200
READ_BINARY_256 = CommandApdu(0x00, 0xB0, 0x00, 0x00, le=256).encode()
EMPTY_VERIFY = CommandApdu(0x00, 0x20, 0x00, 0x80).encode()


@dataclass
class Result:
    operation: str
    path: str  # "in-process" or "pcsc"
    apdus_per_second: float
    p50_us: float
    p99_us: float
    count: int


@dataclass
class BenchCard:
    """What a measurement gets: an open card session and the raw APDU to repeat."""

    card: JpkiCard
    path: str


def _prepare_state(directory: Path) -> Path:
    issuer = rsa.generate_private_key(65537, 2048)
    pem = issuer.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    (directory / "issuer.pub.pem").write_bytes(pem)
    state = directory / "card.json"
    card = JpkiCard(InProcessTransport(JpkiCardEmulator.create(state, pem)))
    card.select_jpki_ap()
    card.authenticate_issuer(issuer)
    body = bytes(range(256)) * 4
    card.write_file(Ef.AUTH_CERT, b"\x30\x82" + len(body).to_bytes(2, "big") + body)
    card.reset_retry_counter(Pin.AUTH, "1234")
    card.reset_retry_counter(Pin.SIGN, "BENCH1")
    return state


def _measure(bench: BenchCard, operation: str, select: Callable[[JpkiCard], None],
             apdu: bytes, expected_sw: bytes, seconds: float) -> Result:
    select(bench.card)
    transmit = bench.card.transport.transmit
    for _ in range(WARMUP):
        if transmit(apdu)[-2:] != expected_sw:
            raise RuntimeError(f"{operation}: unexpected answer")
    latencies: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    started = clock()
    now = started
    while now < deadline:
        transmit(apdu)
        after = clock()
        latencies.append(after - now)
        now = after
    elapsed = (now - started) / 1e9
    latencies.sort()
    return Result(operation, bench.path, len(latencies) / elapsed,
                  latencies[len(latencies) // 2] / 1000,
                  latencies[int(len(latencies) * 0.99)] / 1000, len(latencies))


def _select_certificate(card: JpkiCard) -> None:
    card.select_jpki_ap()
    card.select_ef(Ef.AUTH_CERT)


def _select_auth_pin(card: JpkiCard) -> None:
    card.select_jpki_ap()
    card.select_ef(Ef.AUTH_PIN)


def round_trips(bench: BenchCard, seconds: float) -> list[Result]:
    return [
        _measure(bench, "READ BINARY 0x100", _select_certificate, READ_BINARY_256, b"\x90\x00",
                 seconds),
        _measure(bench, "empty VERIFY", _select_auth_pin, EMPTY_VERIFY, b"\x63\xc3", seconds),
    ]


def enrolment_breakdown(bench: BenchCard) -> list[Result]:
    """Hook: per-step timings of an enrolment (issuer auth, key generation, certificate writes,
    PIN setting) through ``bench.card``. To be filled in with the enrolment station; nothing yet.
    """
    return []


def _median(results: list[Result]) -> Result:
    first = results[0]
    return Result(first.operation, first.path,
                  statistics.median(r.apdus_per_second for r in results),
                  statistics.median(r.p50_us for r in results),
                  statistics.median(r.p99_us for r in results),
                  sum(r.count for r in results))


def run(seconds: float, repeat: int, port: int) -> dict[str, object]:
    from jpki.card import virtual_reader
    from jpki.card.pcsc import PcscTransport

    reader = virtual_reader.VPCD_PORTS[port]
    directory = Path(tempfile.mkdtemp(prefix="jpki-bench-card-"))
    load_start = _load_average()
    runs: list[Result] = []
    try:
        state = _prepare_state(directory)
        pcsc_state = directory / "pcsc-card.json"
        shutil.copy(state, pcsc_state)
        local = BenchCard(JpkiCard(InProcessTransport(JpkiCardEmulator.open(state))),
                          "in-process")
        with (virtual_reader.pcscd_running(),
              virtual_reader.emulator_running(pcsc_state, port=port,
                                              log=directory / "emulator.log"),
              PcscTransport.open(reader, exclusive=True) as transport):
            remote = BenchCard(JpkiCard(transport), "pcsc")
            for _ in range(repeat):
                runs += round_trips(local, seconds)
                runs += round_trips(remote, seconds)
            runs += enrolment_breakdown(remote)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    medians = [_median([r for r in runs if (r.operation, r.path) == key])
               for key in dict.fromkeys((r.operation, r.path) for r in runs)]
    ratios = {}
    for operation in dict.fromkeys(r.operation for r in medians):
        rate = {r.path: r.apdus_per_second for r in medians if r.operation == operation}
        if {"pcsc", "in-process"} <= rate.keys():
            ratios[operation] = rate["pcsc"] / rate["in-process"]
    return {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "load_average_at_start": load_start,
                    "load_average_at_end": _load_average()},
        "seconds": seconds, "repeat": repeat, "reader": reader,
        "results": [asdict(r) for r in medians],
        "ratio_pcsc_to_in_process": ratios,
    }


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _print(report: dict[str, object]) -> None:
    machine = report["machine"]
    assert isinstance(machine, dict)
    print(f"{machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}; load "
          f"{machine['load_average_at_start']} → {machine['load_average_at_end']}")
    print(f"{report['repeat']} round(s) of {report['seconds']} s per measurement, medians; "
          f"PC/SC reader {report['reader']!r}")
    print(f"{'operation':<20} {'path':<11} {'APDUs/s':>10} {'p50 µs':>9} {'p99 µs':>9}")
    results = report["results"]
    assert isinstance(results, list)
    for r in results:
        print(f"{r['operation']:<20} {r['path']:<11} {r['apdus_per_second']:>10,.0f} "
              f"{r['p50_us']:>9.1f} {r['p99_us']:>9.1f}")
    ratios = report["ratio_pcsc_to_in_process"]
    assert isinstance(ratios, dict)
    for operation, ratio in ratios.items():
        print(f"ratio PC/SC ÷ in-process, {operation}: {ratio:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--port", type=int, default=35964, choices=(35963, 35964))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.seconds, args.repeat, args.port)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
