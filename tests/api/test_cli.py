"""The `jpki` console script, driven as scripts drive it: as a subprocess with its own data dir.

Each command runs in a fresh process because SoftHSM reads its configuration once per process, and
`jpki --data-dir D` points it at the private token under D. `jpki init` costs seconds, so it runs
once per module (`base`); every test that changes anything works on a copy of that directory (a
copy is a complete, independent CA: database, token and PINs). Independent commands run
concurrently to keep the module fast.

The OpenSSL CLI is the independent checker for the certificates the CLI writes; the standard
library's sqlite3 plays the attacker for the audit chain.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api.in_process import free_port
from tests.components import missing_component

pytestmark = pytest.mark.hsm

REPO = Path(__file__).resolve().parents[2]
NAME = "山田 太郎"
ADDRESS = "東京都清瀬市中里一丁目２番３号"
NEW_ADDRESS = "東京都千代田区霞が関二丁目１番２号"
KID_NAME = "小林 花子"
BIRTH = "1990-01-02"
PERSONAL = (NAME, "山田", "太郎", ADDRESS, "中里一丁目", NEW_ADDRESS, "霞が関", KID_NAME, "小林",
            BIRTH)
HEX = re.compile(r"^[0-9a-f]{1,40}$")


# --- running the CLI -----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.rc == 0, f"jpki {' '.join(self.args)} failed ({self.rc}): {self.err}"
        return json.loads(self.out)

    def error(self) -> dict[str, Any]:
        """The JSON error object a --json command writes to stderr."""
        doc = json.loads(self.err)
        assert set(doc) == {"error"}, doc
        return doc["error"]  # type: ignore[no-any-return]


def _command() -> list[str]:
    script = Path(sys.executable).parent / "jpki"
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def _env(**extra: str) -> dict[str, str]:
    # A developer's JPKI_* variables (a PIN, a data dir) must not leak into the commands.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JPKI_") and k != "SOFTHSM2_CONF"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def jpki(*args: str | Path, data_dir: Path | None = None, cwd: Path | None = None,
         env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    argv = [str(a) for a in args]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    proc = subprocess.run([*_command(), *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or (data_dir.parent if data_dir else REPO),
                          env=env or _env(), umask=0o022, check=False)
    return Run(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def jpki_ok(*args: str | Path, data_dir: Path | None = None, **kw: Any) -> Any:
    """Run a --json command that must succeed; return its parsed stdout."""
    run = jpki(*args, "--json", data_dir=data_dir, **kw)
    return run.json()


def concurrently(*calls: tuple[Sequence[str | Path], dict[str, Any]]) -> list[Run]:
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = [pool.submit(jpki, *args, **kw) for args, kw in calls]
        return [f.result() for f in futures]


def head_in_db(data_dir: Path) -> str:
    """The audit head row, read behind the CLI's back, in `audit verify`'s SEQ:MAC form."""
    with closing(sqlite3.connect(data_dir / "jpki.db")) as db:
        seq, mac = db.execute("SELECT seq, mac FROM audit_head WHERE id = 1").fetchone()
    return f"{seq}:{mac}"


def copy_data_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def openssl_verify(ca_pem: Path, cert_pem: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "verify", "-CAfile", str(ca_pem), str(cert_pem)],
                          capture_output=True, text=True, timeout=30, check=False)


def load_pem(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def aki(cert: x509.Certificate) -> bytes | None:
    return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tools(softhsm_module: str) -> None:
    if shutil.which("openssl") is None:
        missing_component("the openssl CLI is not installed")


@dataclass(frozen=True)
class Base:
    data_dir: Path
    init: dict[str, Any]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, tools: None) -> Base:
    """`jpki init` once: the pristine CA every other test copies."""
    data_dir = tmp_path_factory.mktemp("cli") / "base"
    return Base(data_dir, jpki_ok("init", data_dir=data_dir))


KeyMaker = Callable[[Path], Path]


@pytest.fixture(scope="module")
def public_keys() -> KeyMaker:
    """Makes fresh RSA-2048 SubjectPublicKeyInfo PEM files standing in for keys made on cards."""
    made: list[Path] = []

    def make(directory: Path) -> Path:
        key = rsa.generate_private_key(65537, 2048).public_key()
        path = directory / f"card-key-{len(made)}.pem"
        path.write_bytes(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        made.append(path)
        return path

    return make


def add_resident(data_dir: Path, *, name: str = NAME, birth: str = BIRTH,
                 address: str = ADDRESS, municipality: str = "132217") -> str:
    doc = jpki_ok("resident", "add", "--name", name, "--birth", birth, "--sex", "1",
                  "--address", address, "--municipality", municipality, data_dir=data_dir)
    assert set(doc) == {"id"} and doc["id"]
    return str(doc["id"])


# --- 1. init --------------------------------------------------------------------------------


def test_init_creates_the_ca_once_and_a_second_run_changes_nothing(base: Base) -> None:
    created = base.init["created"]
    assert base.init["data_dir"] == str(base.data_dir.resolve())
    assert base.init["unchanged"] == []

    def one(prefix: str) -> None:
        assert sum(line.startswith(prefix) for line in created) == 1, (prefix, created)

    for prefix in ("audit key", "client-secret key", "sign CA generation 1", "auth CA generation 1",
                   "sign OCSP responder g01", "auth OCSP responder g01"):
        one(prefix)
    assert any(re.fullmatch(r"\d+ municipalities from the seed list", c) for c in created)

    head = head_in_db(base.data_dir)
    again = jpki_ok("init", data_dir=base.data_dir)
    assert again["created"] == []
    assert len(again["unchanged"]) == len(created)
    assert head_in_db(base.data_dir) == head  # nothing audited either: nothing happened

    secrets = base.data_dir / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    for pin in ("hsm-user-pin", "hsm-so-pin"):
        assert stat.S_IMODE((secrets / pin).stat().st_mode) == 0o600
    assert (base.data_dir / "jpki.db").read_bytes()[:16] == b"SQLite format 3\x00"


DESTROY_CLIENT_KEY = """
import sys
from pathlib import Path
from pkcs11.constants import Attribute
from api.composition import open_keystore
from jpki.authority.recipe import load_recipe
from jpki.settings import Settings

recipe = load_recipe()
keys = open_keystore(Settings(data_dir=Path(sys.argv[1])), recipe)
with keys.session() as session:
    for obj in session.get_objects({Attribute.LABEL: recipe.client_secret_key_label}):
        obj.destroy()
keys.close()
"""


def test_init_adds_the_client_secret_key_to_a_data_directory_made_before_it(
        base: Base, tmp_path: Path) -> None:
    d = copy_data_dir(base.data_dir, tmp_path / "old")
    # A data directory from before the key: its token has everything but that key.
    subprocess.run([sys.executable, "-c", DESTROY_CLIENT_KEY, str(d)], cwd=REPO, env=_env(),
                   check=True, timeout=60, capture_output=True)
    refused = jpki("client", "add", "--name", "op", "--role", "operator", "--json", data_dir=d)
    assert refused.rc != 0 and refused.error()["code"] == "ca.not_initialised"
    assert "jpki init" in refused.error()["detail"]

    head = head_in_db(d)
    report = jpki_ok("init", data_dir=d)
    assert report["created"] == ["client-secret key client-secret-mac (HMAC-SHA-256, in the "
                                 "token)"]
    assert "audit key audit-mac" in report["unchanged"]
    assert head_in_db(d) == head  # a key in the token; nothing in the database changed
    again = jpki_ok("init", data_dir=d)
    assert again["created"] == [] and "client-secret key client-secret-mac" in again["unchanged"]
    made = jpki_ok("client", "add", "--name", "op", "--role", "operator", data_dir=d)
    assert made["client_id"].startswith("jpki_")


def test_init_keeps_the_data_directory_private(base: Base) -> None:
    # The database holds the basic 4 information; SQLite creates it 0644 under umask 022 (which
    # every command here runs with), so the directory around it must be closed.
    assert stat.S_IMODE(base.data_dir.stat().st_mode) == 0o700


# --- 2. a whole flow --------------------------------------------------------------------------


def test_whole_flow_issue_verify_show_move_revoke(base: Base, tmp_path: Path,
                                                  public_keys: KeyMaker) -> None:
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    resident = add_resident(d)
    auth_pem, sign_pem = tmp_path / "auth.pem", tmp_path / "sign.pem"

    auth = jpki_ok("cert", "issue", "--resident", resident, "--kind", "auth",
                   "--public-key", public_keys(tmp_path), "--out", auth_pem, data_dir=d)
    sign = jpki_ok("cert", "issue", "--resident", resident, "--kind", "sign",
                   "--public-key", public_keys(tmp_path), "--out", sign_pem, data_dir=d)
    for doc, kind, issuer, pem in ((auth, "card_auth", "auth/g01", auth_pem),
                                   (sign, "card_sign", "sign/g01", sign_pem)):
        assert HEX.match(doc["serial"]), doc
        assert (doc["kind"], doc["status"], doc["issuer"]) == (kind, "good", issuer)
        assert doc["resident_id"] == resident and doc["out"] == str(pem)
        assert doc["revoked_at"] is None and doc["not_before"] < doc["not_after"]
        assert load_pem(pem).serial_number == int(doc["serial"], 16)
    assert auth["serial"] != sign["serial"]

    exported, show_auth, show_sign = concurrently(
        (("ca", "export", "--out", tmp_path / "cas", "--json"), {"data_dir": d}),
        (("cert", "show", "--serial", auth["serial"], "--json"), {"data_dir": d}),
        # Serials are accepted in any case and with colons, as openssl prints them.
        (("cert", "show", "--serial", ":".join(re.findall("..?", sign["serial"].upper())),
          "--json"), {"data_dir": d}))
    written = {Path(p).name for p in exported.json()["written"]}
    assert written == {"sign-ca-g01.pem", "auth-ca-g01.pem", "sign-ocsp-g01.pem",
                       "auth-ocsp-g01.pem"}
    for ca, pem in (("sign", sign_pem), ("auth", auth_pem)):
        checked = openssl_verify(tmp_path / "cas" / f"{ca}-ca-g01.pem", pem)
        assert checked.returncode == 0 and checked.stdout.strip().endswith(": OK"), checked
    # ... and not by the other CA: the two hierarchies are separate.
    assert openssl_verify(tmp_path / "cas" / "auth-ca-g01.pem", sign_pem).returncode != 0

    a, s = show_auth.json(), show_sign.json()
    assert (a["status"], a["sibling"]) == ("good", sign["serial"])
    assert (s["status"], s["sibling"]) == ("good", auth["serial"])
    assert a["pem"] == auth_pem.read_text() and s["pem"] == sign_pem.read_text()

    moved = jpki_ok("resident", "event", "--resident", resident, "--kind", "address",
                    "--address", NEW_ADDRESS, data_dir=d)
    assert moved["changed"] is True
    assert [(r["serial"], r["reason"]) for r in moved["revoked"]] == \
        [(sign["serial"], "affiliationChanged")]

    show_sign, show_auth = concurrently(
        (("cert", "show", "--serial", sign["serial"], "--json"), {"data_dir": d}),
        (("cert", "show", "--serial", auth["serial"], "--json"), {"data_dir": d}))
    s, a = show_sign.json(), show_auth.json()
    assert (s["status"], s["revocation_reason"]) == ("revoked", "affiliationChanged")
    assert s["revoked_at"] is not None
    assert (a["status"], a["revocation_reason"], a["revoked_at"]) == ("good", None, None)

    first = jpki("cert", "revoke", "--serial", auth["serial"], "--reason", "keyCompromise",
                 "--json", data_dir=d)
    assert first.rc == 0, first.err
    second = jpki("cert", "revoke", "--serial", auth["serial"], "--reason", "keyCompromise",
                  "--json", data_dir=d)
    assert second.rc == 0, second.err
    one, two = first.json(), second.json()
    assert (one["changed"], one["reason"]) == (True, "keyCompromise")
    assert (two["changed"], two["reason"]) == (False, "keyCompromise")
    assert two["revoked_at"] == one["revoked_at"]

    # --data-dir defaults to $JPKI_DATA_DIR.
    verified = jpki("audit", "verify", "--json", cwd=tmp_path, env=_env(JPKI_DATA_DIR=str(d)))
    report = verified.json()
    assert report["ok"] is True and report["head"] == head_in_db(d)

    with closing(sqlite3.connect(d / "jpki.db")) as db:
        rows = db.execute("SELECT actor, action, subject, payload FROM audit_log").fetchall()
    actions = [r[1] for r in rows]
    assert actions.count("certificate.revoked") == 2
    for row in rows:
        for text in PERSONAL:
            assert text not in " ".join(row), (text, row)


# --- 3. errors --------------------------------------------------------------------------------

UNKNOWN_SERIAL = "123456789abcdef0123456789"


@dataclass(frozen=True)
class ErrorCase:
    code: str
    args: tuple[str, ...]
    uninitialised: bool = False


def _error_cases(resident: str, kid: str, serial: str, key: Path,
                 out: Path) -> dict[str, ErrorCase]:
    return {
        "unknown-resident": ErrorCase("resident.not_found", (
            "cert", "issue", "--resident", "0" * 32, "--kind", "auth", "--public-key", str(key),
            "--out", str(out))),
        "unknown-resident-event": ErrorCase("resident.not_found", (
            "resident", "event", "--resident", "0" * 32, "--kind", "address",
            "--address", NEW_ADDRESS, "--name", NAME)),
        "bad-serial": ErrorCase("serial.invalid", ("cert", "show", "--serial", "zz")),
        "unknown-serial": ErrorCase("certificate.not_found", (
            "cert", "revoke", "--serial", UNKNOWN_SERIAL, "--reason", "keyCompromise")),
        "bad-reason": ErrorCase("revocation.reason_invalid", (
            "cert", "revoke", "--serial", serial, "--reason", "becauseISaidSo")),
        "not-initialised": ErrorCase("ca.not_initialised", ("cert", "show", "--serial", serial),
                                     uninitialised=True),
        "under-15-signing": ErrorCase("policy.under_15", (
            "cert", "issue", "--resident", kid, "--kind", "sign", "--public-key", str(key),
            "--out", str(out))),
        # Accepted before, and then it checked nothing at all.
        "bad-expect-head": ErrorCase("request.invalid", (
            "audit", "verify", "--expect-head", "-1:" + "0" * 64)),
        "bad-basic4": ErrorCase("request.invalid", (
            "resident", "add", "--name", NAME, "--birth", BIRTH, "--sex", "7",
            "--address", ADDRESS, "--municipality", "132217")),
        # The database refuses the insert (a trigger stands in for a full disk or a schema
        # drift): the driver's message quotes the SQL parameters — name, birth date, address.
        "database-failure": ErrorCase("internal", (
            "resident", "add", "--name", NAME, "--birth", BIRTH, "--sex", "1",
            "--address", ADDRESS, "--municipality", "132217")),
        "unwritable-out": ErrorCase("output.unwritable", (
            "cert", "issue", "--resident", resident, "--kind", "sign", "--public-key", str(key),
            "--out", str(out.parent / "no-such-dir" / "cert.pem"))),
    }


@dataclass(frozen=True)
class ErrorRuns:
    cases: dict[str, ErrorCase]
    runs: dict[tuple[str, bool], Run]  # (case, --json) → run
    never: dict[bool, Path]  # the never-initialised data dirs
    head_before: str
    head_after: str
    out: Path


@pytest.fixture(scope="module")
def error_runs(base: Base, tmp_path_factory: pytest.TempPathFactory,
               public_keys: KeyMaker) -> ErrorRuns:
    """Every refused command, each in text and --json mode, between two `audit verify` runs."""
    tmp = tmp_path_factory.mktemp("errors")
    d = copy_data_dir(base.data_dir, tmp / "data")
    today = date.today()
    kid_birth = today.replace(year=today.year - 10, day=min(today.day, 28)).isoformat()
    resident, kid = concurrently(*[
        (("resident", "add", "--name", name, "--birth", birth, "--sex", "2", "--address",
          ADDRESS, "--municipality", "132217", "--json"), {"data_dir": d})
        for name, birth in ((NAME, BIRTH), (KID_NAME, kid_birth))])
    resident, kid = resident.json()["id"], kid.json()["id"]
    auth_pem = tmp / "auth.pem"
    issued = jpki_ok("cert", "issue", "--resident", resident, "--kind", "auth",
                     "--public-key", public_keys(tmp), "--out", auth_pem, data_dir=d)
    out = tmp / "refused.pem"
    cases = _error_cases(resident, kid, issued["serial"], public_keys(tmp), out)
    never = {False: tmp / "never-text", True: tmp / "never-json"}
    with closing(sqlite3.connect(d / "jpki.db")) as db, db:
        db.execute("CREATE TRIGGER refuse_residents BEFORE INSERT ON residents "
                   "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")

    before = jpki_ok("audit", "verify", data_dir=d)["head"]
    assert before == head_in_db(d)
    keys = [(name, as_json) for name in cases for as_json in (False, True)]
    runs = concurrently(*[
        ((*cases[name].args, *(["--json"] if as_json else [])),
         {"data_dir": never[as_json] if cases[name].uninitialised else d})
        for name, as_json in keys])
    after = jpki_ok("audit", "verify", data_dir=d)["head"]
    return ErrorRuns(cases, dict(zip(keys, runs, strict=True)), never, before, after, out)


ERROR_CASES = ["unknown-resident", "unknown-resident-event", "bad-serial", "unknown-serial",
               "bad-reason", "not-initialised", "under-15-signing", "bad-expect-head", "bad-basic4",
               "database-failure", "unwritable-out"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_error_exits_nonzero_with_its_code_on_stderr_only(error_runs: ErrorRuns,
                                                          case: str) -> None:
    assert set(error_runs.cases) == set(ERROR_CASES)
    code = error_runs.cases[case].code

    text = error_runs.runs[case, False]
    assert text.rc != 0
    assert text.out == ""
    assert text.err.startswith(f"error: {code}: "), text.err
    assert text.err.count("\n") == 1, text.err  # one line, no traceback

    as_json = error_runs.runs[case, True]
    assert as_json.rc != 0
    assert as_json.out == ""
    error = as_json.error()
    assert error["code"] == code and error["detail"], error

    for run in (text, as_json):
        for personal in PERSONAL:
            assert personal not in run.err, (personal, run.err)


def test_errors_leave_the_audit_chain_and_the_outputs_untouched(error_runs: ErrorRuns) -> None:
    assert error_runs.head_after == error_runs.head_before
    assert not error_runs.out.exists()
    assert not (error_runs.out.parent / "no-such-dir").exists()


def test_refused_command_leaves_no_trace_in_an_uninitialised_data_dir(
        error_runs: ErrorRuns) -> None:
    # A mistyped --data-dir (or ./var in the wrong directory) must not be half-created.
    for never in error_runs.never.values():
        assert not never.exists(), sorted(p.name for p in never.iterdir())


# --- 4. audit tampering -------------------------------------------------------------------------


def _tamper(db_path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    with closing(sqlite3.connect(db_path)) as db, db:
        for sql, params in statements:
            assert db.execute(sql, params).rowcount == 1, sql


def test_audit_verify_detects_tampering_through_the_cli(base: Base, tmp_path: Path) -> None:
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    add_resident(d)  # a record made by the CLI, on top of the ceremony's
    good = jpki_ok("audit", "verify", data_dir=d)
    n = good["records"]
    assert n >= 6 and good["head"] == head_in_db(d)
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        rows = {seq: (prev, mac) for seq, prev, mac in
                db.execute("SELECT seq, prev_mac, mac FROM audit_log ORDER BY seq")}
        last_at = db.execute("SELECT at FROM audit_log WHERE seq = ?", (n,)).fetchone()[0]
    assert sorted(rows) == list(range(1, n + 1))
    mid = n // 2
    checkpoint = good["head"]  # recorded "elsewhere" by the operator
    forged = "ab" * 32

    cases: dict[str, tuple[list[tuple[str, tuple[Any, ...]]], list[str], str]] = {
        "altered-payload": ([("UPDATE audit_log SET payload = ? WHERE seq = ?",
                              ('{"codes":["999999"]}', mid))], [], f"record {mid} was altered"),
        "deleted-middle": ([("DELETE FROM audit_log WHERE seq = ?", (mid,))], [],
                           f"record {mid} is missing"),
        "deleted-last": ([("DELETE FROM audit_log WHERE seq = ?", (n,))], [],
                         f"chain ends at record {n - 1} but the head says {n}"),
        "forged-row": ([("INSERT INTO audit_log (seq, at, actor, action, subject, payload, "
                         "prev_mac, mac) VALUES (?, ?, 'cli:root', 'certificate.revoked', "
                         "'1234', '{}', ?, ?)", (n + 1, last_at, rows[n][1], forged)),
                        ("UPDATE audit_head SET seq = ?, mac = ? WHERE id = 1",
                         (n + 1, forged))], [], f"record {n + 1} was altered"),
        "altered-head": ([("UPDATE audit_head SET mac = ? WHERE id = 1", (forged,))], [],
                         f"the head says {n}"),
        # A rollback: the last two records gone and the head rewritten to the new tail. The
        # chain alone cannot tell (see below); the checkpoint can.
        "rolled-back": ([("DELETE FROM audit_log WHERE seq = ?", (n,)),
                         ("DELETE FROM audit_log WHERE seq = ?", (n - 1,)),
                         ("UPDATE audit_head SET seq = ?, mac = ? WHERE id = 1",
                          (n - 2, rows[n - 2][1]))],
                        ["--expect-head", checkpoint], f"rolled back below record {n}"),
        "other-history": ([], ["--expect-head", f"{mid}:{forged}"],
                          f"record {mid} differs from the recorded checkpoint"),
    }
    calls = []
    for name, (statements, extra, _) in cases.items():
        copy = copy_data_dir(d, tmp_path / name)
        _tamper(copy / "jpki.db", *statements)
        calls.append((("audit", "verify", *extra, "--json"), {"data_dir": copy}))
    rolled_back_plain = tmp_path / "rolled-back"
    calls.append((("audit", "verify", "--json"), {"data_dir": rolled_back_plain}))
    calls.append((("audit", "verify", "--expect-head", f"{mid}:{rows[mid][1]}"),
                  {"data_dir": d}))
    runs = concurrently(*calls)

    for (name, (_, _, message)), run in zip(cases.items(), runs, strict=False):
        assert run.rc != 0 and run.out == "", (name, run)
        error = run.error()
        assert error["code"] == "audit.chain_broken", (name, error)
        assert re.search(re.escape(message) + r"\b", error["detail"]), (name, error)

    plain, earlier = runs[len(cases):]
    # Without the checkpoint a consistent rollback verifies: that is why the head is printed.
    assert plain.json()["head"] == f"{n - 2}:{rows[n - 2][1]}"
    # The untouched log passes an earlier checkpoint of its own.
    assert earlier.rc == 0 and earlier.out.startswith(f"audit chain OK: {n} records"), earlier


def test_audit_verify_records_when_it_ran_and_what_it_found(base: Base, tmp_path: Path) -> None:
    """The dashboard says when the chain was last verified, with what result, over how many
    records: `jpki audit verify` leaves its run in the jobs' ledger, failures too."""
    d = copy_data_dir(base.data_dir, tmp_path / "data")

    def ledger() -> dict[str, Any]:
        runs = {run["job"]: run for run in jpki_ok("jobs", data_dir=d)["jobs"]}
        return dict(runs["audit_verify"])

    good = jpki_ok("audit", "verify", data_dir=d)
    first = ledger()
    assert (first["outcome"], first["error"], first["counts"]) == (
        "ok", None, {"records": good["records"]})
    assert (first["runs"], first["failures"]) == (1, 0)
    assert first["last_success_at"] == first["started_at"]
    mid = good["records"] // 2
    _tamper(d / "jpki.db", ("UPDATE audit_log SET payload = ? WHERE seq = ?", ("{}", mid)))
    broken = jpki("audit", "verify", "--json", data_dir=d)
    assert broken.rc != 0 and broken.error()["code"] == "audit.chain_broken"
    failed = ledger()
    assert (failed["outcome"], failed["error"]) == ("failed", "AuditChainBroken")
    # The records before the altered one verified; the altered one did not.
    assert failed["counts"] == {"records": mid - 1, "broken_at": mid}
    assert (failed["runs"], failed["failures"]) == (2, 1)
    assert failed["last_success_at"] == first["started_at"]


def test_audit_verify_state_finds_certificates_changed_behind_the_log(
        base: Base, tmp_path: Path, public_keys: KeyMaker) -> None:
    """The chain proves the log; `--state` replays it against the certificates' rows."""
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    resident = add_resident(d)
    auth, sign = (jpki_ok("cert", "issue", "--resident", resident, "--kind", kind,
                          "--public-key", public_keys(tmp_path), "--out", tmp_path / f"{kind}.pem",
                          data_dir=d)["serial"] for kind in ("auth", "sign"))
    revoked = jpki_ok("cert", "revoke", "--serial", auth, "--reason", "keyCompromise",
                      data_dir=d)
    clean = jpki_ok("audit", "verify", "--state", data_dir=d)
    assert clean["ok"] is True and clean["head"] == head_in_db(d)
    assert clean["state"]["certificates"] == 2 and clean["state"]["ok"] is True, clean
    assert (clean["state"]["mismatches"], clean["state"]["without_issuance_record"],
            clean["state"]["without_row"], clean["state"]["not_checkable"]) == ([], [], [], {})

    forged = "abcdef0123456789abcdef"
    cases: dict[str, list[tuple[str, tuple[Any, ...]]]] = {
        "un-revoked": [("UPDATE certificates SET revoked_at = NULL, revocation_reason = NULL, "
                        "crl_entry = NULL WHERE serial = ?", (auth,))],
        "inserted": [("INSERT INTO certificates (serial, kind, resident_id, card_id, "
                      "ca_generation_id, status, not_before, not_after, shard, registry_source, "
                      "public_key_sha256, der, delivery_required, created_at, updated_at) "
                      "SELECT ?, kind, resident_id, card_id, ca_generation_id, status, "
                      "not_before, not_after, shard, registry_source, public_key_sha256, der, "
                      "delivery_required, created_at, updated_at FROM certificates "
                      "WHERE serial = ?", (forged, sign))],
    }
    calls = []
    for name, statements in cases.items():
        copy = copy_data_dir(d, tmp_path / name)
        _tamper(copy / "jpki.db", *statements)
        calls += [(("audit", "verify", "--state", "--json"), {"data_dir": copy}),
                  (("audit", "verify", "--state"), {"data_dir": copy})]
    calls.append((("audit", "verify", "--json"), {"data_dir": tmp_path / "un-revoked"}))
    unrevoked_json, unrevoked_text, inserted_json, inserted_text, chain_only = \
        concurrently(*calls)

    for run in (unrevoked_json, inserted_json):
        assert run.rc != 0, run
        assert run.error()["code"] == "audit.state_mismatch", run.err
    for run in (unrevoked_text, inserted_text):
        assert run.rc != 0 and run.out.startswith("audit chain OK: "), run
        assert "\ncertificate state differs: " in run.out, run.out
        assert run.err.startswith("error: audit.state_mismatch: "), run.err
        assert run.err.count("\n") == 1, run.err
    state = json.loads(unrevoked_json.out)
    assert state["ok"] is False and state["state"]["mismatch_count"] == 2, state
    (revoked_at, reason) = state["state"]["mismatches"]
    assert (revoked_at["serial"], revoked_at["field"], revoked_at["found"]) == \
        (auth, "revoked_at", None)
    assert datetime.fromisoformat(revoked_at["expected"]) == \
        datetime.fromisoformat(revoked["revoked_at"])
    assert reason == {"serial": auth, "field": "revocation_reason",
                      "expected": "keyCompromise", "found": None}
    assert f"{auth} revocation_reason: expected keyCompromise, found None" in unrevoked_text.out
    state = json.loads(inserted_json.out)["state"]
    assert (state["mismatches"], state["certificates"]) == ([], 3), state
    assert state["without_issuance_record"] == [{
        "serial": forged, "status": "issued",
        "missing": ["certificate.signing", "certificate.issued"]}]
    assert f"{forged} (issued): no certificate.signing, certificate.issued record" in \
        inserted_text.out
    # Without --state the un-revoking goes unseen: the log itself was not touched.
    assert chain_only.json()["ok"] is True


# --- 5. durability of an acknowledged revocation ------------------------------------------------


def _http(method: str, url: str, body: dict[str, Any] | None = None,
          auth: tuple[str, str] | None = None) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        headers["authorization"] = f"Basic {token}"
    data = json.dumps(body).encode() if body is not None else None
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, data=data, headers=headers,
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _start_server(data_dir: Path, log_path: Path, env: dict[str, str] | None = None,
                  options: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        server = subprocess.Popen([*_command(), "serve", "--data-dir", str(data_dir), "--host",
                                   "127.0.0.1", "--port", str(port), *options], stdout=log,
                                  stderr=subprocess.STDOUT, cwd=data_dir.parent,
                                  env=env or _env(), umask=0o022)
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            pytest.fail(f"jpki serve exited {server.returncode}: {log_path.read_text()}")
        try:
            if _http("GET", f"{url}/healthz")[0] == 200:
                return server, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            pytest.fail("jpki serve did not answer /healthz within 60 s")
        time.sleep(0.1)


def test_acknowledged_revocations_survive_sigkill_of_the_server(
        base: Base, tmp_path: Path, public_keys: KeyMaker) -> None:
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    *residents_runs, operator_run, station_run = concurrently(
        *[(("resident", "add", "--name", name, "--birth", BIRTH, "--sex", "1", "--address",
            ADDRESS, "--municipality", "132217", "--json"), {"data_dir": d})
          for name in (NAME, "佐藤 一郎", "鈴木 次郎")],
        (("client", "add", "--name", "ops", "--role", "operator", "--json"), {"data_dir": d}),
        (("client", "add", "--name", "desk", "--role", "station", "--json"), {"data_dir": d}))
    residents = [r.json()["id"] for r in residents_runs]
    operator, station = operator_run.json(), station_run.json()
    assert operator["role"] == "operator" and operator["client_secret"]
    serials = [jpki_ok("cert", "issue", "--resident", residents[0], "--kind", "auth",
                       "--public-key", public_keys(tmp_path), "--out", tmp_path / "auth.pem",
                       data_dir=d)["serial"]]

    server, url = _start_server(d, tmp_path / "server.log")
    acked: list[dict[str, Any]] = []
    try:
        desk = (station["client_id"], station["client_secret"])

        def issue(resident: str, *kinds: str) -> list[str]:
            # The counter first checks two 本人確認書類 甲 (pattern B) and records it.
            status, proofing = _http("POST", f"{url}/v1/stations/proofings", {
                "resident_id": resident, "presence": "in_person",
                "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]},
                auth=desk)
            assert status == 201 and proofing["pattern"] == "B", proofing
            body = {"resident_id": resident, "proofing_id": proofing["id"]}
            body.update({f"{k}_public_key": public_keys(tmp_path).read_text() for k in kinds})
            status, doc = _http("POST", f"{url}/v1/stations/certificates", body, auth=desk)
            assert status == 201, doc
            return [c["serial"] for c in doc["certificates"]]

        serials += issue(residents[0], "sign")
        serials += issue(residents[1], "auth", "sign")
        serials += issue(residents[2], "auth", "sign")
        assert len(set(serials)) == 6
        for serial in serials[:5]:
            status, doc = _http("POST", f"{url}/v1/operators/certificates/{serial}/revocation",
                                {"reason": "keyCompromise"},
                                auth=(operator["client_id"], operator["client_secret"]))
            assert status == 200, doc
            acked.append(doc)
        server.send_signal(signal.SIGKILL)  # the moment the 5th acknowledgement arrived
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=30)
    assert server.returncode == -signal.SIGKILL
    assert [(a["serial"], a["reason"], a["changed"]) for a in acked] == \
        [(s, "keyCompromise", True) for s in serials[:5]]

    *shown, verified = concurrently(
        *[(("cert", "show", "--serial", s, "--json"), {"data_dir": d}) for s in serials],
        (("audit", "verify", "--json"), {"data_dir": d}))
    state = jpki_ok("audit", "verify", "--state", data_dir=d)["state"]
    assert state["ok"] is True and state["certificates"] == 6, state
    for ack, run in zip(acked, shown, strict=False):
        view = run.json()
        assert (view["status"], view["revocation_reason"]) == ("revoked", "keyCompromise"), view
        assert datetime.fromisoformat(view["revoked_at"]) == \
            datetime.fromisoformat(ack["revoked_at"])
    assert shown[5].json()["status"] == "good"  # the one never revoked
    assert verified.rc == 0, verified.err
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        audited = {s for (s,) in db.execute(
            "SELECT subject FROM audit_log WHERE action = 'certificate.revoked'")}
    assert audited == set(serials[:5])
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        everything = " ".join(" ".join(map(str, row)) for row in db.execute(
            "SELECT * FROM audit_log"))
    for secret in (operator["client_secret"], station["client_secret"]):
        assert secret not in everything  # shown once, never recorded


# --- 5b. station clients -------------------------------------------------------------------------


def test_client_add_post_office_needs_its_municipality_scopes(base: Base, tmp_path: Path) -> None:
    """A designated post office acts only for the municipalities that designated it."""
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    head = head_in_db(d)
    refused, wrong_role = concurrently(
        (("client", "add", "--name", "Kiyose PO", "--role", "station", "--station-kind",
          "post_office", "--json"), {"data_dir": d}),
        (("client", "add", "--name", "ops", "--role", "operator", "--station-kind",
          "post_office", "--json"), {"data_dir": d}))
    for run, says in ((refused, "needs the municipality:<code> scopes"),
                      (wrong_role, "only stations have a station kind")):
        assert run.rc != 0 and run.out == "", run
        error = run.error()
        assert error["code"] == "request.invalid", error
        assert says in error["detail"], error
    assert head_in_db(d) == head  # nothing created, nothing audited

    made = jpki_ok("client", "add", "--name", "Kiyose PO", "--role", "station",
                   "--station-kind", "post_office", "--scopes", "municipality:132217", data_dir=d)
    assert (made["role"], made["station_kind"], made["scopes"]) == \
        ("station", "post_office", ["municipality:132217"])
    assert head_in_db(d) != head


# --- 6. CA rollover -----------------------------------------------------------------------------


def test_ca_rollover_adds_a_generation_and_old_certificates_still_verify(
        base: Base, tmp_path: Path, public_keys: KeyMaker) -> None:
    d = copy_data_dir(base.data_dir, tmp_path / "var")
    old_pem, new_pem = tmp_path / "old.pem", tmp_path / "new.pem"
    first = add_resident(d)
    old_run, second_run = concurrently(
        (("cert", "issue", "--resident", first, "--kind", "sign", "--public-key",
          public_keys(tmp_path), "--out", old_pem, "--json"), {"data_dir": d}),
        (("resident", "add", "--name", "佐藤 一郎", "--birth", "1980-03-04", "--sex", "1",
          "--address", NEW_ADDRESS, "--municipality", "131016", "--json"), {"data_dir": d}))
    old, second = old_run.json(), second_run.json()["id"]
    assert old["issuer"] == "sign/g01"

    rolled = jpki_ok("ca", "rollover", "--ca", "sign", data_dir=d)
    assert (rolled["ca"], rolled["generation"]) == ("sign", 2)

    # `ca list` with neither --data-dir nor $JPKI_DATA_DIR: ./var.
    listed, new_run = concurrently(
        (("ca", "list", "--json"), {"cwd": tmp_path}),
        (("cert", "issue", "--resident", second, "--kind", "sign", "--public-key",
          public_keys(tmp_path), "--out", new_pem, "--json"), {"data_dir": d}))
    generations = sorted((g["ca"], g["generation"]) for g in listed.json())
    assert generations == [("auth", 1), ("sign", 1), ("sign", 2)]
    new = new_run.json()
    assert new["issuer"] == "sign/g02"

    head = head_in_db(d)
    exported, again_run = concurrently(
        (("ca", "export", "--out", tmp_path / "cas", "--json"), {"data_dir": d}),
        (("init", "--json"), {"data_dir": d}))
    assert len(exported.json()["written"]) == 6
    g01, g02 = tmp_path / "cas" / "sign-ca-g01.pem", tmp_path / "cas" / "sign-ca-g02.pem"
    assert openssl_verify(g01, old_pem).returncode == 0
    assert openssl_verify(g02, new_pem).returncode == 0
    assert openssl_verify(g01, new_pem).returncode != 0  # a new key, not a re-signed root
    assert openssl_verify(g02, old_pem).returncode != 0

    old_cert, new_cert = load_pem(old_pem), load_pem(new_pem)
    root1, root2 = load_pem(g01), load_pem(g02)
    assert root1.subject == root2.subject  # every generation shares the DN (§1.1)
    assert old_cert.issuer == new_cert.issuer == root2.subject
    ski = x509.SubjectKeyIdentifier
    assert aki(old_cert) == root1.extensions.get_extension_for_class(ski).value.digest
    assert aki(new_cert) == root2.extensions.get_extension_for_class(ski).value.digest
    assert aki(old_cert) != aki(new_cert)

    again = again_run.json()  # init after a rollover: nothing to do
    assert again["created"] == []
    assert "sign CA generation 2" in again["unchanged"]
    assert head_in_db(d) == head


# --- 7. revocation services ---------------------------------------------------------------------


def test_crl_publish_writes_every_shard_delta_and_arl(base: Base, tmp_path: Path,
                                                       public_keys: KeyMaker) -> None:
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    resident = add_resident(d)
    issued = jpki_ok("cert", "issue", "--resident", resident, "--kind", "auth",
                     "--public-key", public_keys(tmp_path), "--out", tmp_path / "a.pem",
                     data_dir=d)
    jpki_ok("cert", "revoke", "--serial", issued["serial"], "--reason", "keyCompromise",
            data_dir=d)
    out = tmp_path / "published"
    doc = jpki_ok("crl", "publish", "--out", out, data_dir=d)
    written = doc["written"]
    # Every municipality shard of both CAs, full and delta, and one ARL per CA.
    shards = {(w["ca"], w["scope"]) for w in written if w["scope"] != "arl"}
    assert len(shards) == 2 * 71
    assert sum(w["scope"] == "arl" for w in written) == 2
    assert len(written) == 2 * 71 * 2 + 2
    auth_shard = out / "auth" / "g01" / "132217.crl"
    crl = x509.load_der_x509_crl(auth_shard.read_bytes())
    assert [format(e.serial_number, "x") for e in crl] == [issued["serial"]]
    assert (out / "auth" / "g01" / "132217-delta.crl").is_file()
    assert (out / "sign" / "g01" / "arl.crl").is_file()
    # --shard narrows it; --delta publishes only deltas; numbers keep increasing.
    again = jpki_ok("crl", "publish", "--shard", "132217", "--delta", data_dir=d)["written"]
    assert {(w["ca"], w["kind"]) for w in again} == {("auth", "delta"), ("sign", "delta")}
    before = {(w["ca"], w["scope"], w["kind"]): w["number"] for w in written}
    assert all(w["number"] > before[(w["ca"], w["scope"], "delta")] for w in again)
    bad = jpki("crl", "publish", "--shard", "999999", "--json", data_dir=d)
    assert bad.rc != 0 and bad.error()["code"] == "not_found"


def test_ocsp_presign_signs_each_certificate_once(base: Base, tmp_path: Path,
                                                  public_keys: KeyMaker) -> None:
    d = copy_data_dir(base.data_dir, tmp_path / "data")
    resident = add_resident(d)
    for kind in ("auth", "sign"):
        jpki_ok("cert", "issue", "--resident", resident, "--kind", kind,
                "--public-key", public_keys(tmp_path), "--out", tmp_path / f"{kind}.pem",
                data_dir=d)
    assert jpki_ok("ocsp", "presign", data_dir=d) == {"signed": 2}
    assert jpki_ok("ocsp", "presign", data_dir=d) == {"signed": 0}
    assert jpki_ok("ocsp", "presign", "--algorithm", "sha256", data_dir=d) == {"signed": 2}
