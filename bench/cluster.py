"""The test cluster under load: one jpki node against two behind HAProxy, durable commits with
and without the synchronous standby, and OCSP behind the nginx edge against static files.

    sudo .venv/bin/python -m bench.cluster [--seconds 10] [--connections 8] [--pairs 150]
                                           [--keep] [--json] [--save FILE]

Needs root and the cluster's packages (scripts/cluster installs them) and ``wrk``. It builds a
cluster of its own (prefix ``jpb``, network 10.233.0.0/24; docs/deployment.md) and removes it
afterwards (``--keep`` leaves it up). Setup, not measured: ``--pairs`` card certificate pairs
issued through HAProxy; the nodes run with the OCSP validity cut to 2 minutes (a recipe copy,
``JPKI_NODE_RECIPE``) so that the edge's freshness can be watched run out, and with the relying
parties' rate limit lifted (``JPKI_NODE_RP_RATE_*``) so that it does not cap the status calls.

Measured, each for ``--seconds``, clients on the HAProxy host:

1. **One node and two** — issuance (resident, proofing, one authentication certificate: three
   calls, 8 client threads, keys made beforehand), OCSP (RFC 5019 GET over the issued
   certificates, ``wrk``) and ``POST /v1/status`` (one serial a call, ``wrk``): straight at
   jpki1 ("single node"), through HAProxy with jpki2 set to maintenance ("HAProxy, 1 node"), and
   through HAProxy to both ("HAProxy, 2 nodes"). Every member of the cluster shares the
   machine's CPUs: two nodes on one machine are not two machines' worth.
2. **Durable commits** — ``pgbench`` through HAProxy's primary port, one-row INSERT
   transactions, 8 clients: ``synchronous_commit=on`` (the cluster's setting: the commit waits for
   the synchronous standby) against ``local`` (it does not), interleaved.
3. **The edge** — every certificate's GET fetched once through nginx (so that its cache holds
   them), then ``wrk`` at the edge (cache hits) against a second nginx in the same namespace
   serving the same bytes as static files (the same paths, ``merge_slashes off``), interleaved.
   Target: the edge ≥ 0.7 of static.
4. **Freshness through the edge** — a certificate whose answer the edge holds is revoked; the
   origin (HAProxy) is asked every 50 ms until it answers revoked (the change feed's second),
   and the edge every 0.5 s until it does. The edge's delay must be within what its cached
   answer promised (its ``Expires``, = nextUpdate, from the revocation).

Results go to docs/performance.md ("The cluster"); no test asserts a timing here.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "cluster"
PREFIX, NET = "jpb", "10.233.0"
STATE = Path(f"/tmp/jpki-cluster-{PREFIX}")  # noqa: S108 (scripts/cluster's state directory)
HA, JPKI1, EDGE = f"{NET}.20", f"{NET}.31", f"{NET}.40"
STATIC_PORT = 8081
ISSUE_KEYS = 400  # keys for one issuance run (at most as many certificates)
OCSP_VALIDITY_MINUTES = 2  # the recipe's minimum: the edge's freshness can be watched run out


def log(message: str) -> None:
    print(f"[bench.cluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the in-namespace client (python -m bench.cluster client COMMAND; JSON in and out) --------
# Every URL below is the cluster's own http://10.233.0.x address, given by this file (S310).


def _call(url: str, secret: str, body: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={  # noqa: S310
        "content-type": "application/json",
        "authorization": "Basic " + base64.b64encode(secret.encode()).decode()})
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
        return json.loads(answer.read())


def client_issue(args: dict[str, Any]) -> dict[str, Any]:
    """Issue with ``threads`` threads until ``seconds`` pass or the keys run out: each issuance
    is a resident, a proofing and an authentication certificate (``pairs``: a pair instead)."""
    url, operator, station = args["url"], args["operator"], args["station"]
    keys: list[str] = list(args["keys"])
    lock = threading.Lock()
    issued: list[dict[str, str]] = []
    errors: list[str] = []
    deadline = time.monotonic() + args["seconds"]

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                need = 2 if args["pairs"] else 1
                if len(keys) < need:
                    return
                mine = [keys.pop() for _ in range(need)]
            try:
                resident = _call(url + "/v1/operators/residents", operator, {
                    "name": "性能 試験", "birth_date": "1990-01-02", "sex": 1,
                    "address": "東京都清瀬市中里一丁目", "municipality_code": "132217"})["id"]
                proofing = _call(url + "/v1/stations/proofings", station, {
                    "resident_id": resident, "presence": "in_person",
                    "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]})
                body = {"resident_id": resident, "proofing_id": proofing["id"],
                        "auth_public_key": mine[0]}
                if args["pairs"]:
                    body["sign_public_key"] = mine[1]
                done = _call(url + "/v1/stations/certificates", station, body)
                with lock:
                    issued.extend({k: c[k] for k in ("serial", "pem")}
                                  for c in done["certificates"])
            except (urllib.error.URLError, OSError, ValueError) as exc:
                with lock:
                    errors.append(type(exc).__name__)

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"issued": issued, "errors": errors, "seconds": time.monotonic() - began}


def client_paths(args: dict[str, Any]) -> list[str]:
    """The RFC 5019 GET path of each certificate (SHA-1 CertID), issuers fetched from ``url``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import ocsp
    from cryptography.x509.oid import AuthorityInformationAccessOID

    issuers: dict[str, x509.Certificate] = {}
    out = []
    for pem in args["pems"]:
        cert = x509.load_pem_x509_certificate(pem.encode())
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        ca_url = next(str(d.access_location.value) for d in aia
                      if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS)
        path = urlsplit(ca_url).path
        if path not in issuers:
            with urllib.request.urlopen(args["url"] + path, timeout=30) as answer:  # noqa: S310
                issuers[path] = x509.load_der_x509_certificate(answer.read())
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuers[path],
                                                            hashes.SHA1()).build()  # noqa: S303
        out.append("/ocsp/" + quote(base64.b64encode(request.public_bytes(Encoding.DER))
                                    .decode(), safe=""))
    return out


def client_fetch(args: dict[str, Any]) -> dict[str, Any]:
    """GET each path from ``url`` (twice: the edge's cache then holds it): the bytes (base64),
    and the cache status and Expires the second answer carried."""
    out = {}
    for path in args["paths"]:
        for _ in range(2):
            with urllib.request.urlopen(args["url"] + path, timeout=30) as answer:  # noqa: S310
                body, headers = answer.read(), answer.headers
        out[path] = {"body": base64.b64encode(body).decode(),
                     "cache": headers.get("X-Cache-Status"), "expires": headers.get("Expires")}
    return out


def client_watch(args: dict[str, Any]) -> dict[str, Any]:
    """Revoke through ``api``; ask the origin every 50 ms until it says revoked (the change
    feed's second), then ``edge`` every 0.5 s until it does."""
    from cryptography.x509 import ocsp

    def status(url: str) -> tuple[str, str | None, str | None]:
        with urllib.request.urlopen(url + args["path"], timeout=30) as answer:  # noqa: S310
            der, headers = answer.read(), answer.headers
        cert_status = ocsp.load_der_ocsp_response(der).certificate_status
        return cert_status.name, headers.get("X-Cache-Status"), headers.get("Expires")

    before = status(args["edge"])
    _call(args["api"] + f"/v1/operators/certificates/{args['serial']}/revocation",
          args["operator"], {"reason": "keyCompromise"})
    revoked_at = time.time()
    while (origin := status(args["api"]))[0] != "REVOKED" and time.time() - revoked_at < 10:
        time.sleep(0.05)
    origin_at = time.time()
    while True:
        seen = status(args["edge"])
        if seen[0] == "REVOKED" or time.time() - revoked_at > 60 * OCSP_VALIDITY_MINUTES + 30:
            break
        time.sleep(0.5)
    return {"before": before, "origin_after": origin, "edge_after": seen,
            "revoked_at": revoked_at, "origin_at": origin_at, "seen_at": time.time()}


CLIENT = {"issue": client_issue, "paths": client_paths, "fetch": client_fetch,
          "watch": client_watch}


# --- driving the cluster from the machine's own namespace -------------------------------------


def _env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JPKI_")}
    env.update(JPKI_CLUSTER_PREFIX=PREFIX, JPKI_CLUSTER_NET=NET,
               JPKI_CLUSTER_PYTHON=sys.executable, **more)
    return env


def cluster(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=_env(**env), timeout=timeout, check=False, cwd=REPO)


def in_ha(command: str, args: dict[str, Any], timeout: float = 600) -> Any:
    done = subprocess.run([sys.executable, str(SCRIPT), "exec", "ha", sys.executable, "-m",
                           "bench.cluster", "client", command], input=json.dumps(args),
                          capture_output=True, text=True, env=_env(), cwd=REPO,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"client {command}: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def jpki(*args: str) -> Any:
    done = cluster("jpki", "1", *args, "--json")
    if done.returncode != 0:
        raise RuntimeError(f"jpki {' '.join(args)}: {done.stdout} {done.stderr}")
    return json.loads(done.stdout)


def _secret(client: dict[str, Any]) -> str:
    return f"{client['client_id']}:{client['client_secret']}"


_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS = re.compile(r"Socket errors:.*")
_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(url: str, lua: str, seconds: int, connections: int) -> dict[str, Any]:
    """``wrk`` from the HAProxy host; requests/s, p99 (ms), and what was not a 2xx."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(lua)
        script = fh.name
    try:
        done = cluster("exec", "ha", "wrk", f"-t{min(2, connections)}", f"-c{connections}",
                       f"-d{seconds}s", "--latency", "-s", script, url, timeout=seconds + 60)
    finally:
        os.unlink(script)
    out = done.stdout
    rate = _RATE.search(out)
    if done.returncode != 0 or rate is None:
        raise RuntimeError(f"wrk failed: {out} {done.stderr}")
    p99 = _P99.search(out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    bad = _NON2XX.search(out)
    errors = _ERRORS.search(out)
    return {"rate": float(rate.group(1)),
            "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
            "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(0) if errors else None}


def _lua_list(items: list[str]) -> str:
    return "{" + ",".join(json.dumps(i) for i in items) + "}"


def ocsp_lua(paths: list[str]) -> str:
    return (f"local paths = {_lua_list(paths)}\nlocal i = 0\n"
            "request = function()\n  i = i % #paths + 1\n"
            "  return wrk.format('GET', paths[i])\nend\n")


def status_lua(serials: list[str], secret: str) -> str:
    bodies = [json.dumps({"purpose": "kyc", "serials": [s]}) for s in serials]
    auth = "Basic " + base64.b64encode(secret.encode()).decode()
    return (f"local bodies = {_lua_list(bodies)}\nlocal i = 0\n"
            "wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
            f"wrk.headers['Authorization'] = '{auth}'\n"
            "request = function()\n  i = i % #bodies + 1\n"
            "  return wrk.format(nil, '/v1/status', nil, bodies[i])\nend\n")


def haproxy(command: str) -> None:
    """A command on HAProxy's stats socket (a Unix socket: reachable from here)."""
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(STATE / "ha" / "haproxy.sock"))
        sock.sendall(command.encode() + b"\n")
        while sock.recv(4096):
            pass


def routed_nodes() -> list[str]:
    done = cluster("status", "--json", timeout=60)
    for m in json.loads(done.stdout)["members"]:
        if m["service"] == "haproxy":
            return str(m["role"]).split("jpki→")[1].split(";")[0].split(",")
    return []


def one_node_through_haproxy(on: bool) -> None:
    haproxy(f"set server jpki/jpki2 state {'maint' if on else 'ready'}")
    want = ["jpki1"] if on else ["jpki1", "jpki2"]
    deadline = time.monotonic() + 30
    while sorted(routed_nodes()) != want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"HAProxy does not route to {want}")
        time.sleep(0.5)


def pgbench(seconds: int, clients: int, synchronous: bool) -> float:
    secret = json.loads((STATE / "secrets.json").read_text())
    env = {"PGPASSWORD": secret["postgres"],
           "PGOPTIONS": f"-c synchronous_commit={'on' if synchronous else 'local'}"}
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
        fh.write("INSERT INTO bench_commits (payload) VALUES (repeat('x', 200));\n")
        script = fh.name
    os.chmod(script, 0o644)
    try:
        done = cluster("exec", "ha", "/usr/lib/postgresql/15/bin/pgbench", "-h", HA, "-p", "5000",
                       "-U", "postgres", "-d", "postgres", "-n", "-c", str(clients), "-j", "2",
                       "-T", str(seconds), "-f", script, timeout=seconds + 60, **env)
    finally:
        os.unlink(script)
    found = re.search(r"tps = ([\d.]+)", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"pgbench failed: {done.stdout} {done.stderr}")
    return float(found.group(1))


def psql(sql: str) -> None:
    secret = json.loads((STATE / "secrets.json").read_text())
    done = cluster("exec", "ha", "/usr/lib/postgresql/15/bin/psql", "-h", HA, "-p", "5000", "-U",
                   "postgres", "-d", "postgres", "-qAt", "-c", sql, PGPASSWORD=secret["postgres"])
    if done.returncode != 0:
        raise RuntimeError(done.stderr)


STATIC_CONF = """\
user www-data;
worker_processes 1;
daemon off;
pid {dir}/static.pid;
error_log {dir}/static-error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen {edge}:{port};
        merge_slashes off;
        root {dir}/static;
        default_type application/ocsp-response;
    }}
}}
"""


@contextlib.contextmanager
def static_nginx(bodies: dict[str, bytes]) -> Any:
    """A second nginx on the edge host serving ``bodies`` as files at their (decoded) paths."""
    edge_dir = STATE / "edge"
    root = edge_dir / "static"
    for path, body in bodies.items():
        target = root / unquote(path).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    conf = edge_dir / "static.conf"
    conf.write_text(STATIC_CONF.format(dir=edge_dir, edge=EDGE, port=STATIC_PORT))
    proc = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-edge", "nginx", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        time.sleep(1)
        yield f"http://{EDGE}:{STATIC_PORT}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from bench.common import load_average, subject_keys
    from jpki.authority.recipe import default_recipe_path

    seconds, conns = args.seconds, args.connections
    results: dict[str, Any] = {"seconds": seconds, "connections": conns,
                               "load_before": load_average()}
    recipe = Path(tempfile.mkdtemp(prefix="jpki-bench-cluster-")) / "recipe.toml"
    recipe.write_text(re.sub(r"(?m)^validity_minutes = \d+",
                             f"validity_minutes = {OCSP_VALIDITY_MINUTES}",
                             default_recipe_path().read_text()))
    recipe.chmod(0o644)
    recipe.parent.chmod(0o755)
    cluster("down", timeout=120)
    log("scripts/cluster up (prefix jpb)")
    done = cluster("up", timeout=600, JPKI_NODE_RECIPE=str(recipe),
                   JPKI_NODE_RP_RATE_PER_SECOND="1000000", JPKI_NODE_RP_RATE_BURST="1000000")
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    try:
        operator = _secret(jpki("client", "add", "--name", "bench ops", "--role", "operator"))
        station = _secret(jpki("client", "add", "--name", "bench desk", "--role", "station"))
        rp = _secret(jpki("rp", "add", "--name", "bench rp", "--kind", "platform_operator",
                          "--purpose", "kyc", "--scopes", "status"))
        keys = [k.decode() for k in subject_keys(2 * args.pairs + 3 * ISSUE_KEYS, log=log)]
        log(f"issuing {args.pairs} pairs (setup)")
        setup = in_ha("issue", {"url": f"http://{HA}:8000", "operator": operator,
                                "station": station, "keys": keys[:2 * args.pairs],
                                "seconds": 3600, "threads": 4, "pairs": True})
        spare = keys[2 * args.pairs:]
        certs = setup["issued"]
        serials = [c["serial"] for c in certs]
        paths = in_ha("paths", {"url": f"http://{HA}:8000", "pems": [c["pem"] for c in certs]})
        targets = {"single node": f"http://{JPKI1}:8000", "HAProxy, 1 node": f"http://{HA}:8000",
                   "HAProxy, 2 nodes": f"http://{HA}:8000"}
        for name, url in targets.items():
            one_node_through_haproxy(name == "HAProxy, 1 node")
            log(f"{name}: issuance, OCSP, status")
            chunk, spare = spare[:ISSUE_KEYS], spare[ISSUE_KEYS:]
            issued = in_ha("issue", {"url": url, "operator": operator, "station": station,
                                     "keys": chunk, "seconds": seconds, "threads": conns,
                                     "pairs": False})
            results[name] = {
                "issuance_per_s": len(issued["issued"]) / issued["seconds"],
                "issuance_errors": len(issued["errors"]),
                "ocsp": wrk(url, ocsp_lua(paths), seconds, conns),
                "status": wrk(url, status_lua(serials, rp), seconds, conns)}
        one_node_through_haproxy(False)

        log("durable commits: synchronous standby against local")
        psql("CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY, payload text)")
        runs: dict[str, list[float]] = {"sync": [], "local": []}
        for _ in range(2):
            runs["sync"].append(pgbench(seconds, conns, True))
            runs["local"].append(pgbench(seconds, conns, False))
        results["commits_per_s"] = {k: statistics.median(v) for k, v in runs.items()}

        log("the edge: nginx proxy_cache against static files")
        fetched = in_ha("fetch", {"url": f"http://{EDGE}", "paths": paths})
        hits = sum(1 for f in fetched.values() if f["cache"] == "HIT")
        bodies = {p: base64.b64decode(f["body"]) for p, f in fetched.items()}
        edge_runs: dict[str, list[dict[str, Any]]] = {"edge": [], "static": []}
        with static_nginx(bodies) as static_url:
            for _ in range(2):
                edge_runs["edge"].append(wrk(f"http://{EDGE}", ocsp_lua(paths), seconds, conns))
                edge_runs["static"].append(wrk(static_url, ocsp_lua(paths), seconds, conns))
        edge = {k: statistics.median(r["rate"] for r in v) for k, v in edge_runs.items()}
        results["edge"] = {"cache_hits_after_warming": hits, "paths": len(paths),
                           "rate": edge, "ratio": edge["edge"] / edge["static"],
                           "non_2xx": sum(r["non_2xx"] for v in edge_runs.values() for r in v),
                           "p99_ms": {k: [r["p99_ms"] for r in v]
                                      for k, v in edge_runs.items()}}

        log("freshness through the edge (up to the OCSP validity, "
            f"{OCSP_VALIDITY_MINUTES} min)")
        watched = in_ha("watch", {"edge": f"http://{EDGE}", "api": f"http://{HA}:8000",
                                  "operator": operator, "serial": serials[-1],
                                  "path": paths[-1]}, timeout=OCSP_VALIDITY_MINUTES * 60 + 120)
        expires = parsedate_to_datetime(watched["before"][2]).timestamp()
        results["freshness"] = {
            "edge_before": watched["before"][:2], "origin_after": watched["origin_after"][0],
            "origin_revoked_after_s": watched["origin_at"] - watched["revoked_at"],
            "edge_after": watched["edge_after"][:2],
            "revoked_after_s": watched["seen_at"] - watched["revoked_at"],
            "promised_s": expires - watched["revoked_at"],
            "within_promise": watched["edge_after"][0] == "REVOKED"
            and watched["seen_at"] <= expires + 1.0}
    finally:
        if not args.keep:
            cluster("down", timeout=120)
        shutil.rmtree(recipe.parent, ignore_errors=True)
    results["load_after"] = load_average()
    return results


def report(r: dict[str, Any]) -> str:
    lines = [f"{r['seconds']} s per run, {r['connections']} connections/threads; load average "
             f"{r['load_before']} → {r['load_after']}", "",
             "| | issuance/s | OCSP GET/s (p99 ms) | /v1/status/s (p99 ms) |", "|---|---|---|---|"]
    for name in ("single node", "HAProxy, 1 node", "HAProxy, 2 nodes"):
        x = r[name]
        lines.append(f"| {name} | {x['issuance_per_s']:.1f} | {x['ocsp']['rate']:,.0f} "
                     f"({x['ocsp']['p99_ms']}) | {x['status']['rate']:,.0f} "
                     f"({x['status']['p99_ms']}) |")
    c = r["commits_per_s"]
    e = r["edge"]
    f = r["freshness"]
    lines += ["", f"durable commits/s: synchronous standby {c['sync']:,.0f}, local only "
              f"{c['local']:,.0f} (ratio {c['sync'] / c['local']:.2f})",
              f"edge (nginx proxy_cache, {e['cache_hits_after_warming']}/{e['paths']} hits after "
              f"warming): {e['rate']['edge']:,.0f}/s against static {e['rate']['static']:,.0f}/s"
              f" = {e['ratio']:.2f} (target ≥ 0.7); non-2xx {e['non_2xx']}",
              f"freshness: edge {f['edge_before']} before; origin {f['origin_after']} after "
              f"{f['origin_revoked_after_s']:.2f} s; "
              f"edge {f['edge_after']} after {f['revoked_after_s']:.1f} s, promised "
              f"{f['promised_s']:.1f} s → within: {f['within_promise']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        json.dump(CLIENT[argv[1]](json.load(sys.stdin)), sys.stdout)
        return 0
    parser = argparse.ArgumentParser(prog="bench.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", type=Path)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench.cluster needs root (scripts/cluster)")
    if shutil.which("wrk") is None:
        raise SystemExit("bench.cluster needs wrk")
    results = bench(args)
    if args.save:
        args.save.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
