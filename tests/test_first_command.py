"""The first command, proved from a clean install: what `scripts/run` and the Dockerfile do.

The development virtualenv has the ``test`` extra, so a runtime import that only the extra
provides passes every other test and breaks `jpki` for everyone who installs it. Here a fresh
virtualenv in a temporary directory gets exactly the Dockerfile's install — its COPY sources, then
`pip install .`, no extras, not editable — and the *installed* console scripts are run: `--help`
of every command of `jpki` and of the device tools (`jpki-card`, `jpki-station`, `jpki-phone`),
every shipped module imported, `jpki init` on a new data directory and `jpki serve` on the
embedded defaults (SQLite, the SoftHSM token init creates, the recipe in the package), which
must answer `/healthz` and serve the signing root. Nothing from this test's own environment is
imported into those processes: no PYTHONPATH, no JPKI_* variables, the working directory outside
the repository.

Slow (a pip install into a fresh virtualenv), and part of the normal suite so that `.ci/run` runs
it. What it needs — python3-venv, pip's package index or cache, SoftHSM2 — fails it under CI=true
when missing (architecture §9.1); a missing runtime dependency fails it everywhere.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.components import missing_component

pytestmark = [pytest.mark.slow, pytest.mark.hsm]

REPO = Path(__file__).resolve().parents[1]
PIP_TIMEOUT_SECONDS = 1800  # a cold cache builds python-pkcs11 and pyscard from source
# What pip prints when it cannot reach an index or the cache has not got a package: a missing
# component (no network), not a bug in the project.
UNREACHABLE = re.compile(r"Could not find a version|No matching distribution|NewConnectionError|"
                         r"Failed to establish a new connection|Temporary failure in name "
                         r"resolution|Network is unreachable|ProxyError|Read timed out")


@dataclass(frozen=True)
class DockerInstall:
    sources: list[str]
    pip_options: list[str]


def dockerfile_install() -> DockerInstall:
    """The Dockerfile's COPY sources and its `pip install` options, read from the file itself so
    that this test proves what the image does."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    sources: list[str] = []
    for line in text.splitlines():
        if line.split()[:1] == ["COPY"]:
            *srcs, dest = shlex.split(line)[1:]
            # Each source lands under the work directory with its own name, as it does here.
            assert dest == "./" or (len(srcs) == 1 and dest == f"./{srcs[0]}"), line
            sources += srcs
    installs = re.findall(r"/pip install ((?:--[\w-]+ )*)\.(?:\s|$)", text)
    assert len(installs) == 1, "the Dockerfile must `pip install .` exactly once"
    options = installs[0].split()
    # --no-cache-dir only keeps the image small; anything else (extras, -e) would change what is
    # installed and must be proved here first.
    assert set(options) <= {"--no-cache-dir"}, options
    return DockerInstall(sources=sources, pip_options=options)


@dataclass(frozen=True)
class CleanInstall:
    root: Path
    bin: Path

    def env(self) -> dict[str, str]:
        """The environment of someone who just installed jpki: no JPKI_* settings, nothing that
        points Python at this checkout or at the development virtualenv."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JPKI_", "PYTHON")) and k not in ("SOFTHSM2_CONF",
                                                                        "VIRTUAL_ENV")}
        dev_bin = str(Path(sys.prefix) / "bin")
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != dev_bin]
        env["PATH"] = os.pathsep.join([str(self.bin), *path])
        return env

    def run(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                              cwd=self.root, env=self.env(), timeout=timeout, check=False)

    def jpki(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.run(self.bin / "jpki", *args, timeout=timeout)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, softhsm_module: str) -> CleanInstall:
    root = tmp_path_factory.mktemp("first-command")
    install = dockerfile_install()
    src = root / "src"
    src.mkdir()
    for name in install.sources:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(source, src / name)

    venv = root / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                          text=True, timeout=300, check=False)
    if made.returncode != 0 or not (venv / "bin" / "pip").exists():
        missing_component("cannot create a virtualenv with pip (Debian: python3-venv): "
                          f"{(made.stderr or made.stdout).strip()[-500:]}")
    clean = CleanInstall(root=root, bin=venv / "bin")
    # The Dockerfile's options minus --no-cache-dir: pip's cache makes no difference to what is
    # installed, only to how long it takes.
    options = [o for o in install.pip_options if o != "--no-cache-dir"]
    pip = clean.run(clean.bin / "pip", "install", "--quiet", *options, src,
                    timeout=PIP_TIMEOUT_SECONDS)
    if pip.returncode != 0:
        output = (pip.stdout + pip.stderr).strip()
        if UNREACHABLE.search(output):
            missing_component(f"pip cannot reach its packages (network or cache): "
                              f"{output[-800:]}")
        pytest.fail(f"`pip install .` failed:\n{output[-3000:]}", pytrace=False)
    return clean


# The console scripts pyproject declares: the operator's CLI and the device tools.
SCRIPTS = {"jpki", "jpki-card", "jpki-station", "jpki-phone", "jpki-kiosk"}

# Run inside the clean virtualenv (-I: no PYTHONPATH, no current directory on sys.path): import
# every shipped module, and list each console script's command tree for the --help runs.
INSPECT = """
import importlib, json, pkgutil
from importlib.metadata import distribution
report = {"files": {}, "failed": {}, "imported": 0}
for name in ("jpki", "api", "hsm", "devices"):
    package = importlib.import_module(name)
    report["files"][name] = package.__file__
    for info in pkgutil.walk_packages(package.__path__, name + ".",
                                      onerror=lambda n: report["failed"].setdefault(n, "walk")):
        try:
            importlib.import_module(info.name)
            report["imported"] += 1
        except Exception as exc:
            report["failed"][info.name] = f"{type(exc).__name__}: {exc}"
import typer
def walk(command, path):
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, [*path, name])
report["commands"] = {
    script.name: list(walk(typer.main.get_command(importlib.import_module(script.module).app), []))
    for script in distribution("jpki").entry_points if script.group == "console_scripts"}
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def inspected(clean: CleanInstall) -> dict[str, Any]:
    run = clean.run(clean.bin / "python", "-I", "-c", INSPECT, timeout=300)
    assert run.returncode == 0, f"the installed package does not import:\n{run.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def test_every_shipped_module_imports_from_the_installed_package(
        clean: CleanInstall, inspected: dict[str, Any]) -> None:
    for name, file in inspected["files"].items():
        # The installed copy, not this checkout (an editable install or a stray sys.path entry
        # would hide a file missing from the package).
        assert Path(file).is_relative_to(clean.root / "venv"), (name, file)
    assert inspected["failed"] == {}
    assert inspected["imported"] > 50


# Every deeper command's --help in one interpreter of the clean virtualenv, through its console
# script's entry point exactly as the installed script calls it.
HELP = """
import contextlib, io, json, sys
from importlib.metadata import entry_points
(script,) = [e for e in entry_points(group="console_scripts") if e.name == sys.argv[1]]
main = script.load()
results = {}
for path in json.loads(sys.argv[2]):
    out = io.StringIO()
    sys.argv = [script.name, *path, "--help"]
    with contextlib.redirect_stdout(out):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code
    results[" ".join(path)] = [code, "Usage:" in out.getvalue()]
print(json.dumps(results))
"""


def test_every_console_scripts_help_runs(clean: CleanInstall,
                                         inspected: dict[str, Any]) -> None:
    commands: dict[str, list[list[str]]] = inspected["commands"]
    assert set(commands) == SCRIPTS
    for script, expected in (("jpki", []), ("jpki", ["init"]), ("jpki", ["serve"]),
                             ("jpki", ["crl", "publish"]), ("jpki-card", ["emulate"]),
                             ("jpki-station", ["enroll"]), ("jpki-phone", ["status"]),
                             ("jpki-kiosk", ["reset"])):
        assert expected in commands[script], (script, expected)
    # The device commands are no longer the operator's.
    assert not {"station", "phone"} & {path[0] for path in commands["jpki"] if path}
    assert ["card", "emulate"] not in commands["jpki"]
    # Each installed script itself for its --help and each of its commands (groups and top-level
    # commands), two at a time: each is a fresh interpreter, as a user's first command is.
    top = [(script, path) for script, paths in commands.items() for path in paths
           if len(path) <= 1]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda sp: (sp, clean.run(clean.bin / sp[0], *sp[1], "--help",
                                                       timeout=120)), top))
    failed = {" ".join([script, *path]): (run.returncode, run.stderr[-1500:])
              for (script, path), run in runs if run.returncode != 0 or "Usage:" not in run.stdout}
    assert failed == {}
    # Every deeper command through the same entry point, one interpreter per script.
    checked = 0
    for script, paths in commands.items():
        deeper = [path for path in paths if len(path) > 1]
        if not deeper:
            continue
        run = clean.run(clean.bin / "python", "-I", "-c", HELP, script, json.dumps(deeper),
                        timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        results = json.loads(run.stdout)
        assert len(results) == len(deeper)
        assert {path: result for path, result in results.items() if result != [0, True]} == {}
        checked += len(results)
    # The operator's groups alone hold more than 20 commands (the walk found the tree).
    assert checked > 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read()


@pytest.fixture
def served(clean: CleanInstall) -> Iterator[tuple[str, Path, Path]]:
    """`jpki init` on a directory that does not exist yet, then `jpki serve` on a free port."""
    data = clean.root / "data"
    assert not data.exists()
    init = clean.jpki("init", "--data-dir", data, "--json")
    assert init.returncode == 0, init.stderr
    created = json.loads(init.stdout)["created"]
    assert any(line.startswith("sign CA generation 1") for line in created), created
    exported = clean.jpki("ca", "export", "--data-dir", data, "--out", clean.root / "roots")
    assert exported.returncode == 0, exported.stderr

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = clean.root / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen([str(clean.bin / "jpki"), "serve", "--data-dir", str(data),
                                   "--port", str(port)], stdout=sink, stderr=subprocess.STDOUT,
                                  cwd=clean.root, env=clean.env())
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"jpki serve exited {server.returncode}:\n{log.read_text()}",
                            pytrace=False)
            try:
                if _get(f"{url}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jpki serve did not answer /healthz in 60 s:\n{log.read_text()}",
                            pytrace=False)
            time.sleep(0.2)
        yield url, clean.root / "roots", log
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)


def test_init_then_serve_on_the_embedded_defaults(served: tuple[str, Path, Path]) -> None:
    url, roots, log = served
    status, _, body = _get(f"{url}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})

    status, content_type, der = _get(f"{url}/ca/sign/g01.cer")
    assert (status, content_type) == (200, "application/pkix-cert")
    root = x509.load_der_x509_certificate(der)
    # The signing CA's self-signed root (reference §1.1), the one `jpki init` made.
    assert root.subject == root.issuer
    root.verify_directly_issued_by(root)
    assert "JPKI for digital signature" in [
        a.value for a in root.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    exported = x509.load_pem_x509_certificate((roots / "sign-ca-g01.pem").read_bytes())
    assert der == exported.public_bytes(Encoding.DER)
    # Served on 127.0.0.1 without JPKI_BASE_URL: nothing to warn about.
    assert "JPKI_BASE_URL" not in log.read_text()
