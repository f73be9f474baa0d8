"""Kiosk resets of the signing password per second, over loopback HTTP and PC/SC (architecture
§7.1), against the card's APDU round-trip floor measured in the same run.

    .venv/bin/python -m bench.kiosk [--resets 20] [--seconds 2] [--port 35964]
                                    [--database sqlite|postgres] [--json]

Setup, not measured: a temporary CA (its own SoftHSM token, ``bench.common.bench_hsm``; a fresh
database; the real key ceremony; the API served by uvicorn in a thread of this process on a
loopback port), the card-management key imported into that HSM, a station, a registered holder
app and a kiosk; pcscd and ``jpki-card emulate`` on vpcd's second reader with a blank card, which
the enrolment station enrols over PC/SC and whose 券面 applications are issued. The limits per
card, app and kiosk are lifted (a bench resets one card many times).

Measured, on the same card session:

- **the floor**: empty VERIFY round trips through PC/SC for ``--seconds`` (``bench.card``'s
  measurement): what one APDU costs at least;
- **resets**: ``--resets`` times (after one warm-up), the holder app obtains an online password
  (timed apart: the holder does it at home) and the kiosk resets the signing password with it
  (``Kiosk.reset_signing_password``), the APDUs counted. Printed: resets per second (kiosk part
  only, and with the app), the median / min / max of each kiosk step, the APDUs a reset sends,
  and the ratio of a reset to its APDUs at the floor's p50 — how much of a reset is the card's
  round trips and how much the CA (two HTTP round trips, two scrypt hashes — the app's at
  issue and the kiosk's at the check —, one HSM signature, the database).

A shared machine gives noisy figures; docs/performance.md records one run and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bench.card import BenchCard, round_trips
from devices.card.client import JpkiCard
from devices.card.transport import Transport

if TYPE_CHECKING:
    from api.composition import Services

IN_PERSON_B: dict[str, Any] = {
    "presence": "in_person",
    "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]}


class Counting:
    """Counts command APDUs through a transport."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.count = 0

    def transmit(self, apdu: bytes) -> bytes:
        self.count += 1
        return self.inner.transmit(apdu)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Parties:
    services: Services
    url: str
    station: tuple[str, str]
    kiosk: tuple[str, str]
    app: tuple[str, str]
    app_key: ec.EllipticCurvePrivateKey


@contextlib.contextmanager
def temporary_ca(directory: Path, database: str, issuer: rsa.RSAPrivateKey) -> Iterator[Parties]:
    from api.composition import build_services
    from api.in_process import free_port, served_in_thread
    from bench.common import OPERATOR, bench_hsm, fresh_database
    from jpki.access.authz import Operation, authorize
    from jpki.model import ClientRole
    from jpki.pin_reset.rules import Limits
    from jpki.settings import Settings

    with bench_hsm(parent=directory) as hsm, \
            fresh_database(database, hsm.data_dir, "kiosk") as url:
        port = free_port()
        settings = Settings(data_dir=hsm.data_dir, database_url=url,
                            base_url=f"http://127.0.0.1:{port}")
        services = build_services(settings, keys=hsm.keys, migrate=True)
        try:
            services.cas.ceremony(authorize(OPERATOR, Operation.CA_CEREMONY))
            hsm.keys.import_rsa_key(services.pin_reset.card_key_label, issuer)
            lots = 10 ** 9
            services.pin_reset.limits = Limits(passwords_per_card=lots, passwords_per_app=lots,
                                               refusals_per_app=lots, refusals_per_kiosk=lots,
                                               refusals_per_card=lots)
            create = authorize(OPERATOR, Operation.CLIENT_CREATE)
            station = services.clients.create(create, name="bench counter",
                                              role=ClientRole.STATION)
            kiosk = services.clients.create(create, name="bench kiosk", role=ClientRole.KIOSK,
                                            scopes=["chain:bench"])
            app_key = ec.generate_private_key(ec.SECP256R1())
            app = services.pin_reset.register_app(
                create, services.clients, name="bench app",
                public_key=app_key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
            with served_in_thread(services, port) as base_url:
                yield Parties(services, base_url,
                              (station.client.client_id, station.client_secret),
                              (kiosk.client.client_id, kiosk.client_secret),
                              (app.client.client_id, app.client_secret), app_key)
        finally:
            services.uow.engine.dispose()
            services.read_engine.dispose()


def _enrol(parties: Parties, card: JpkiCard, issuer: rsa.RSAPrivateKey) -> str:
    """Enrol the card and issue its 券面 applications; its 照合番号B."""
    from datetime import date

    from bench.common import OPERATOR, resident_fields
    from devices.card.face_client import issue_face_aps
    from devices.card.face_data import CardSurface, synthetic_my_number, synthetic_security_code
    from devices.station.ca_client import CaClient
    from devices.station.workflow import EnrolmentStation
    from jpki.access.authz import Operation, authorize

    resident = parties.services.residents.register(
        authorize(OPERATOR, Operation.RESIDENT_REGISTER), **resident_fields(0)).id
    with CaClient(parties.url, *parties.station) as ca:
        EnrolmentStation(ca, card, issuer).enroll(resident, proofing=IN_PERSON_B,
                                                  auth_pin="1234", sign_pin="BENCH1")
    surface = CardSurface(name="ベンチ　太郎", address="東京都清瀬市", birth_date=date(1990, 1, 2),
                          sex=1, expiry=date(2035, 1, 2), my_number=synthetic_my_number(),
                          security_code=synthetic_security_code(), municipality_code="13221")
    issue_face_aps(card, issuer, surface, pin="2580")
    return surface.code_b


def run(resets: int, seconds: float, port: int, database: str) -> dict[str, object]:
    from bench.common import load_average, machine_info
    from devices.card import virtual_reader
    from devices.card.pcsc import PcscTransport
    from devices.holder_app.app import HolderApp
    from devices.kiosk.workflow import Kiosk
    from devices.reset_ca import ResetCa

    directory = Path(tempfile.mkdtemp(prefix="jpki-bench-kiosk-"))
    reader = virtual_reader.VPCD_PORTS[port]
    issuer = rsa.generate_private_key(65537, 2048)
    public = directory / "issuer.pub.pem"
    public.write_bytes(issuer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    load_start = load_average()
    runs: list[tuple[float, list[tuple[str, float]], int]] = []
    try:
        with virtual_reader.pcscd_running(), \
                temporary_ca(directory, database, issuer) as parties, \
                virtual_reader.emulator_running(directory / "card.json", issuer_public_key=public,
                                                port=port, log=directory / "emulator.log"), \
                PcscTransport.open(reader, exclusive=True) as transport:
            counting = Counting(transport)
            card = JpkiCard(counting)
            code_b = _enrol(parties, card, issuer)
            floor = round_trips(BenchCard(card, "pcsc"), seconds)[1]  # empty VERIFY
            with ResetCa(parties.url, *parties.app) as app_ca, \
                    ResetCa(parties.url, *parties.kiosk) as kiosk_ca:
                app = HolderApp(app_ca, parties.app[0], parties.app_key)
                photo = app.read_card_photo(card, code_b)
                kiosk = Kiosk(kiosk_ca, card)
                for index in range(resets + 1):  # the first is the warm-up
                    started = time.perf_counter()
                    online = app.obtain_online_password(card, auth_pin="1234", code_b=code_b,
                                                        camera_photo=photo)
                    app_seconds = time.perf_counter() - started
                    before = counting.count
                    result = kiosk.reset_signing_password(
                        auth_pin="1234", online_password=online.value,
                        new_password=f"BENCH{index % 10}X{index}")
                    if index > 0:
                        runs.append((app_seconds, result.steps, counting.count - before))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    kiosk_totals = [sum(t for _, t in steps) for _, steps, _ in runs]
    app_totals = [a for a, _, _ in runs]
    apdus = Counter(n for _, _, n in runs).most_common(1)[0][0]
    step_names = [name for name, _ in runs[0][1]]
    steps = [{"step": name,
              "median_ms": statistics.median(dict(s)[name] for _, s, _ in runs) * 1000,
              "min_ms": min(dict(s)[name] for _, s, _ in runs) * 1000,
              "max_ms": max(dict(s)[name] for _, s, _ in runs) * 1000}
             for name in step_names]
    median_reset = statistics.median(kiosk_totals)
    floor_ms = apdus * floor.p50_us / 1000
    return {
        "machine": {**machine_info(Path(tempfile.gettempdir())),
                    "load_average_at_start": load_start, "load_average_at_end": load_average()},
        "database": database, "reader": reader, "resets": len(runs),
        "apdu_floor": {"operation": floor.operation, "apdus_per_second": floor.apdus_per_second,
                       "p50_us": floor.p50_us, "p99_us": floor.p99_us},
        "kiosk_resets_per_second": len(runs) / sum(kiosk_totals),
        "resets_per_second_with_app": len(runs) / (sum(kiosk_totals) + sum(app_totals)),
        "median_reset_ms": median_reset * 1000,
        "median_app_ms": statistics.median(app_totals) * 1000,
        "apdus_per_reset": apdus,
        "apdu_floor_ms_per_reset": floor_ms,
        "ratio_reset_to_apdu_floor": median_reset * 1000 / floor_ms,
        "steps": steps,
    }


def _print(report: dict[str, Any]) -> None:
    machine = report["machine"]
    print(f"{machine.get('cpus')} CPUs; load {machine['load_average_at_start']} → "
          f"{machine['load_average_at_end']}; CA database {report['database']}; "
          f"reader {report['reader']!r}; {report['resets']} resets after one warm-up")
    floor = report["apdu_floor"]
    print(f"APDU floor ({floor['operation']} over PC/SC): {floor['apdus_per_second']:,.0f}/s, "
          f"p50 {floor['p50_us']:.0f} µs, p99 {floor['p99_us']:.0f} µs")
    print(f"kiosk resets/s: {report['kiosk_resets_per_second']:.2f} "
          f"(median {report['median_reset_ms']:.1f} ms); with the app's online password: "
          f"{report['resets_per_second_with_app']:.2f}/s (app median "
          f"{report['median_app_ms']:.1f} ms)")
    print(f"APDUs per reset: {report['apdus_per_reset']}; at the floor's p50 "
          f"{report['apdu_floor_ms_per_reset']:.1f} ms; ratio reset ÷ floor: "
          f"{report['ratio_reset_to_apdu_floor']:.1f}")
    print(f"{'kiosk step':<18} {'median ms':>10} {'min':>8} {'max':>8}")
    for s in report["steps"]:
        print(f"{s['step']:<18} {s['median_ms']:>10.2f} {s['min_ms']:>8.2f} {s['max_ms']:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resets", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--port", type=int, default=35964, choices=(35963, 35964))
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.resets, args.seconds, args.port, args.database)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
