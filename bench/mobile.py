"""Smartphone certificates: applications per second end to end, and a cascade at scale.

    .venv/bin/python -m bench.mobile [--applications N] [--cascade 100000]
                                     [--database sqlite|postgres|both] [--json]

1. **Applications.** N holders with card certificates are prepared (not measured): card keys
   are made in Python (a card would make them on-chip) and kept with their PEM so the bench can
   sign as the card. Measured: for each holder, the whole application — a challenge from the
   service, the CMS SignedData made with the card key (as the card would), both proofs of
   possession, verification, two issuances through the HSM. In the same run, the raw SoftHSM
   RSA-2048 signing rate (one stream, as the service signs). Printed: applications/s,
   certificates/s, raw signatures/s, and certificates/s ÷ raw signatures/s.
2. **Cascade.** C card signing certificates each with a linked mobile signing certificate are
   inserted directly (their bytes do not matter to revocation), then all C card certificates are
   revoked through the revocation rules in transactions of 1,000 — each revocation cascading to
   its mobile certificate in the same transaction and audited. Printed: the time, and checks
   that the database holds C revoked mobile certificates and that the OCSP responder answers
   "revoked" for every one of the 2C certificates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, insert, select

from bench.common import (
    OPERATOR,
    BenchError,
    bench_hsm,
    fresh_database,
    load_average,
    machine_info,
    open_services,
    register_residents,
)
from hsm.bench import raw_sign_rate
from jpki.access.authz import Operation, authorize
from jpki.issuance.service import KeyRequest
from jpki.lifecycle.revocation import revoke_in
from jpki.model import CaKind, CertKind, RevocationReason
from jpki.protocol.cms import build_signed_data
from jpki.protocol.mobile import MobileApplication, MobileKind, Platform, pop_message
from jpki.revocation.ocsp import MAX_CERTS_PER_REQUEST
from jpki.store.tables import certificates

TARGET_NOTE = "reported (no target in the issue); compare with bench.issuance"


def _keys(count: int) -> list[bytes]:
    return [rsa.generate_private_key(65537, 2048).private_bytes(
        Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        for _ in range(count)]


def private_keys(count: int) -> list[rsa.RSAPrivateKey]:
    workers = max(1, os.cpu_count() or 1)
    chunks = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pems = [p for batch in pool.map(_keys, [c for c in chunks if c]) for p in batch]
    out = []
    for pem in pems:
        key = serialization.load_pem_private_key(pem, None)
        assert isinstance(key, rsa.RSAPrivateKey)
        out.append(key)
    return out


def _spki(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _sign_digest_info(key: rsa.RSAPrivateKey) -> Any:
    return lambda di: key.sign(di[-32:], padding.PKCS1v15(), Prehashed(hashes.SHA256()))


def applications(hsm: Any, database: str, count: int, log: Any) -> dict[str, Any]:
    log(f"{database}: preparing {count} holders with cards (not measured)")
    keys = private_keys(4 * count)
    with fresh_database(database, hsm.data_dir, "mobile") as url:
        services = open_services(hsm, url)
        try:
            residents = register_residents(services, count)
            holders = []
            for i, rid in enumerate(residents):
                card_auth, card_sign = keys[4 * i], keys[4 * i + 1]
                issued = {c.kind: c for c in services.issuance.issue(
                    authorize(OPERATOR, Operation.CERTIFICATE_ISSUE), rid, [
                        KeyRequest(CertKind.CARD_AUTH, _spki(card_auth)),
                        KeyRequest(CertKind.CARD_SIGN, _spki(card_sign))])}
                holders.append((issued[CertKind.CARD_SIGN], card_sign, keys[4 * i + 2],
                                keys[4 * i + 3], f"device-{i}"))
            label = hsm.recipe.ca(CaKind.SIGN).key_label(1)
            raw_before = raw_sign_rate(hsm.keys, label, seconds=2.0, threads=1)
            log(f"{database}: {count} applications")
            began = time.perf_counter()
            for card_cert, card_key, sign_key, auth_key, device in holders:
                challenge, _ = services.mobile.new_challenge("application")
                sign_pop, auth_pop = (key.sign(pop_message(challenge, device, kind),
                                               padding.PKCS1v15(), hashes.SHA256())
                                      for kind, key in ((MobileKind.SIGN, sign_key),
                                                        (MobileKind.AUTH, auth_key)))
                doc = MobileApplication(
                    challenge=challenge, device=device, platform=Platform.ANDROID,
                    card_sign_serial=card_cert.serial, sign_public_key=_spki(sign_key),
                    auth_public_key=_spki(auth_key), sign_pop=sign_pop, auth_pop=auth_pop)
                signed = build_signed_data(doc.to_json(), card_cert.der,
                                           _sign_digest_info(card_key),
                                           datetime.now(UTC).replace(microsecond=0))
                services.mobile.apply(signed)
            seconds = time.perf_counter() - began
            raw_after = raw_sign_rate(hsm.keys, label, seconds=2.0, threads=1)
        finally:
            services.uow.engine.dispose()
            services.read_engine.dispose()
    raw = (raw_before + raw_after) / 2
    per_s = count / seconds
    return {"database": database, "applications": count, "seconds": round(seconds, 3),
            "applications_per_s": round(per_s, 1), "certificates_per_s": round(2 * per_s, 1),
            "raw_signatures_per_s": round(raw, 0),
            "ratio": round(2 * per_s / raw, 3), "note": TARGET_NOTE}


def cascade(hsm: Any, database: str, count: int, log: Any) -> dict[str, Any]:
    with fresh_database(database, hsm.data_dir, "cascade") as url:
        services = open_services(hsm, url)
        try:
            (rid,) = register_residents(services, 1)
            with services.uow() as uow:
                gen = uow.cas.current(CaKind.SIGN)
                assert gen is not None
            now = datetime.now(UTC).replace(microsecond=0)
            base = dict(resident_id=rid, ca_generation_id=gen.id, status="issued",
                        not_before=now, not_after=now + timedelta(days=1000), shard="132217",
                        registry_source="juminhyo", created_at=now, updated_at=now)
            log(f"{database}: inserting {count} card + {count} linked mobile certificates")
            card_ids: list[int] = []
            with services.uow.engine.begin() as conn:
                for start in range(0, count, 10_000):
                    n = min(10_000, count - start)
                    rows = [dict(base, serial=format((1 << 100) + start + i, "x"),
                                 kind="card_sign", public_key_sha256=f"c{start + i:063x}")
                            for i in range(n)]
                    conn.execute(insert(certificates), rows)
                first = conn.execute(select(func.min(certificates.c.id))).scalar_one()
                card_ids = list(range(first, first + count))
                for start in range(0, count, 10_000):
                    n = min(10_000, count - start)
                    rows = [dict(base, serial=format((1 << 110) + start + i, "x"),
                                 kind="mobile_sign", public_key_sha256=f"m{start + i:063x}",
                                 linked_id=card_ids[start + i]) for i in range(n)]
                    conn.execute(insert(certificates), rows)
            serials = [format((1 << 100) + i, "x") for i in range(count)]
            log(f"{database}: revoking {count} card certificates (cascading)")
            began = time.perf_counter()
            for start in range(0, count, 1000):
                with services.uow() as uow:
                    at = services.clock.now()
                    for serial in serials[start:start + 1000]:
                        cert = uow.certificates.get_by_serial(serial, for_update=True)
                        assert cert is not None
                        revoke_in(uow, services.audit, OPERATOR, cert,
                                  RevocationReason.CESSATION_OF_OPERATION, at, at,
                                  cause="bench")
                    uow.commit()
            seconds = time.perf_counter() - began
            with services.uow.engine.connect() as conn:
                revoked_mobile = conn.execute(select(func.count()).select_from(certificates).where(
                    certificates.c.kind == "mobile_sign",
                    certificates.c.revoked_at.is_not(None))).scalar_one()
            log(f"{database}: asking the OCSP responder about all {2 * count} certificates")
            issuer = x509.load_der_x509_certificate(gen.certificate_der)
            every = [(1 << 100) + i for i in range(count)] + [(1 << 110) + i for i in range(count)]
            began = time.perf_counter()
            ocsp_revoked = ocsp_revoked_count(services, issuer, every)
            ocsp_seconds = time.perf_counter() - began
        finally:
            services.uow.engine.dispose()
            services.read_engine.dispose()
    if revoked_mobile != count or ocsp_revoked != 2 * count:
        raise BenchError(f"cascade incomplete: {revoked_mobile} mobile revoked, OCSP "
                         f"{ocsp_revoked}/{2 * count}")
    return {"database": database, "card_certificates": count, "seconds": round(seconds, 2),
            "revocations_per_s": round(2 * count / seconds, 0),
            "mobile_revoked_in_database": revoked_mobile,
            "ocsp_revoked": f"{ocsp_revoked}/{2 * count}",
            "ocsp_check_seconds": round(ocsp_seconds, 1)}


OCSP_BATCH = MAX_CERTS_PER_REQUEST  # the most the responder answers in one request


def ocsp_revoked_count(services: Any, issuer: x509.Certificate, serials: list[int]) -> int:
    """Ask the responder (in process, the code behind /ocsp) about every serial, in requests of
    several certificate IDs each (RFC 6960 §4.1.1 allows a list; cryptography's builder makes
    only one, so asn1crypto builds them), and count the "revoked" answers for those serials."""
    from asn1crypto import ocsp as a_ocsp

    # SHA-1 CertIDs are what RFC 5019 clients send.
    name_hash = hashes.Hash(hashes.SHA1())  # noqa: S303
    name_hash.update(issuer.subject.public_bytes())
    issuer_name_hash = name_hash.finalize()
    issuer_key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    revoked = 0
    for start in range(0, len(serials), OCSP_BATCH):
        batch = serials[start:start + OCSP_BATCH]
        request = a_ocsp.OCSPRequest({"tbs_request": {"request_list": [
            {"req_cert": {"hash_algorithm": {"algorithm": "sha1"},
                          "issuer_name_hash": issuer_name_hash,
                          "issuer_key_hash": issuer_key_hash, "serial_number": serial}}
            for serial in batch]}})
        response = a_ocsp.OCSPResponse.load(services.ocsp.respond(request.dump()).der)
        if response["response_status"].native != "successful":
            raise BenchError(f"OCSP answered {response['response_status'].native}")
        asked = set(batch)
        for single in response.basic_ocsp_response["tbs_response_data"]["responses"]:
            serial = single["cert_id"]["serial_number"].native
            if serial in asked and single["cert_status"].name == "revoked":
                revoked += 1
                asked.discard(serial)
    return revoked


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mobile", description=__doc__)
    p.add_argument("--applications", type=int, default=100)
    p.add_argument("--cascade", type=int, default=100_000)
    p.add_argument("--database", choices=("sqlite", "postgres", "both"), default="sqlite")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    report: dict[str, Any] = {"command": " ".join(["python -m bench.mobile", *(argv or
                                                                               sys.argv[1:])]),
                              "date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "applications": [], "cascade": []}
    try:
        with bench_hsm() as hsm:
            report["machine"] = machine_info(hsm.data_dir)
            for database in databases:
                if args.applications:
                    report["applications"].append(applications(hsm, database,
                                                               args.applications, log))
                if args.cascade:
                    report["cascade"].append(cascade(hsm, database, args.cascade, log))
            report["machine"]["load_average_at_end"] = load_average()
    except BenchError as exc:
        print(f"bench.mobile: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for row in report["applications"]:
            print(f"applications [{row['database']}]: {row['applications_per_s']}/s "
                  f"({row['certificates_per_s']} certificates/s) vs raw "
                  f"{row['raw_signatures_per_s']} signatures/s → ratio {row['ratio']}")
        for row in report["cascade"]:
            print(f"cascade [{row['database']}]: {row['card_certificates']} card + mobile in "
                  f"{row['seconds']} s ({row['revocations_per_s']} revocations/s); mobile "
                  f"revoked {row['mobile_revoked_in_database']}; OCSP says revoked for "
                  f"{row['ocsp_revoked']} (checked in {row['ocsp_check_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
