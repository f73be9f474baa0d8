"""The import boundaries of architecture §2, checked with import-linter contracts
(pyproject.toml)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jpki

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = {"store", "card", "station", "phone"}  # packages allowed to reach infrastructure


def _contracts() -> list[dict]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_core_module_is_under_the_store_contract():
    """A new core module must be added to the contract that keeps it off the store adapter."""
    (contract,) = [c for c in _contracts() if c["forbidden_modules"] == ["jpki.store"]]
    listed = set(contract["source_modules"])
    modules = {f"jpki.{m.name}" for m in pkgutil.iter_modules(jpki.__path__)
               if m.name not in ADAPTERS}
    assert modules == listed
