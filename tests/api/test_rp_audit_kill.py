"""A status answer leaves only once its audit record is durable: `jpki serve` killed with
SIGKILL while relying parties call it loses no record of an answer it gave. The records come
from the group commit's lean chain writer (jpki.store.audit_writer), on the event loop's path
(serials kept in memory) and the worker threads' (a serial the store must be asked for); each
call names itself with X-Request-ID, which its audit record carries (jpki.correlation). On
SQLite and on PostgreSQL; the chain verifies afterwards."""

from __future__ import annotations

import base64
import dataclasses
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from jpki.store.engine import normalise_url
from tests.api.test_cli import NAME, KeyMaker, public_keys, tools  # noqa: F401 - fixtures
from tests.api.test_ocsp_restart import Deployment, deployment, serving  # noqa: F401 - fixture

pytestmark = [pytest.mark.hsm, pytest.mark.slow]


def _status(url: str, auth: tuple[str, str], request_id: str, serials: list[str]) -> int:
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
    request = urllib.request.Request(
        f"{url}/v1/status", method="POST",
        data=json.dumps({"purpose": "kyc", "serials": serials}).encode(),
        headers={"content-type": "application/json", "authorization": f"Basic {token}",
                 "x-request-id": request_id})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _audited_request_ids(deployed: Deployment) -> set[str]:
    url = deployed.env.get("JPKI_DATABASE_URL") or \
        f"sqlite:///{deployed.data_dir / 'jpki.db'}"
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT request_id FROM audit_log "
                                     "WHERE action = 'rp.status'")).all()
    finally:
        engine.dispose()
    return {r[0] for r in rows if r[0]}


def test_no_acknowledged_status_record_is_lost_when_the_server_is_killed(
        deployment: Deployment, public_keys: KeyMaker, tmp_path: Path) -> None:  # noqa: F811
    # The relying-party rate limit out of the way (as bench/relying_party.py sets it).
    deployment = dataclasses.replace(deployment, env={
        **deployment.env, "JPKI_RP_RATE_PER_SECOND": "1000000", "JPKI_RP_RATE_BURST": "1000000"})
    deployment.cli("init")
    resident = deployment.resident(NAME)
    serial = deployment.cli("cert", "issue", "--resident", resident, "--kind", "auth",
                            "--public-key", public_keys(tmp_path), "--out",
                            tmp_path / "c.pem")["serial"]
    added = deployment.cli("rp", "add", "--name", "RP", "--kind", "platform_operator",
                           "--purpose", "kyc", "--scopes", "status")
    auth = (added["client_id"], added["client_secret"])
    acknowledged: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def caller(index: int, url: str) -> None:
        for n in range(100_000):
            if stop.is_set():
                return
            request_id = f"kill-{index}-{n}"
            # Mostly a kept serial (answered in the event loop); now and then one the store
            # must be asked for (unknown serials are never kept: a worker thread's call).
            serials = [serial] if n % 4 else [serial, "7f" + f"{index:02x}{n:06x}"]
            try:
                status = _status(url, auth, request_id, serials)
            except OSError:
                return  # the server is gone: this call was never answered
            with lock:
                if status == 200:
                    acknowledged.append(request_id)
                else:
                    refused.append(status)
                    return

    with serving(deployment, tmp_path / "server.log") as (server, url):
        threads = [threading.Thread(target=caller, args=(i, url)) for i in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)  # mid-stream: calls are in flight
        server.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert server.returncode == -signal.SIGKILL
    assert not refused
    assert len(acknowledged) >= 300
    missing = set(acknowledged) - _audited_request_ids(deployment)
    assert not missing, sorted(missing)[:10]
    report = deployment.cli("audit", "verify")
    assert report["records"] >= len(acknowledged)
