"""Relying-party API throughput over loopback HTTP, against a bare authenticated endpoint of the
same app, and that against a bare unauthenticated one, measured in the same run.

    .venv/bin/python -m bench.relying_party [--database sqlite|postgres|both] [--seconds 10]
                                            [--connections 8] [--repeat 3] [--batch 100] [--json]

For each database, on a fresh one (a SQLite file in a private data directory, or a database
created on the local PostgreSQL server and dropped afterwards):

1. Setup, not measured: ``jpki init`` (SoftHSM token, key ceremony, schema); in this process, on
   the same data directory: ``--batch`` card certificates for ``--batch``/2 residents (one in ten
   revoked), and one holder whose card keys this process holds; a relying party registered as
   ``jpki rp add`` does (scopes status and basic4, a client secret).
2. The bench's own server (``python -m bench.relying_party --serve PORT``): the app ``jpki serve``
   serves (``create_app``, 1 worker, uvicorn started with ``jpki serve``'s options) plus one
   route of the bench's, ``GET /v1/rp/bench-unauthenticated`` — never part of the product.
   Loopback, with the relying-party rate limit raised out of the way
   (``JPKI_RP_RATE_PER_SECOND``/``_BURST``): the limiter is still on the path, it just never
   refuses. The holder's consent (a CMS SignedData over the consent statement, signed with the
   card key) is submitted once over HTTP; then every endpoint is called once and its answer
   checked (100 statuses as loaded; the consented items and the current signing serial;
   ``{"ok": true}``).
3. Load, measured: ``wrk`` (``-t2 -c8`` by default, ``--seconds`` each) with a Lua script that sends
   one fixed request (with HTTP Basic credentials but for unauth):
   - **status**: POST /v1/status with the ``--batch`` serials;
   - **basic4**: POST /v1/basic4 under the standing consent (``consent_id``): reads the consent,
     the resident record and the certificate line, and audits the disclosure, in the group
     commit's transaction;
   - **bare**: GET /v1/rp/ping — authentication (the credentials and the relying party's
     standing as the process keeps them, the remembered verification of the secret:
     jpki/access/kept_clients.py), admission (token bucket) and a fixed JSON answer: the same app,
     the
     same credentials check, nothing else. It is the baseline of status and basic4;
   - **unauth**: GET /v1/rp/bench-unauthenticated, no credentials — the same kind of route as
     /v1/rp/ping (an async handler, the same response model and answer) in the same app,
     without authentication and admission. It is the baseline of bare.
   The four are interleaved, ``--repeat`` times; medians are reported. Every wrk run must have
   no socket errors and no non-2xx answer.
4. The latency of a durable commit on the database, measured before and after the load (200
   one-row transactions: SQLite in WAL with ``synchronous=FULL`` on the data directory's file
   system, as the service runs it; PostgreSQL on its server): status and basic4 answer only once
   their audit record has committed, and with ``--connections`` calls at a time a group commit
   holds at most that many records, so this latency bounds their rate on a busy disk.

Targets (docs/performance.md, relying parties): status and basic4 each ≥ 0.5 of the bare
endpoint's rate, and bare ≥ 0.5 of unauth's (what authenticating a call costs).
Results go to docs/performance.md; no test asserts a timing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from api.in_process import free_port
from bench.common import (
    BenchError,
    fresh_database,
    load_average,
    machine_info,
    postgres_server_version,
    resident_fields,
    run_cli,
)

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.5
PURPOSE = "account_opening"
ENDPOINTS = ("unauth", "bare", "status", "basic4")
BASELINE = {"status": "bare", "basic4": "bare", "bare": "unauth"}  # what each is a ratio of
UNAUTHENTICATED = "/v1/rp/bench-unauthenticated"  # under /v1/rp/: the same middleware as ping


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# --- processes ----------------------------------------------------------------------------


def bench_env(data_dir: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JPKI_") and k != "SOFTHSM2_CONF"}
    env.update({"JPKI_DATA_DIR": str(data_dir), "JPKI_DATABASE_URL": url,
                "JPKI_RP_RATE_PER_SECOND": "1000000", "JPKI_RP_RATE_BURST": "1000000",
                "PYTHONPATH": str(REPO)})
    return env


def serve_child(port: int) -> None:
    """``--serve PORT``: the app `jpki serve` serves, started the way it starts it (1 worker,
    access log off, its JSON log and HTTP limits: api.cli.serve.uvicorn_options), plus the bench's
    unauthenticated baseline route."""
    import logging.config

    import uvicorn

    from api.app import create_app
    from api.cli.serve import uvicorn_options
    from api.logs import log_config
    from api.schemas import PingOut
    from jpki.settings import Settings

    settings, _ = Settings().for_server("127.0.0.1", port)
    log_settings = log_config()
    logging.config.dictConfig(log_settings)
    app = create_app(settings)

    @app.get(UNAUTHENTICATED, response_model=PingOut, include_in_schema=False)
    async def unauthenticated() -> PingOut:
        """/v1/rp/ping without authentication and admission: an async handler, the same
        response model and answer."""
        return PingOut(ok=True)

    uvicorn.run(app, **uvicorn_options(settings, "127.0.0.1", port, False, log_settings))


@contextlib.contextmanager
def jpki_serve(env: dict[str, str], port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench.relying_party", "--serve",
                                 str(port)], env=env,
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise BenchError(f"jpki serve exited with {proc.returncode}: "
                                 f"{log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("jpki serve did not start") from None
                time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def server_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


# --- setup ----------------------------------------------------------------------------------


@dataclass
class Fixture:
    client_id: str
    secret: str
    serials: list[str]  # the status batch
    revoked: set[str]
    consent: bytes  # the holder's signed consent (CMS SignedData, DER)
    holder_serial: str


def setup(data_dir: Path, url: str, batch: int) -> Fixture:
    """Residents, certificates, a holder and a relying party, written through the services on
    the data directory `jpki init` made (this process opens its token like `jpki serve`)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from api.composition import build_services
    from bench.common import subject_keys
    from jpki.access.authz import Operation, authorize
    from jpki.access.principals import Principal
    from jpki.issuance.service import KeyRequest
    from jpki.model import CertKind, RevocationReason
    from jpki.protocol.consent import ConsentStatement
    from jpki.settings import Settings

    operator = Principal.local_operator("bench")
    register = authorize(operator, Operation.RESIDENT_REGISTER)
    issue = authorize(operator, Operation.CERTIFICATE_ISSUE)
    services = build_services(Settings(data_dir=data_dir, database_url=url))
    try:
        keys = subject_keys(batch + (batch % 2), log=log)
        serials: list[str] = []
        revoked: set[str] = set()
        for i in range(0, len(keys), 2):
            rid = services.residents.register(register, **resident_fields(i)).id
            issued = services.issuance.issue(issue, rid, [
                KeyRequest(CertKind.CARD_AUTH, keys[i]), KeyRequest(CertKind.CARD_SIGN,
                                                                    keys[i + 1])])
            serials += [c.serial for c in issued]
        for serial in serials[::10]:
            services.revocation.revoke(authorize(operator, Operation.CERTIFICATE_REVOKE), serial,
                                       RevocationReason.KEY_COMPROMISE)
            revoked.add(serial)
        card = {k: rsa.generate_private_key(65537, 2048) for k in (CertKind.CARD_AUTH,
                                                                   CertKind.CARD_SIGN)}
        holder = services.residents.register(register, **resident_fields(len(keys) + 1)).id
        issued = {c.kind: c for c in services.issuance.issue(
            issue, holder, [KeyRequest(k, v.public_key().public_bytes(
                Encoding.DER, PublicFormat.SubjectPublicKeyInfo)) for k, v in card.items()])}
        new = services.relying_parties.register(
            authorize(operator, Operation.RP_REGISTER), name="Bench RP",
            kind="platform_operator", purposes=[PURPOSE], scopes=["status", "basic4"])
        now = services.clock.now()
        statement = ConsentStatement(relying_party=new.relying_party.id,
                                     items=("name", "address"), purpose=PURPOSE,
                                     nonce=secrets.token_urlsafe(24),
                                     expires_at=now + timedelta(days=30))
        consent = card_signed(statement.to_json(), issued[CertKind.CARD_SIGN].der,
                              card[CertKind.CARD_SIGN], now)
        return Fixture(client_id=new.client_id, secret=new.client_secret,
                       serials=serials[:batch], revoked=revoked, consent=consent,
                       holder_serial=issued[CertKind.CARD_SIGN].serial)
    finally:
        services.close()


def card_signed(content: bytes, signer_der: bytes, key: Any, at: Any) -> bytes:
    """A CMS SignedData as the card makes it: COMPUTE DIGITAL SIGNATURE over a DigestInfo."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from jpki.protocol.cms import build_signed_data

    return build_signed_data(content, signer_der, lambda info: key.sign(
        info[-32:], padding.PKCS1v15(), Prehashed(hashes.SHA256())), at)


# --- HTTP -----------------------------------------------------------------------------------


def basic(fixture: Fixture) -> str:
    token = f"{fixture.client_id}:{fixture.secret}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


def call(port: int, method: str, path: str, auth: str | None, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise BenchError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from exc


LUA = r"""-- Written by bench/relying_party.py: one fixed request.
wrk.resolve = function(host, service)
   wrk.addrs = wrk.lookup(host, service)
end
wrk.method = "@METHOD@"
wrk.path = "@PATH@"
@AUTH@
wrk.headers["Content-Type"] = "application/json"
@BODY@
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests": %.0f, "duration_us": %.0f, "connect": %.0f, "read": %.0f, ' ..
      '"write": %.0f, "status": %.0f, "timeout": %.0f, "p50_us": %.0f, "p99_us": %.0f}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
"""


def lua_script(path: Path, method: str, url_path: str, auth: str | None, body: Any) -> Path:
    text = (LUA.replace("@METHOD@", method).replace("@PATH@", url_path)
            .replace("@AUTH@", "" if auth is None else
                     f'wrk.headers["Authorization"] = "{auth}"')
            .replace("@BODY@", "" if body is None else
                     f"wrk.body = [==[{json.dumps(body, separators=(',', ':'))}]==]"))
    path.write_text(text)
    return path


def run_wrk(lua: Path, port: int, connections: int, seconds: float,
            server_pid: int) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    hz = os.sysconf("SC_CLK_TCK")
    ticks0 = server_ticks(server_pid)
    began = time.perf_counter()
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
                          "--timeout", "10s", "--latency", "-s", str(lua),
                          f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=False, timeout=seconds + 120)
    elapsed = time.perf_counter() - began
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip()[-1000:]}")
    result: dict[str, float] = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    if errors:
        raise BenchError(f"wrk saw {errors:.0f} errors or non-2xx answers: {result}")
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    result["server_cores"] = (server_ticks(server_pid) - ticks0) / hz / elapsed
    return result


# --- one database -------------------------------------------------------------------------


@dataclass
class Endpoint:
    name: str
    rate: float  # requests/s, median of the repeats
    p50_ms: float
    p99_ms: float
    server_cores: float
    runs: list[float] = field(default_factory=list)


@dataclass
class DatabaseResult:
    database: str
    endpoints: dict[str, Endpoint]
    ratios: dict[str, float]
    audit_records_per_s: float
    setup_seconds: float
    commit_ms: dict[str, float] = field(default_factory=dict)  # p50/p90, before and after


def commit_latency(kind: str, url: str, data_dir: Path, count: int = 200) -> tuple[float, float]:
    """(p50, p90) in ms of a one-row durable commit, as the service commits (step 4)."""
    import sqlite3

    from sqlalchemy import create_engine, text

    times: list[float] = []
    if kind == "sqlite":
        path = data_dir / "commit-probe.sqlite"
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
            for i in range(count):
                began = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO probe VALUES (?)", (i,))
                db.execute("COMMIT")
                times.append(time.perf_counter() - began)
        finally:
            db.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        from jpki.store.engine import normalise_url

        engine = create_engine(normalise_url(url))
        try:
            with engine.connect() as conn:
                conn.execute(text("CREATE TEMPORARY TABLE probe (x INTEGER)"))
                conn.commit()
                for i in range(count):
                    began = time.perf_counter()
                    conn.execute(text("INSERT INTO probe VALUES (:x)"), {"x": i})
                    conn.commit()
                    times.append(time.perf_counter() - began)
        finally:
            engine.dispose()
    times.sort()
    return (round(times[len(times) // 2] * 1000, 2), round(times[len(times) * 9 // 10] * 1000, 2))


def measure(kind: str, root: Path, args: argparse.Namespace) -> DatabaseResult:
    data_dir = root / kind
    with fresh_database(kind, root, f"rp-{kind}") as url:
        env = bench_env(data_dir, url)
        began = time.perf_counter()
        log(f"[{kind}] jpki init ...")
        run_cli(["init", "--data-dir", str(data_dir)], env)
        log(f"[{kind}] setup: {args.batch} certificates, a holder, a relying party ...")
        fixture = setup(data_dir, url, args.batch)
        setup_seconds = time.perf_counter() - began
        port = free_port()
        auth = basic(fixture)
        with jpki_serve(env, port, root / f"serve-{kind}.log") as server:
            first = call(port, "POST", "/v1/basic4", auth, {
                "purpose": PURPOSE, "consent": base64.b64encode(fixture.consent).decode()})
            assert first["current_signing_serial"] == fixture.holder_serial, first
            assert set(first["items"]) == {"name", "address"}, sorted(first["items"])
            status_body = {"purpose": PURPOSE, "serials": fixture.serials}
            basic4_body = {"purpose": PURPOSE, "consent_id": first["consent_id"]}
            answer = call(port, "POST", "/v1/status", auth, status_body)["results"]
            assert [r["serial"] for r in answer] == fixture.serials
            assert all((r["status"] == "revoked") == (r["serial"] in fixture.revoked)
                       for r in answer)
            assert call(port, "POST", "/v1/basic4", auth, basic4_body)["consent_id"] == \
                first["consent_id"]
            assert call(port, "GET", "/v1/rp/ping", auth) == {"ok": True}
            assert call(port, "GET", UNAUTHENTICATED, None) == {"ok": True}
            scripts = {
                "unauth": lua_script(root / "unauth.lua", "GET", UNAUTHENTICATED, None, None),
                "bare": lua_script(root / "bare.lua", "GET", "/v1/rp/ping", auth, None),
                "status": lua_script(root / "status.lua", "POST", "/v1/status", auth,
                                     status_body),
                "basic4": lua_script(root / "basic4.lua", "POST", "/v1/basic4", auth,
                                     basic4_body),
            }
            for lua in scripts.values():  # warm-up, not measured
                run_wrk(lua, port, args.connections, 1.0, server.pid)
            commit_ms = dict(zip(("before_p50", "before_p90"),
                                 commit_latency(kind, url, data_dir), strict=True))
            runs: dict[str, list[dict[str, float]]] = {n: [] for n in ENDPOINTS}
            audited = 0.0
            for repeat in range(args.repeat):
                for name in ENDPOINTS:
                    result = run_wrk(scripts[name], port, args.connections, args.seconds,
                                     server.pid)
                    runs[name].append(result)
                    if name in ("status", "basic4"):
                        audited += result["requests"]
                    log(f"[{kind}] run {repeat + 1}/{args.repeat} {name:6s} "
                        f"{result['rate']:8.0f}/s  p50 {result['p50_us'] / 1000:.1f} ms  "
                        f"p99 {result['p99_us'] / 1000:.1f} ms  server "
                        f"{result['server_cores']:.2f} cores  load {load_average()}")
            commit_ms.update(zip(("after_p50", "after_p90"),
                                 commit_latency(kind, url, data_dir), strict=True))
            log(f"[{kind}] durable commit p50/p90 ms: before {commit_ms['before_p50']}/"
                f"{commit_ms['before_p90']}, after {commit_ms['after_p50']}/"
                f"{commit_ms['after_p90']}")
        endpoints = {
            name: Endpoint(name=name, rate=statistics.median(r["rate"] for r in rs),
                           p50_ms=statistics.median(r["p50_us"] for r in rs) / 1000,
                           p99_ms=statistics.median(r["p99_us"] for r in rs) / 1000,
                           server_cores=statistics.median(r["server_cores"] for r in rs),
                           runs=[round(r["rate"], 1) for r in rs])
            for name, rs in runs.items()}
        measured_seconds = args.seconds * args.repeat * 2
        return DatabaseResult(
            database=kind, endpoints=endpoints,
            ratios={n: endpoints[n].rate / endpoints[b].rate for n, b in BASELINE.items()},
            audit_records_per_s=audited / measured_seconds, setup_seconds=setup_seconds,
            commit_ms=commit_ms)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve_child(int(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="serials per status call")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 1000:
        parser.error("--batch is 1 to 1000")
    if subprocess.run(["which", "wrk"], capture_output=True, check=False).returncode != 0:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    root = Path(tempfile.mkdtemp(prefix="jpki-bench-rp-")).resolve()
    info = machine_info(root)
    info["postgresql"] = postgres_server_version() if "postgres" in kinds else None
    results = []
    try:
        for kind in kinds:
            results.append(measure(kind, root, args))
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    info["load_average_at_end"] = load_average()
    if args.json:
        print(json.dumps({"machine": info, "options": vars(args),
                          "results": [asdict(r) for r in results]}, indent=2))
        return 0
    print(f"relying-party API, {args.connections} connections, {args.seconds:g} s x "
          f"{args.repeat} (medians); status batch {args.batch}; load "
          f"{info['load_average_at_start']} → {info['load_average_at_end']}")
    print(f"{'database':10s} {'endpoint':8s} {'req/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s} "
          f"{'server cores':>12s}  ratio (target ≥ {TARGET})")
    for r in results:
        for name in ENDPOINTS:
            e = r.endpoints[name]
            ratio = "" if name not in BASELINE else \
                f"{r.ratios[name]:.2f} of {BASELINE[name]} " \
                f"{'met' if r.ratios[name] >= TARGET else 'MISSED'}"
            print(f"{r.database:10s} {name:8s} {e.rate:9.0f} {e.p50_ms:7.1f} {e.p99_ms:7.1f} "
                  f"{e.server_cores:12.2f}  {ratio}")
        c = r.commit_ms
        print(f"{r.database:10s} durable commit p50/p90 ms: before {c['before_p50']}/"
              f"{c['before_p90']}, after {c['after_p50']}/{c['after_p90']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
