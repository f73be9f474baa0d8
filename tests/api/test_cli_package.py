"""The shape of the `jpki` CLI package (api/cli/): no import cycle, one group loaded per command,
`jpki --help` without loading any, and the root's summaries true to the commands.

The import-linter contract "The CLI's command groups are independent, above what they share"
(pyproject.toml) keeps the groups off each other and ``common`` off the groups; here the whole
package's import graph (grimp, what import-linter builds on) is checked for any cycle, the
package itself included, and real processes show what a command actually imports (`-X
importtime` would not: it misses a module loaded with ``importlib.import_module``).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import typer
from typer.testing import CliRunner

from api import cli
from tests.api.test_cli import Base, base, copy_data_dir, tools  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
# What the CA's services pull in: a command that does not use them must not pay for them.
# (Not pydantic: typer itself builds its parameters' converters with it.)
HEAVY = ("api.composition", "api.app", "sqlalchemy", "hsm", "pkcs11", "fastapi", "uvicorn",
         "httpx", "cryptography", "devices")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (module → modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.fixture(scope="module")
def cli_graph() -> dict[str, set[str]]:
    """api.cli's modules and the modules of the package each imports (at any depth of code:
    grimp sees imports inside functions too)."""
    graph = grimp.build_graph("api", include_external_packages=False)
    modules = {m for m in graph.modules if m == "api.cli" or m.startswith("api.cli.")}
    return {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}


def test_the_cli_package_has_no_import_cycle(cli_graph: dict[str, set[str]]) -> None:
    assert "api.cli.common" in cli_graph and "api.cli.crl" in cli_graph
    assert _cycle(cli_graph) is None


def test_command_modules_import_only_common(cli_graph: dict[str, set[str]]) -> None:
    # The root names its modules in COMMANDS and imports them by name only when needed.
    assert cli_graph["api.cli"] == set()
    assert cli_graph["api.cli.common"] == set()
    assert cli_graph["api.cli.__main__"] == {"api.cli"}
    groups = {m for m in cli_graph if m not in ("api.cli", "api.cli.common", "api.cli.__main__")}
    assert groups == {entry.module for entry in cli.COMMANDS.values()}
    assert {m: cli_graph[m] for m in groups if cli_graph[m] != {"api.cli.common"}} == {}


def test_the_root_lists_each_command_with_its_own_summary() -> None:
    """`jpki --help` shows COMMANDS' summaries without loading the commands: each must be the
    first paragraph of the command's own help, as typer would have shown it."""
    for name in cli.COMMANDS:
        command = cli.load(name)
        assert command.name == name
        first = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
        assert cli.COMMANDS[name].summary == first, name
        assert isinstance(command, typer.core.TyperGroup) == cli.COMMANDS[name].group, name


def test_help_lists_every_command_and_a_typo_gets_suggestions() -> None:
    result = runner.invoke(cli.app, ["--help"], prog_name="jpki")
    assert result.exit_code == 0
    listed = re.findall(r"^│ (\S+) ", result.output, re.MULTILINE)
    assert [w for w in listed if not w.startswith("-")] == list(cli.COMMANDS)
    bare = runner.invoke(cli.app, [], prog_name="jpki")
    assert "Usage: jpki [OPTIONS] COMMAND [ARGS]..." in bare.output
    typo = runner.invoke(cli.app, ["cr", "publish"], prog_name="jpki")
    assert typo.exit_code == 2 and "Did you mean 'crl'" in typo.output
    # A group with one command is still a group: `jpki crl publish`, `jpki mobile sweep`.
    for group, command in (("crl", "publish"), ("mobile", "sweep")):
        assert runner.invoke(cli.app, [group, command, "--help"]).exit_code == 0


# `python -m api.cli ARGS` as the console script runs it, then the modules it left imported.
RUN_AND_LIST = """
import json, runpy, sys
out, sys.argv = sys.argv[1], ["jpki", *sys.argv[2:]]
try:
    runpy.run_module("api.cli", run_name="__main__", alter_sys=True)
finally:
    with open(out, "w") as fh:
        json.dump(sorted(sys.modules), fh)
"""


def imported_by(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``jpki ARGS`` in a fresh interpreter: the run and every module it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JPKI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    listing = tmp_path / "modules.json"
    run = subprocess.run([sys.executable, "-c", RUN_AND_LIST, str(listing), *args],
                         capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
                         check=False)
    modules = set(json.loads(listing.read_text()))
    assert len(modules) > 50
    return run, modules


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.partition(".")[0] in HEAVY or m.startswith(HEAVY)}


def test_help_imports_no_command(tmp_path: Path) -> None:
    run, modules = imported_by(tmp_path, "--help")
    assert run.returncode == 0 and "crl" in run.stdout
    assert {m for m in modules if m.startswith("api.cli")} == {"api.cli"}
    assert {m for m in modules if m.startswith("jpki")} == set()
    assert _heavy(modules) == set()


def test_a_command_loads_its_group_only(tmp_path: Path) -> None:
    run, modules = imported_by(tmp_path, "crl", "publish", "--help")
    assert run.returncode == 0 and "--shard" in run.stdout
    assert {m for m in modules if m.startswith("api.cli")} == {
        "api.cli", "api.cli.crl", "api.cli.common"}
    assert _heavy(modules) == set()


@pytest.mark.hsm
def test_crl_publish_builds_the_crl_service_alone(base: Base, tmp_path: Path) -> None:  # noqa: F811
    """A real publication imports the CRL wiring (api.crl_publishing), not the composition of
    every service, nor any other context of the core."""
    d = copy_data_dir(base.data_dir, tmp_path / "ca")
    run, modules = imported_by(tmp_path, "crl", "publish", "--shard", "132217", "--json",
                               "--data-dir", str(d))
    assert run.returncode == 0, run.stderr
    assert {w["scope"] for w in json.loads(run.stdout)["written"]} == {"132217"}
    assert "api.crl_publishing" in modules and "jpki.revocation.crls" in modules
    assert {m for m in modules if m.startswith("api.cli")} == {
        "api.cli", "api.cli.crl", "api.cli.common"}
    others = ("jpki.issuance", "jpki.mobile", "jpki.registry", "jpki.relying_parties",
              "jpki.revocation.ocsp", "jpki.access.clients", "api.composition", "api.app",
              "fastapi", "uvicorn", "httpx", "devices")
    assert {m for m in modules if m.startswith(others)} == set()
