"""The OpenAPI document is true: Schemathesis, with every check it has, over every operation,
as each role sees the API — operator, station, call centre, relying party, and no credentials.

``schemathesis run --checks all`` — its CLI, as a client's developer would run it: the examples,
coverage, fuzzing and stateful phases — against the app served by uvicorn on a loopback port,
reading the document the app serves. A failure is a difference between the document and the API:
a 5xx, an undocumented status code, content type or header, a response that breaks its schema, a
request the schema allows refused or one it forbids accepted, credentials ignored, a 405 without
``Allow`` or an ``Allow`` that disagrees with the document. Where a schema-valid request is
refused for a reason no schema can state (a signature that must verify, a check digit),
tests/api/schemathesis.toml widens the operation's expected statuses and says why.

One server per database holds a client of each role. The roles run side by side, but the
operator after the others: an operator's run may suspend a relying party or rotate its secret,
which would change what the relying party's run meets. Rate limits and failure budgets are set
out of reach: the point is the answers (429 stays documented).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.composition import Services
from api.in_process import free_port
from jpki.access.auth_throttle import AuthThrottle, FailureBudgets
from jpki.access.authz import Operation, authorize
from jpki.model import ClientRole
from jpki.rate_limits import TokenBuckets, TooManyRequests
from tests.conftest import LiveServer, serve
from tests.holder_kit import CA_OPERATOR

pytestmark = [pytest.mark.hsm, pytest.mark.slow]

HERE = Path(__file__).parent
CONFIG = HERE / "schemathesis.toml"
HOOKS = HERE / "schemathesis_hooks.py"
DOCUMENT = HERE.parents[1] / "docs" / "openapi.json"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Per operation, in the fuzzing phase (the coverage phase's cases are the schema's own): enough
# to meet every documented answer, few enough for CI. Raise it to look harder.
EXAMPLES = int(os.environ.get("JPKI_SCHEMATHESIS_EXAMPLES", "5"))
SEED = os.environ.get("JPKI_SCHEMATHESIS_SEED", "20261127")
ROLES = ("operator", "station", "callcenter", "rp", "anonymous")


def credentials(services: Services, role: str) -> str | None:
    """``client_id:secret`` of a new client of ``role``, or None for no credentials."""
    if role == "anonymous":
        return None
    if role == "rp":
        new = services.relying_parties.register(
            authorize(CA_OPERATOR, Operation.RP_REGISTER),
            name="Contract RP", kind="platform_operator", purposes=["test"],
            scopes=["status", "linkage", "basic4"])
        return f"{new.client_id}:{new.client_secret}"
    made = services.clients.create(
        authorize(CA_OPERATOR, Operation.CLIENT_CREATE),
        name=f"contract {role}", role=ClientRole(role))
    return f"{made.client.client_id}:{made.client_secret}"


@pytest.fixture
def server(services: Services) -> Iterator[LiveServer]:
    services.anonymous = TokenBuckets(services.limits, "anonymous", 100_000, 100_000,
                                      error=TooManyRequests)
    services.auth_throttle = AuthThrottle(
        by_client=FailureBudgets(services.limits, "client", 10**6, 60),
        by_address=FailureBudgets(services.limits, "address", 10**6, 60), refusal_delay=0)
    services.relying_parties.buckets = TokenBuckets(services.limits, "rp", 100_000, 100_000)
    services.mobile.max_per_source = services.mobile.max_outstanding = 10**6
    with serve(services, free_port()) as live:
        yield live


def operation_count() -> int:
    paths = json.loads(DOCUMENT.read_text(encoding="utf-8"))["paths"]
    return sum(len(item) for item in paths.values())


def schemathesis(url: str, secret: str | None, directory: Path) -> subprocess.Popen[str]:
    """``schemathesis run --checks all`` against ``url``, with ``secret`` as HTTP Basic
    credentials (or none)."""
    command = [str(SCHEMATHESIS), "--no-color", "--config-file", str(CONFIG), "run",
               f"{url}/openapi.json", "--checks", "all",
               "--max-examples", str(EXAMPLES), "--seed", SEED,
               # One worker per run: the runs and the server share this machine's cores. Health
               # checks off: on a loaded CI machine "too slow" is about the machine, not the API.
               "--workers", "1", "--suppress-health-check", "all"]
    if secret is not None:
        command += ["--auth", secret]
    # Not this environment's SCHEMATHESIS_* settings: they would change what is checked. The
    # run's files (its cache of failures to replay) stay in its own directory.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    env["SCHEMATHESIS_HOOKS"] = str(HOOKS)
    directory.mkdir()
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=directory, env=env)


def failures(role: str, run: subprocess.Popen[str]) -> str | None:
    """What went wrong in ``role``'s run, or None."""
    report, _ = run.communicate(timeout=900)
    tested = re.search(r"Tested: (\d+)", report)
    if run.returncode == 0 and tested is not None and int(tested.group(1)) == operation_count():
        return None
    return f"===== as {role} (exit {run.returncode}) =====\n{report[-20_000:]}"


def test_the_document_holds_for_every_role(server: LiveServer, services: Services,
                                           tmp_path: Path) -> None:
    secrets = {role: credentials(services, role) for role in ROLES}
    found: list[str | None] = []
    for wave in ([r for r in ROLES if r != "operator"], ["operator"]):
        runs = {role: schemathesis(server.url, secrets[role], tmp_path / role) for role in wave}
        found += [failures(role, run) for role, run in runs.items()]
    assert not any(found), "\n".join(f for f in found if f)
