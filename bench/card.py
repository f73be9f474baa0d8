"""APDU round trips per second to the card emulator: through the real PC/SC stack, and in-process.

    .venv/bin/python -m bench.card [--seconds 3] [--repeat 3] [--port 35964] [--json]
                                   [--enrolments 5] [--database sqlite|postgres]

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

Then the **enrolment breakdown** (``--enrolments N``, 0 to skip; ``--database sqlite|postgres``):
a temporary CA — its own SoftHSM token (``bench.common.bench_hsm``), a fresh database, the real
key ceremony, the API served by uvicorn in a thread of this process on a loopback port, so the
certificates carry that server's URLs — and ``EnrolmentStation.enroll`` with a station client's
credentials over HTTP, pattern B proofing, for one new resident per enrolment. Each enrolment gets
a fresh blank card: over PC/SC, a new ``jpki-card emulate`` process on the same reader; in-process
(the baseline), a new ``JpkiCardEmulator``. One warm-up enrolment per path is not counted; then
the paths alternate, N enrolments each. Printed per station step (``EnrolmentResult.steps``): the
median, min and max milliseconds on each path and the command APDUs the step sent.

Results go to docs/performance.md; no test asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devices.card.apdu import CommandApdu
from devices.card.client import JpkiCard
from devices.card.emulator import JpkiCardEmulator
from devices.card.jpki_ap import Ef, Pin
from devices.card.transport import InProcessTransport, Transport

if TYPE_CHECKING:
    from api.composition import Services
    from devices.station.ca_client import CaClient

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


# --- the enrolment station, step by step --------------------------------------------------

# Pattern B (reference §5): in person, two photo documents.
IN_PERSON_B: dict[str, Any] = {
    "presence": "in_person",
    "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]}


@dataclass
class StepTiming:
    path: str  # "in-process" or "pcsc"
    step: str
    median_ms: float
    min_ms: float
    max_ms: float
    apdus: int  # command APDUs the step sent (median; the same in every run)


class CountingTransport:
    """Counts the command APDUs of each station step (``enroll``'s ``on_step`` names it)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.step = ""
        self.counts: Counter[str] = Counter()

    def on_step(self, name: str) -> None:
        self.step = name

    def transmit(self, apdu: bytes) -> bytes:
        self.counts[self.step] += 1
        return self.inner.transmit(apdu)

    def close(self) -> None:
        self.inner.close()


@contextlib.contextmanager
def temporary_ca(directory: Path, database: str) -> Iterator[tuple[Services, CaClient]]:
    """A CA with its own SoftHSM token and database, served over HTTP, and a station's client."""
    from api.composition import build_services
    from api.in_process import free_port, served_in_thread
    from bench.common import OPERATOR, bench_hsm, fresh_database
    from devices.station.ca_client import CaClient
    from jpki.access.authz import Operation, authorize
    from jpki.model import ClientRole
    from jpki.settings import Settings

    with bench_hsm(parent=directory) as hsm, \
            fresh_database(database, hsm.data_dir, "card-enrolment") as url:
        port = free_port()
        settings = Settings(data_dir=hsm.data_dir, database_url=url,
                            base_url=f"http://127.0.0.1:{port}")
        services = build_services(settings, keys=hsm.keys, migrate=True)
        try:
            services.cas.ceremony(authorize(OPERATOR, Operation.CA_CEREMONY))
            station = services.clients.create(
                authorize(OPERATOR, Operation.CLIENT_CREATE), name="bench counter",
                role=ClientRole.STATION)
            with served_in_thread(services, port) as base_url, \
                    CaClient(base_url, station.client.client_id,
                             station.client_secret) as client:
                yield services, client
        finally:
            services.uow.engine.dispose()
            services.read_engine.dispose()


def _enrol(services: Services, ca: CaClient, transport: Transport,
           issuer: rsa.RSAPrivateKey, index: int) -> tuple[list[tuple[str, float]], Counter[str]]:
    from bench.common import OPERATOR, resident_fields
    from devices.station.workflow import EnrolmentStation
    from jpki.access.authz import Operation, authorize

    resident = services.residents.register(
        authorize(OPERATOR, Operation.RESIDENT_REGISTER), **resident_fields(index)).id
    counting = CountingTransport(transport)
    result = EnrolmentStation(ca, JpkiCard(counting), issuer).enroll(
        resident, proofing=IN_PERSON_B, auth_pin="1234", sign_pin="BENCH1",
        on_step=counting.on_step)
    return result.steps, counting.counts


def enrolment_breakdown(port: int, enrolments: int, directory: Path,
                        database: str = "sqlite") -> list[StepTiming]:
    """Per-step timings of ``enrolments`` full enrolments on each path (pcscd must be running)."""
    from devices.card import virtual_reader
    from devices.card.pcsc import PcscTransport

    reader = virtual_reader.VPCD_PORTS[port]
    issuer = rsa.generate_private_key(65537, 2048)
    pem = issuer.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    public = directory / "enrolment-issuer.pub.pem"
    public.write_bytes(pem)
    runs: dict[str, list[tuple[list[tuple[str, float]], Counter[str]]]] = {
        "in-process": [], "pcsc": []}
    with temporary_ca(directory, database) as (services, ca):
        for index in range(enrolments + 1):  # the first of each path is the warm-up
            local = JpkiCardEmulator.create(directory / f"enrol-local-{index}.json", pem)
            local_run = _enrol(services, ca, InProcessTransport(local), issuer, 2 * index)
            state = directory / f"enrol-pcsc-{index}.json"
            with virtual_reader.emulator_running(state, issuer_public_key=public, port=port,
                                                 log=directory / "enrol-emulator.log"), \
                    PcscTransport.open(reader, exclusive=True) as transport:
                pcsc_run = _enrol(services, ca, transport, issuer, 2 * index + 1)
            if index > 0:
                runs["in-process"].append(local_run)
                runs["pcsc"].append(pcsc_run)
    timings = []
    for path, done in runs.items():
        steps = [name for name, _ in done[0][0]] + ["(total)"]
        for step in steps:
            if step == "(total)":
                values = [sum(t for _, t in run_steps) for run_steps, _ in done]
                apdus = [sum(counts.values()) for _, counts in done]
            else:
                values = [dict(run_steps)[step] for run_steps, _ in done]
                apdus = [counts[step] for _, counts in done]
            timings.append(StepTiming(path, step, statistics.median(values) * 1000,
                                      min(values) * 1000, max(values) * 1000,
                                      int(statistics.median(apdus))))
    return timings


def _median(results: list[Result]) -> Result:
    first = results[0]
    return Result(first.operation, first.path,
                  statistics.median(r.apdus_per_second for r in results),
                  statistics.median(r.p50_us for r in results),
                  statistics.median(r.p99_us for r in results),
                  sum(r.count for r in results))


def run(seconds: float, repeat: int, port: int, enrolments: int = 5,
        database: str = "sqlite") -> dict[str, object]:
    from devices.card import virtual_reader
    from devices.card.pcsc import PcscTransport

    reader = virtual_reader.VPCD_PORTS[port]
    directory = Path(tempfile.mkdtemp(prefix="jpki-bench-card-"))
    load_start = _load_average()
    runs: list[Result] = []
    steps: list[StepTiming] = []
    try:
        state = _prepare_state(directory)
        pcsc_state = directory / "pcsc-card.json"
        shutil.copy(state, pcsc_state)
        local = BenchCard(JpkiCard(InProcessTransport(JpkiCardEmulator.open(state))),
                          "in-process")
        with virtual_reader.pcscd_running():
            with (virtual_reader.emulator_running(pcsc_state, port=port,
                                                  log=directory / "emulator.log"),
                  PcscTransport.open(reader, exclusive=True) as transport):
                remote = BenchCard(JpkiCard(transport), "pcsc")
                for _ in range(repeat):
                    runs += round_trips(local, seconds)
                    runs += round_trips(remote, seconds)
            if enrolments > 0:
                steps = enrolment_breakdown(port, enrolments, directory, database)
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
        "enrolment": {"enrolments": enrolments, "database": database,
                      "steps": [asdict(t) for t in steps]},
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
    enrolment = report["enrolment"]
    assert isinstance(enrolment, dict)
    steps = enrolment["steps"]
    if not steps:
        return
    print(f"\nenrolment by step, ms: median (min–max) of {enrolment['enrolments']} enrolment(s) "
          f"per path after one warm-up; CA database {enrolment['database']}")
    by_path = {(t["path"], t["step"]): t for t in steps}
    print(f"{'step':<32} {'APDUs':>5} {'in-process':>22} {'PC/SC':>22}")
    for step in dict.fromkeys(t["step"] for t in steps):
        cells = []
        for path in ("in-process", "pcsc"):
            t = by_path[(path, step)]
            cells.append(f"{t['median_ms']:.1f} ({t['min_ms']:.1f}–{t['max_ms']:.1f})")
        apdus = by_path[("pcsc", step)]["apdus"]
        print(f"{step:<32} {apdus:>5} {cells[0]:>22} {cells[1]:>22}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--port", type=int, default=35964, choices=(35963, 35964))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--enrolments", type=int, default=5,
                        help="full enrolments per path for the step breakdown (0: skip)")
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "postgres"),
                        help="the temporary CA's database for the enrolments")
    args = parser.parse_args(argv)
    report = run(args.seconds, args.repeat, args.port, args.enrolments, args.database)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
