"""Every library the shipped code imports is a declared runtime dependency.

`pip install .` installs ``[project].dependencies`` and nothing else; a module imported by
``jpki``, ``api``, ``hsm`` or ``migrations`` that only the ``test`` extra brings along works in
the development virtualenv and breaks the first command everywhere else. This reads every import
statement — those inside functions too, which no ``--help`` run executes — and maps it to the
distribution that provides it in this environment. The clean-virtualenv test
(tests/test_first_command.py) then proves the same from the other side, by running the installed
command.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("jpki", "api", "hsm", "devices", "migrations")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def declared_runtime() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = set()
    for requirement in project["dependencies"]:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        names.add(_normalise(match.group(0)))
    return names


def imported_top_level() -> dict[str, list[str]]:
    """Top-level module name → the shipped files that import it (absolute imports only)."""
    found: dict[str, list[str]] = {}
    for package in SHIPPED:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    found.setdefault(top, []).append(str(path.relative_to(REPO)))
    return found


def test_the_scan_sees_the_imports_it_must_judge() -> None:
    imported = imported_top_level()
    # Imported only inside functions (the PC/SC transport, uvicorn in `jpki serve`): the scan
    # must see those too, or it would miss exactly what `--help` never executes.
    assert "smartcard" in imported and "uvicorn" in imported
    assert "httpx" in imported  # the station and phone clients


def test_every_third_party_import_is_a_declared_runtime_dependency() -> None:
    declared = declared_runtime()
    providers = packages_distributions()
    undeclared = {}
    for module, files in sorted(imported_top_level().items()):
        if module in SHIPPED or module == "__future__" or module in sys.stdlib_module_names:
            continue
        dists = {_normalise(d) for d in providers.get(module, [])}
        if not dists & declared:
            undeclared[module] = (sorted(dists) or ["not installed"], sorted(set(files))[:3])
    assert not undeclared, (
        "imported by the shipped code but not in [project].dependencies "
        f"(module: (providing distributions, importing files)): {undeclared}")
